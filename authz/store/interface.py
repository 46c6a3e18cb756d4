"""What the commands need from persistence: a small interface every backend passes one suite against."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from authz.domain.model import Contact, Organization, Relation, RelationKind

__all__ = [
    "AuditRecord",
    "ImportBatch",
    "ImportKind",
    "LegacyAccount",
    "LinkCodeRecord",
    "OutboxRow",
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


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: str
    recipient: str
    subject: str
    body: str
    attempts: int = 0


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
    def lock(self, *keys: str) -> None:
        """Serialize this transaction, until it ends, with every other one that locks one of `keys`
        (in this process or another): read-then-write decisions such as throttling stay exact."""
        ...

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
    ) -> list[Relation]:
        """Relations on, through or granted to an organization, ordered by id, after `after`."""
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

    # the outbox relay's side (authz.mail.OutboxStore)
    def pending_outbox(self, limit: int) -> list[OutboxRow]: ...
    def mark_outbox_sent(self, message_id: str, sent_at: datetime) -> None: ...
    def mark_outbox_failed(self, message_id: str, error: str) -> None: ...
