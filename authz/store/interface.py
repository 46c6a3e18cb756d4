"""What the commands need from persistence: a small interface every backend passes one suite against."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from authz.domain.model import Contact, Organization, Relation, RelationKind
from authz.replication.changes import Change, ChangesPage

if TYPE_CHECKING:
    from authz.engine.index import IndexRow

__all__ = [
    "AuditEntry",
    "AuditRecord",
    "ImportBatch",
    "ImportKind",
    "LegacyAccount",
    "LinkCodeRecord",
    "MigrationIssueRecord",
    "OutboxRow",
    "Snapshot",
    "Store",
    "Transaction",
]


@dataclass(frozen=True, slots=True)
class AuditRecord:
    at: datetime
    actor_id: str
    action: str
    changes: dict[str, Any]
    organization_id: str | None = None
    request_id: str | None = None
    attestation: dict[str, bool] | None = None
    caller: str | None = None  # the calling service, set by the write envelope


@dataclass(frozen=True, slots=True)
class LinkCodeRecord:
    id: str
    contact_id: str
    organization_id: str
    lookup: str
    salt: str
    code_hash: str
    issued_by: str
    issued_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    voided_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class LegacyAccount:
    username: str
    password_hash: str
    contact_ids: tuple[str, ...]
    used_at: datetime | None = None
    # issue 13: the contacts of the login already linked (each once, to the person who designated it)
    used_contact_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: str
    recipient: str
    subject: str
    body: str
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """An audit row as read back ("Mes demandes")."""

    id: int
    revision: int
    record: AuditRecord


@dataclass(frozen=True, slots=True)
class MigrationIssueRecord:
    """A row of the legacy data the import refused, kept for the organization's managers."""

    section: str
    row_index: int
    reason: str
    reported_at: datetime
    organization_id: str | None = None
    row_id: str | None = None
    row: Any = None
    match_key: str | None = None  # what a relation re-creating the row has (authz.commands.migration_issues)
    id: int = 0
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    resolution: str | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The store at one revision: the relations exactly as of `revision` (start-up)."""

    revision: int
    store_id: str
    rows: Iterator[IndexRow]


# -- issue 8: bulk import (authz import)
# What a bulk import adds, by its key: organization, contact and relation ids, legacy usernames.
ImportKind = Literal["organizations", "contacts", "relations", "legacy_accounts"]


@dataclass(slots=True)
class ImportBatch:
    """New rows for one bulk write, none of whose keys is stored yet; contacts and organizations they
    refer to are stored already (or come earlier in the same batch)."""

    organizations: list[Organization] = field(default_factory=list)
    contacts: list[Contact] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    legacy_accounts: list[LegacyAccount] = field(default_factory=list)


class Transaction(Protocol):
    """One unit of work: everything done through it commits together or not at all."""

    def bump_revision(self) -> int: ...

    # organizations and contacts
    def get_organization(self, organization_id: str) -> Organization | None: ...
    def add_organization(self, organization: Organization, at: datetime) -> None: ...
    def get_contact(self, contact_id: str) -> Contact | None: ...
    def add_contact(self, contact: Contact, at: datetime) -> None: ...

    # relations
    def get_relation(self, relation_id: str) -> Relation | None: ...
    def find_relations(
        self,
        *,
        organization_id: str | None = None,
        contact_id: str | None = None,
        grantee_organization_id: str | None = None,
        via_organization_id: str | None = None,
    ) -> list[Relation]: ...
    def find_open_relations(
        self,
        at: datetime,
        *,
        organization_id: str | None = None,
        contact_ids: Collection[str] | None = None,
        grantee_organization_ids: Collection[str] | None = None,
        via_organization_id: str | None = None,
    ) -> list[Relation]:
        """`find_relations` without the history: only relations not removed at `at`; a collection
        filter (one at most) matches any of its ids. A write pays for what is in force, not for
        what has ended."""
        ...

    def relation_exists(
        self,
        kind: RelationKind,
        *,
        organization_id: str | None = None,
        contact_id: str | None = None,
        via_organization_id: str | None = None,
    ) -> bool:
        """Whether any relation of `kind`, of any date, matches: one row read, not the history."""
        ...

    def add_relation(self, relation: Relation, at: datetime, created_by: str | None) -> None: ...
    def end_relation(self, relation_id: str, at: datetime) -> bool: ...
    def add_subjects(self, relation_id: str, subjects: dict[str, Any], at: datetime) -> None: ...
    def remove_subjects(self, relation_id: str, subjects: list[str], at: datetime) -> int: ...
    def relations_page(
        self,
        organization_id: str,
        *,
        kinds: tuple[RelationKind, ...],
        contact_id: str | None,
        after: str | None,
        limit: int,
        name_key: str | None = None,
    ) -> list[Relation]:
        """Relations on, through or granted to an organization, ordered by id, after `after`;
        with `name_key`, only those of contacts whose search key holds it."""
        ...

    # audit and idempotency
    def add_audit(self, record: AuditRecord, revision: int) -> None: ...
    def get_idempotent(self, request_id: str, operation: str) -> tuple[str, dict[str, Any]] | None: ...
    def put_idempotent(
        self, request_id: str, operation: str, fingerprint: str, response: dict[str, Any], at: datetime
    ) -> None: ...

    # link codes
    def add_link_code(self, record: LinkCodeRecord) -> None: ...
    def void_link_codes(self, contact_id: str, at: datetime) -> int: ...
    def find_link_code(self, lookup: str) -> LinkCodeRecord | None: ...
    def use_link_code(self, code_id: str, account_id: str, at: datetime) -> bool: ...
    def add_link_attempt(
        self,
        account_id: str,
        contact_id: str | None,
        at: datetime,
        success: bool,
        legacy_username: str | None = None,
    ) -> int:
        """Record an attempt; returns its id."""
        ...

    def mark_link_attempt_succeeded(self, attempt_id: int) -> None: ...
    def last_attempted_contact(self, account_id: str, since: datetime) -> str | None: ...
    def count_failed_attempts(
        self,
        *,
        since: datetime,
        account_id: str | None = None,
        contact_id: str | None = None,
        legacy_username: str | None = None,
    ) -> int: ...

    # accounts
    def link_account(self, account_id: str, contact_id: str, method: str, at: datetime) -> bool: ...
    def linked_contacts(self, account_id: str) -> list[str]: ...
    def get_legacy_account(self, username: str) -> LegacyAccount | None: ...
    def add_legacy_account(self, account: LegacyAccount) -> None: ...
    def use_legacy_account(self, username: str, account_id: str, at: datetime) -> bool: ...

    # mail
    def enqueue_mail(self, row: OutboxRow, at: datetime) -> None: ...

    # -- issue 13: the guide's other screens
    def update_contact(self, contact: Contact) -> None:
        """Replace the contact's details (its search key follows its name)."""
        ...

    def organization_contacts_with_email(self, organization_id: str, email: str) -> list[Contact]:
        """Contacts with a relation with (or through) the organization whose email is `email`, any case."""
        ...

    def set_relation_end(self, relation_id: str, end_date: date) -> None: ...
    def audit_page(self, organization_id: str, *, before: int | None, limit: int) -> list[AuditEntry]:
        """The organization's audit, newest first, with ids below `before`."""
        ...

    def add_migration_issue(self, issue: MigrationIssueRecord) -> bool:
        """Keep a refused row; False when the same refusal was kept already (a second import)."""
        ...

    def migration_issues_page(
        self, organization_id: str, *, include_resolved: bool, after: int | None, limit: int
    ) -> list[MigrationIssueRecord]: ...
    def resolve_migration_issue(
        self, issue_id: int, organization_id: str, at: datetime, by: str, resolution: str
    ) -> MigrationIssueRecord | None:
        """Mark an open issue of the organization resolved; None when there is no such open issue."""
        ...

    def resolve_migration_issues_matching(
        self, organization_id: str, match_key: str, at: datetime, by: str
    ) -> list[int]:
        """Resolve the open issues a new relation re-creates; their ids."""
        ...

    def use_legacy_contact(self, username: str, contact_id: str, account_id: str, at: datetime) -> bool:
        """Mark one contact of a legacy login linked; False if it already was."""
        ...

    # -- issue 10: replicas
    def lock_revision(self) -> int:
        """Lock the revision row until this transaction ends, and read the store's revision."""
        ...

    def append_change(self, change: Change) -> None: ...
    def prune_changes(self, before: datetime) -> int: ...
    def changes_after(self, revision: int, limit: int) -> ChangesPage: ...

    # -- issue 8: bulk import (authz import), a chunk at a time so memory stays flat
    def stored_keys(self, kind: ImportKind, keys: Collection[str]) -> set[str]:
        """Which of `keys` are stored (including rows added earlier in this transaction)."""
        ...

    def stored_as_added(
        self, kind: ImportKind, keys: Collection[str]
    ) -> dict[str, Organization | Contact | Relation | LegacyAccount]:
        """The stored rows among `keys`, each as it was first added: a relation with the subjects it was
        created with and not ended, a legacy account unused. What a re-import compares its rows with."""
        ...

    def add_batch(self, batch: ImportBatch, at: datetime, created_by: str) -> None:
        """Add many new rows at once, the fastest way the backend has."""
        ...


class Store(Protocol):
    def transaction(self) -> AbstractContextManager[Transaction]: ...
    def load_relations(self) -> Iterator[Relation]: ...
    def revision(self) -> int: ...
    def ping(self) -> bool: ...
    def close(self) -> None: ...

    # -- issue 9
    def server_secret(self, name: str) -> bytes:
        """A random secret every server on this store shares, created on first use."""
        ...

    # the outbox relay's side (authz.mail.OutboxStore)
    def pending_outbox(self, limit: int) -> list[OutboxRow]: ...
    def mark_outbox_sent(self, message_id: str, sent_at: datetime) -> None: ...
    def mark_outbox_failed(self, message_id: str, error: str) -> None: ...

    # -- issue 10: replicas
    def store_id(self) -> str: ...
    def snapshot(self) -> AbstractContextManager[Snapshot]: ...
    def changes_after(self, revision: int, limit: int, timeout: float | None = None) -> ChangesPage: ...
