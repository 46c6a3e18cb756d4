"""What the commands need from persistence: a small interface every backend passes one suite against."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal, Protocol

from authz.domain.index_rows import IndexRow
from authz.domain.model import Contact, Organization, Relation, RelationKind
from authz.domain.phones import PhoneNumber
from authz.store.changes import Change, ChangesPage

__all__ = [
    "Accounts",
    "AuditEntry",
    "AuditLog",
    "AuditRecord",
    "BulkImport",
    "ChangeNotices",
    "ChangeReader",
    "Contacts",
    "Idempotency",
    "ImportBatch",
    "ImportKind",
    "LegacyAccount",
    "LinkCodeRecord",
    "LinkCodes",
    "MigrationIssueRecord",
    "MigrationIssues",
    "Outbox",
    "OutboxRow",
    "Relations",
    "RevisionLog",
    "Snapshot",
    "Store",
    "Throttles",
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
    # the contacts of the login already linked (each once, to the person who designated it)
    used_contact_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: str
    recipient: str
    subject: str
    body: str
    attempts: int = 0
    # Until when the message is worth sending (a link code's expiry); None: the server's give-up window.
    expires_at: datetime | None = None
    created_at: datetime | None = None


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


# -- bulk import (authz import)
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


# -- what a write sees: small role interfaces, one per concern, composed into `Transaction`.
# Every method runs inside the write's one database transaction: nothing is visible to other
# callers before commit, and all of it is undone if the write fails. Lists are in the order
# stated; "stored" includes what this transaction added. A method raises AlreadyExists
# (at commit at the latest) when a row it adds breaks a uniqueness the store keeps.


class RevisionLog(Protocol):
    """The store's revision row and change log: the store numbers writes, the log follows them."""

    def bump_revision(self) -> int:
        """The next revision, taken for this write (the revision row's lock is then held until commit)."""
        ...

    def lock_revision(self) -> int:
        """Lock the revision row until this transaction ends, and read the store's revision."""
        ...

    def append_change(self, change: Change) -> None:
        """Record what this write changed under its revision; announced to followers at commit."""
        ...

    def prune_changes(self, before: datetime) -> int:
        """Drop the log's oldest changes committed before `before` (a prefix: the log stays dense); how many."""
        ...

    def changes_after(self, revision: int, limit: int) -> ChangesPage:
        """Changes after `revision` in revision order, at most `limit`, as this transaction sees them."""
        ...


class Contacts(Protocol):
    """Organizations and contacts."""

    def get_organization(self, organization_id: str) -> Organization | None: ...
    def add_organization(self, organization: Organization, at: datetime) -> None: ...
    def get_contact(self, contact_id: str) -> Contact | None: ...
    def add_contact(self, contact: Contact, at: datetime) -> None: ...
    def update_contact(self, contact: Contact) -> None:
        """Replace the contact's details (its search key follows its name)."""
        ...

    def organization_contacts_with_email(self, organization_id: str, email: str) -> list[Contact]:
        """Contacts with a relation with (or through) the organization whose email is `email`, any case;
        ordered by id."""
        ...

    def contact_phones(self, contact_id: str) -> list[PhoneNumber]:
        """Every number of the contact, principal first (empty: only `Contact.phone`, if any)."""
        ...

    def set_contact_phones(self, contact_id: str, phones: Sequence[PhoneNumber]) -> None:
        """Replace the contact's numbers by these, in this order."""
        ...


class Relations(Protocol):
    """Relations and the subjects granted on them; history is kept (ended relations, removed grants)."""

    def get_relation(self, relation_id: str) -> Relation | None:
        """The relation with the subjects in force on it; None when there is none."""
        ...

    def find_relations(
        self,
        *,
        organization_id: str | None = None,
        contact_id: str | None = None,
        grantee_organization_id: str | None = None,
        via_organization_id: str | None = None,
    ) -> list[Relation]:
        """Relations matching every filter given, ended ones included, ordered by id."""
        ...

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
    def end_relation(self, relation_id: str, at: datetime) -> bool:
        """End the relation at `at`; False when it was already ended at or before `at` (or is unknown)."""
        ...

    def add_subjects(self, relation_id: str, subjects: dict[str, Any], at: datetime) -> None:
        """Grant subjects (subject -> right); one granted already is replaced, the old grant kept as history."""
        ...

    def remove_subjects(self, relation_id: str, subjects: list[str], at: datetime) -> int:
        """Remove grants in force; how many there were."""
        ...

    def set_relation_end(self, relation_id: str, end_date: date) -> None: ...
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


class LinkCodes(Protocol):
    """Link codes, stored hashed and looked up by their lookup part."""

    def add_link_code(self, record: LinkCodeRecord) -> None: ...
    def void_link_codes(self, contact_id: str, at: datetime) -> int:
        """Void the contact's codes neither used nor voided; how many."""
        ...

    def find_link_code(self, lookup: str) -> LinkCodeRecord | None: ...
    def use_link_code(self, code_id: str, account_id: str, at: datetime) -> bool:
        """Mark the code used; False when it was used or voided already (of two racing, one wins)."""
        ...


class Throttles(Protocol):
    """Link attempts, counted to slow down guessing."""

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
    ) -> int:
        """Failed attempts since `since` matching every filter given."""
        ...


class Accounts(Protocol):
    """Accounts linked to contacts, and the legacy logins that may link them."""

    def link_account(self, account_id: str, contact_id: str, method: str, at: datetime) -> bool:
        """Link the account to the contact; False when it already was."""
        ...

    def linked_contacts(self, account_id: str) -> list[str]:
        """The contacts the account is linked to, ordered by id."""
        ...

    def accounts_linked_to(self, contact_id: str) -> list[str]:
        """The accounts linked to the contact, ordered by id."""
        ...

    def unlink_contact(self, contact_id: str, *, keep_account: str) -> list[str]:
        """Remove the contact's links to every account but `keep_account`; the accounts unlinked."""
        ...

    def get_legacy_account(self, username: str) -> LegacyAccount | None: ...
    def add_legacy_account(self, account: LegacyAccount) -> None: ...
    def use_legacy_account(self, username: str, account_id: str, at: datetime) -> bool:
        """Mark the legacy login used; False when it already was."""
        ...

    def use_legacy_contact(self, username: str, contact_id: str, account_id: str, at: datetime) -> bool:
        """Mark one contact of a legacy login linked; False if it already was."""
        ...


class AuditLog(Protocol):
    """What was done, by whom, at which revision."""

    def add_audit(self, record: AuditRecord, revision: int) -> None: ...
    def audit_page(
        self, organization_id: str, *, before: int | None, limit: int, actor_id: str | None = None
    ) -> list[AuditEntry]:
        """The organization's audit, newest first, with ids below `before` (only `actor_id`'s when given)."""
        ...


class MigrationIssues(Protocol):
    """Rows of the legacy data the import refused, kept for the organization's managers."""

    def add_migration_issue(self, issue: MigrationIssueRecord) -> bool:
        """Keep a refused row; False when the same refusal was kept already (a second import)."""
        ...

    def migration_issues_page(
        self, organization_id: str, *, include_resolved: bool, after: int | None, limit: int
    ) -> list[MigrationIssueRecord]:
        """The organization's issues, ordered by id, with ids above `after`."""
        ...

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


class Idempotency(Protocol):
    """The answers of writes sent with a request id, so a retry gets the first answer."""

    def get_idempotent(self, request_id: str, operation: str) -> tuple[str, dict[str, Any]] | None:
        """(request fingerprint, answer) stored for the request id and operation; None when none."""
        ...

    def put_idempotent(
        self, request_id: str, operation: str, fingerprint: str, response: dict[str, Any], at: datetime
    ) -> None: ...


class Outbox(Protocol):
    """Mail queued with the write that causes it, sent by the relay after commit."""

    def enqueue_mail(self, row: OutboxRow, at: datetime) -> None:
        """Queue a message, its body sealed at rest; ConfigError when no outbox key is configured."""
        ...


class BulkImport(Protocol):
    """Bulk import (`authz import`), a chunk at a time so memory stays flat."""

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

    def open_relations_of(
        self, at: datetime, pairs: Collection[tuple[str, str]], *, organizations: bool = False
    ) -> list[Relation]:
        """The relations not removed at `at` (end dates are the caller's to read) of each (holder,
        organization) pair: a contact's relations and delegations by (contact, organization), or,
        with `organizations`, authorizations by (grantee, grantor). What an import checks a chunk
        against: its cost follows the pairs that have relations, not the holders' whole history."""
        ...


class Transaction(
    RevisionLog,
    Contacts,
    Relations,
    LinkCodes,
    Throttles,
    Accounts,
    AuditLog,
    MigrationIssues,
    Idempotency,
    Outbox,
    BulkImport,
    Protocol,
):
    """One unit of work: everything done through it commits together or not at all.

    It is every role above; a function that needs only some of them takes those roles."""


class Store(Protocol):
    """Persistence: the unit of work of writes, and the reads that need no write. The store owns
    the revision row, the change log, idempotency records and the outbox; Unavailable when it
    cannot be reached, whatever the method."""

    def transaction(self) -> AbstractContextManager[Transaction]:
        """One unit of work: committed when the block ends, rolled back if it raises; AlreadyExists
        when a row it added breaks a uniqueness, Unavailable when the store is unreachable."""
        ...

    def load_relations(self) -> Iterator[Relation]:
        """Every relation, ended ones included, with the subjects in force on it."""
        ...

    def revision(self) -> int:
        """The newest committed revision (0 before any write)."""
        ...

    def ping(self) -> bool:
        """Whether the store answers now; never raises."""
        ...

    def close(self) -> None: ...

    # -- secrets shared by every server of one deployment
    def server_secret(self, name: str) -> bytes:
        """A random secret every server on this store shares, created on first use."""
        ...

    # the outbox relay's side (authz.mail.OutboxStore)
    def pending_outbox(
        self, limit: int, *, now: datetime | None = None, give_up_seconds: float | None = None
    ) -> list[OutboxRow]:
        """Messages due now (their next attempt reached) and not given up on, oldest first, bodies
        opened; a message past its retry horizon (`give_up_seconds`, or its own expiry) is given up
        on, and a body that cannot be opened counts as a failed attempt and is left out."""
        ...

    def mark_outbox_sent(self, message_id: str, sent_at: datetime) -> None:
        """The message went out: its body is dropped (it may hold a link code)."""
        ...

    def mark_outbox_failed(self, message_id: str, error: str, retry_at: datetime | None = None) -> None:
        """One more failed attempt, with its reason; tried again no sooner than `retry_at`."""
        ...

    # -- replicas
    def store_id(self) -> str:
        """The id made for this database once; revision tokens carry it."""
        ...

    def snapshot(self) -> AbstractContextManager[Snapshot]:
        """The revision, the store id and every relation, read at one moment: an index built from
        its rows is exactly the state at its revision (start-up, and a follower's reload)."""
        ...

    def changes_after(self, revision: int, limit: int, timeout: float | None = None) -> ChangesPage:
        """Committed changes after `revision`, in revision order, at most `limit`, in one read;
        Unavailable when the store is unreachable or `timeout` seconds pass."""
        ...

    # what the follower, Watch and the policy reload read, without reaching past this protocol
    def change_reader(self) -> ChangeReader:
        """A reader of the change log on a connection of its own, for one follower."""
        ...

    def change_notices(self) -> AbstractContextManager[ChangeNotices] | None:
        """A new listener for the revisions committed from now on (connected when entered;
        Unavailable when it cannot connect); None when the backend announces nothing, and
        followers poll alone."""
        ...

    def live_grants(
        self, subjects: Iterable[str] | None = None, *, excluding: Iterable[str] | None = None
    ) -> dict[str, int]:
        """Grants in force per subject: subjects not removed from relations not removed, of any
        kind; a subject with none is absent. `subjects`: only those; `excluding`: only the others."""
        ...


class ChangeReader(Protocol):
    """The change log as one follower reads it, on a connection of its own."""

    def read(self, revision: int, limit: int) -> ChangesPage:
        """As `Store.changes_after`, without a timeout. Unavailable when the store is unreachable;
        the reader then connects again on its next read."""
        ...

    def close(self) -> None: ...


class ChangeNotices(Protocol):
    """Announcements of committed revisions: a hint that wakes followers early. A missed one
    costs latency, never correctness (followers poll as well)."""

    def heard(self, timeout: float) -> Iterator[int | None]:
        """Each announcement heard within `timeout` seconds, as it arrives: the revision it
        announces, or None when it carries none. Unavailable when the connection is lost."""
        ...
