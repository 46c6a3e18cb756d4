"""The schema, as SQLAlchemy Core tables. Alembic's migrations are the way it changes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

__all__ = ["UtcDateTime", "metadata"]


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite (no zones) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = 128  # longest id accepted at the edge

organizations = Table(
    "organizations",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("name", String(300), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

contacts = Table(
    "contacts",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("first_name", String(200), nullable=False),
    Column("last_name", String(200), nullable=False),
    Column("email", String(320), nullable=False),
    Column("language", String(2), nullable=False),
    Column("phone", String(40), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    # the name as searched (authz.domain.text.search_key), and the principal number's type.
    Column("search_key", String(500), nullable=False, server_default=""),
    Column("phone_type", String(20), nullable=False, server_default=""),
    Index("ix_contacts_email", "email"),
)

# The three kinds of relation share one table; `organization_id` is always the
# organization the rights are on (see authz.domain.model.Relation).
relations = Table(
    "relations",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("organization_id", String(ID), ForeignKey("organizations.id"), nullable=False),
    Column("contact_id", String(ID), ForeignKey("contacts.id"), nullable=True),
    Column("grantee_organization_id", String(ID), ForeignKey("organizations.id"), nullable=True),
    Column("via_organization_id", String(ID), ForeignKey("organizations.id"), nullable=True),
    Column("role", String(40), nullable=True),
    Column("start_date", Date, nullable=False),
    Column("end_date", Date, nullable=False),
    Column("ended_at", UtcDateTime(), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("created_by", String(ID), nullable=True),
    Index("ix_relations_org_contact", "organization_id", "contact_id"),
    Index("ix_relations_contact", "contact_id"),
    Index("ix_relations_via", "via_organization_id", "contact_id"),
    Index("ix_relations_grantee", "grantee_organization_id"),
)

# One row per subject ever granted on a relation; removal sets removed_at (history kept).
relation_subjects = Table(
    "relation_subjects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("relation_id", String(ID), ForeignKey("relations.id"), nullable=False),
    Column("subject", String(64), nullable=False),
    Column("right", String(8), nullable=False),
    Column("granted_at", UtcDateTime(), nullable=False),
    Column("removed_at", UtcDateTime(), nullable=True),
    Index("ix_relation_subjects_relation", "relation_id"),
)

account_links = Table(
    "account_links",
    metadata,
    Column("account_id", String(ID), primary_key=True),
    Column("contact_id", String(ID), ForeignKey("contacts.id"), primary_key=True),
    Column("method", String(20), nullable=False),
    Column("linked_at", UtcDateTime(), nullable=False),
    Index("ix_account_links_contact", "contact_id"),
)

link_codes = Table(
    "link_codes",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("contact_id", String(ID), ForeignKey("contacts.id"), nullable=False),
    Column("organization_id", String(ID), ForeignKey("organizations.id"), nullable=False),
    # An index over a keyed digest to find the row; the salted hash is what proves the code.
    Column("lookup", String(64), nullable=False, unique=True),
    Column("salt", String(64), nullable=False),
    Column("code_hash", String(128), nullable=False),
    Column("issued_by", String(ID), nullable=False),
    Column("issued_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("used_at", UtcDateTime(), nullable=True),
    Column("used_by_account", String(ID), nullable=True),
    Column("voided_at", UtcDateTime(), nullable=True),
    Index("ix_link_codes_contact", "contact_id"),
)

link_code_attempts = Table(
    "link_code_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", String(ID), nullable=False),
    Column("contact_id", String(ID), nullable=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("success", Boolean, nullable=False),
    # Set on a legacy-password attempt: the legacy login being guessed is a target of its own.
    Column("legacy_username", String(200), nullable=True),
    Index("ix_link_code_attempts_account", "account_id", "at"),
    Index("ix_link_code_attempts_contact", "contact_id", "at"),
    Index("ix_link_code_attempts_legacy", "legacy_username", "at"),
)

legacy_accounts = Table(
    "legacy_accounts",
    metadata,
    Column("username", String(200), primary_key=True),
    Column("password_hash", String(300), nullable=False),
    Column("used_at", UtcDateTime(), nullable=True),
    Column("used_by_account", String(ID), nullable=True),
)

legacy_account_contacts = Table(
    "legacy_account_contacts",
    metadata,
    Column("username", String(200), ForeignKey("legacy_accounts.username"), primary_key=True),
    Column("contact_id", String(ID), ForeignKey("contacts.id"), primary_key=True),
    # a legacy login links each of its contacts once, to the person who designates it.
    Column("used_at", UtcDateTime(), nullable=True),
    Column("used_by_account", String(ID), nullable=True),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("recipient", String(320), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("sent_at", UtcDateTime(), nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
    Column("next_attempt_at", UtcDateTime(), nullable=True),  # NULL: at once (backoff after a failure)
    Column("expires_at", UtcDateTime(), nullable=True),  # NULL: created_at plus the server's give-up window
    Index("ix_outbox_pending", "sent_at", "created_at"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("revision", BigInteger, nullable=False),
    Column("actor_id", String(ID), nullable=False),
    Column("caller", String(200), nullable=True),  # the calling service (callers file), beside the actor
    Column("action", String(40), nullable=False),
    Column("organization_id", String(ID), nullable=True),
    Column("request_id", String(ID), nullable=True),
    Column("attestation", JSON, nullable=True),
    Column("changes", JSON, nullable=False),
    Index("ix_audit_log_org", "organization_id", "at"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("request_id", String(ID), primary_key=True),
    Column("operation", String(40), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("response", JSON, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

# the import's refused rows, kept per organization for its managers ("rétablir ou valider").
migration_issues = Table(
    "migration_issues",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("fingerprint", String(64), nullable=False),  # the same refusal reported twice is kept once
    Column("organization_id", String(ID), nullable=True),  # no FK: the organization may be what is missing
    Column("section", String(40), nullable=False),
    Column("row_index", Integer, nullable=False),
    Column("row_id", String(200), nullable=True),
    Column("reason", Text, nullable=False),
    Column("row", JSON, nullable=True),
    Column("match_key", String(600), nullable=True),  # what a grant re-creating the row would have
    Column("reported_at", UtcDateTime(), nullable=False),
    Column("resolved_at", UtcDateTime(), nullable=True),
    Column("resolved_by", String(ID), nullable=True),
    Column("resolution", String(20), nullable=True),
    UniqueConstraint("fingerprint", "organization_id", name="uq_migration_issues_fingerprint"),
    Index("ix_migration_issues_org", "organization_id", "id"),
    Index("ix_migration_issues_match", "match_key"),
)

# A single row: bumped by every write transaction, so it also orders writes.
store_revision = Table(
    "store_revision",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("revision", BigInteger, nullable=False),
)


# -- a secret every server of one deployment shares, created by the first to need it
# (the page-token key when AUTHZ_PAGE_TOKEN_KEY is not set). Never the outbox key: that one
# must not sit in the database it protects.
server_secrets = Table(
    "server_secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(200), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

# -- replicas
# One row per committed write, numbered by its revision: what every process follows.
change_log = Table(
    "change_log",
    metadata,
    Column("revision", BigInteger, primary_key=True, autoincrement=False),
    Column("committed_at", UtcDateTime(), nullable=False),
    Column("operation", String(40), nullable=False),
    Column("relations", JSON, nullable=True),  # the changed relations after the write; NULL = reload all
)

# A single row made at migration time: the id revision tokens carry.
store_identity = Table(
    "store_identity",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("store_id", String(32), nullable=False),
)

# Every number of a contact ("Ajouter un autre numéro"), principal first, in E.164. The principal
# one is also kept on `contacts` (phone, phone_type) for the readers that know only one.
contact_phones = Table(
    "contact_phones",
    metadata,
    Column("contact_id", String(ID), ForeignKey("contacts.id"), primary_key=True),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("type", String(20), nullable=False),
    Column("number", String(40), nullable=False),
    Column("region", String(2), nullable=False),
)
