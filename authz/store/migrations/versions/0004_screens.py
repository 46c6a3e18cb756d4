"""The guide's other screens: contact search and phone type, legacy logins used per contact,
the migration's refused rows kept per organization.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from authz.domain.text import search_key

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("search_key", sa.String(length=500), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("phone_type", sa.String(length=20), nullable=False, server_default=""))
    connection = op.get_bind()
    contacts = sa.table(
        "contacts",
        sa.column("id", sa.String),
        sa.column("first_name", sa.String),
        sa.column("last_name", sa.String),
        sa.column("search_key", sa.String),
    )
    rows = connection.execute(sa.select(contacts.c.id, contacts.c.first_name, contacts.c.last_name)).all()
    # One statement run over many parameter sets (executemany), in chunks: a million contacts stay minutes.
    statement = contacts.update().where(contacts.c.id == sa.bindparam("b_id")).values(search_key=sa.bindparam("b_key"))
    for start in range(0, len(rows), 5000):
        chunk = rows[start : start + 5000]
        connection.execute(statement, [{"b_id": i, "b_key": search_key(f"{first} {last}")} for i, first, last in chunk])
    op.create_index("ix_contacts_email", "contacts", ["email"], unique=False)

    # "Used once" becomes per contact: a login several people shared links each of them once.
    with op.batch_alter_table("legacy_account_contacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("used_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("used_by_account", sa.String(length=128), nullable=True))
    connection.execute(
        sa.text(
            "UPDATE legacy_account_contacts SET used_at = (SELECT used_at FROM legacy_accounts "
            "WHERE legacy_accounts.username = legacy_account_contacts.username), "
            "used_by_account = (SELECT used_by_account FROM legacy_accounts "
            "WHERE legacy_accounts.username = legacy_account_contacts.username)"
        )
    )

    op.create_table(
        "migration_issues",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("organization_id", sa.String(length=128), nullable=True),
        sa.Column("section", sa.String(length=40), nullable=False),
        sa.Column("row_index", sa.Integer(), nullable=False),
        sa.Column("row_id", sa.String(length=200), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("row", sa.JSON(), nullable=True),
        sa.Column("match_key", sa.String(length=600), nullable=True),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=128), nullable=True),
        sa.Column("resolution", sa.String(length=20), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_migration_issues")),
        sa.UniqueConstraint("fingerprint", "organization_id", name="uq_migration_issues_fingerprint"),
    )
    op.create_index("ix_migration_issues_org", "migration_issues", ["organization_id", "id"], unique=False)
    op.create_index("ix_migration_issues_match", "migration_issues", ["match_key"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_migration_issues_match", table_name="migration_issues")
    op.drop_index("ix_migration_issues_org", table_name="migration_issues")
    op.drop_table("migration_issues")
    # Plain ALTER TABLE … DROP COLUMN (SQLite 3.35+): a rebuilt table would trip the foreign keys on it.
    with op.batch_alter_table("legacy_account_contacts", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("used_by_account")
        batch_op.drop_column("used_at")
    op.drop_index("ix_contacts_email", table_name="contacts")
    with op.batch_alter_table("contacts", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("phone_type")
        batch_op.drop_column("search_key")
