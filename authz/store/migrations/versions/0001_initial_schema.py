"""Initial schema: organizations, contacts, dated relations and their subjects, link codes,
legacy accounts, the mail outbox, the audit log, idempotency keys and the store revision.

Revision ID: 0001
Revises:
Create Date: 2026-11-27 00:00:08.124399
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("actor_id", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("organization_id", sa.String(length=128), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("attestation", sa.JSON(), nullable=True),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_org", ["organization_id", "at"], unique=False)

    op.create_table(
        "contacts",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("first_name", sa.String(length=200), nullable=False),
        sa.Column("last_name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("phone", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contacts")),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("operation", sa.String(length=40), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("request_id", "operation", name=op.f("pk_idempotency_keys")),
    )
    op.create_table(
        "legacy_accounts",
        sa.Column("username", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=300), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_by_account", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_legacy_accounts")),
    )
    op.create_table(
        "link_code_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(length=128), nullable=False),
        sa.Column("contact_id", sa.String(length=128), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_code_attempts")),
    )
    with op.batch_alter_table("link_code_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_link_code_attempts_account", ["account_id", "at"], unique=False)
        batch_op.create_index("ix_link_code_attempts_contact", ["contact_id", "at"], unique=False)

    op.create_table(
        "organizations",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organizations")),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_pending", ["sent_at", "created_at"], unique=False)

    op.create_table(
        "store_revision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_store_revision")),
    )
    op.create_table(
        "account_links",
        sa.Column("account_id", sa.String(length=128), nullable=False),
        sa.Column("contact_id", sa.String(length=128), nullable=False),
        sa.Column("method", sa.String(length=20), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], name=op.f("fk_account_links_contact_id_contacts")),
        sa.PrimaryKeyConstraint("account_id", "contact_id", name=op.f("pk_account_links")),
    )
    with op.batch_alter_table("account_links", schema=None) as batch_op:
        batch_op.create_index("ix_account_links_contact", ["contact_id"], unique=False)

    op.create_table(
        "legacy_account_contacts",
        sa.Column("username", sa.String(length=200), nullable=False),
        sa.Column("contact_id", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contacts.id"], name=op.f("fk_legacy_account_contacts_contact_id_contacts")
        ),
        sa.ForeignKeyConstraint(
            ["username"], ["legacy_accounts.username"], name=op.f("fk_legacy_account_contacts_username_legacy_accounts")
        ),
        sa.PrimaryKeyConstraint("username", "contact_id", name=op.f("pk_legacy_account_contacts")),
    )
    op.create_table(
        "link_codes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("contact_id", sa.String(length=128), nullable=False),
        sa.Column("organization_id", sa.String(length=128), nullable=False),
        sa.Column("lookup", sa.String(length=64), nullable=False),
        sa.Column("salt", sa.String(length=64), nullable=False),
        sa.Column("code_hash", sa.String(length=128), nullable=False),
        sa.Column("issued_by", sa.String(length=128), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_by_account", sa.String(length=128), nullable=True),
        sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], name=op.f("fk_link_codes_contact_id_contacts")),
        sa.ForeignKeyConstraint(
            ["organization_id"], ["organizations.id"], name=op.f("fk_link_codes_organization_id_organizations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_codes")),
        sa.UniqueConstraint("lookup", name=op.f("uq_link_codes_lookup")),
    )
    with op.batch_alter_table("link_codes", schema=None) as batch_op:
        batch_op.create_index("ix_link_codes_contact", ["contact_id"], unique=False)

    op.create_table(
        "relations",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("organization_id", sa.String(length=128), nullable=False),
        sa.Column("contact_id", sa.String(length=128), nullable=True),
        sa.Column("grantee_organization_id", sa.String(length=128), nullable=True),
        sa.Column("via_organization_id", sa.String(length=128), nullable=True),
        sa.Column("role", sa.String(length=40), nullable=True),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], name=op.f("fk_relations_contact_id_contacts")),
        sa.ForeignKeyConstraint(
            ["grantee_organization_id"],
            ["organizations.id"],
            name=op.f("fk_relations_grantee_organization_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"], ["organizations.id"], name=op.f("fk_relations_organization_id_organizations")
        ),
        sa.ForeignKeyConstraint(
            ["via_organization_id"], ["organizations.id"], name=op.f("fk_relations_via_organization_id_organizations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_relations")),
    )
    with op.batch_alter_table("relations", schema=None) as batch_op:
        batch_op.create_index("ix_relations_contact", ["contact_id"], unique=False)
        batch_op.create_index("ix_relations_grantee", ["grantee_organization_id"], unique=False)
        batch_op.create_index("ix_relations_org_contact", ["organization_id", "contact_id"], unique=False)
        batch_op.create_index("ix_relations_via", ["via_organization_id", "contact_id"], unique=False)

    op.create_table(
        "relation_subjects",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("relation_id", sa.String(length=128), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("right", sa.String(length=8), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["relation_id"], ["relations.id"], name=op.f("fk_relation_subjects_relation_id_relations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_relation_subjects")),
    )
    with op.batch_alter_table("relation_subjects", schema=None) as batch_op:
        batch_op.create_index("ix_relation_subjects_relation", ["relation_id"], unique=False)

    # The single revision row every write bumps (see SqlTransaction.bump_revision).
    op.bulk_insert(
        sa.table("store_revision", sa.column("id", sa.Integer), sa.column("revision", sa.BigInteger)),
        [{"id": 1, "revision": 0}],
    )


def downgrade() -> None:
    with op.batch_alter_table("relation_subjects", schema=None) as batch_op:
        batch_op.drop_index("ix_relation_subjects_relation")

    op.drop_table("relation_subjects")
    with op.batch_alter_table("relations", schema=None) as batch_op:
        batch_op.drop_index("ix_relations_via")
        batch_op.drop_index("ix_relations_org_contact")
        batch_op.drop_index("ix_relations_grantee")
        batch_op.drop_index("ix_relations_contact")

    op.drop_table("relations")
    with op.batch_alter_table("link_codes", schema=None) as batch_op:
        batch_op.drop_index("ix_link_codes_contact")

    op.drop_table("link_codes")
    op.drop_table("legacy_account_contacts")
    with op.batch_alter_table("account_links", schema=None) as batch_op:
        batch_op.drop_index("ix_account_links_contact")

    op.drop_table("account_links")
    op.drop_table("store_revision")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_pending")

    op.drop_table("outbox")
    op.drop_table("organizations")
    with op.batch_alter_table("link_code_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_link_code_attempts_contact")
        batch_op.drop_index("ix_link_code_attempts_account")

    op.drop_table("link_code_attempts")
    op.drop_table("legacy_accounts")
    op.drop_table("idempotency_keys")
    op.drop_table("contacts")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_org")

    op.drop_table("audit_log")
