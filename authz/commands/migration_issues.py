"""Migration follow-up (rule 11): the legacy rows the import could not establish.

The guide: "certaines n'ont pas pu être établies automatiquement", and the person
responsible must "rétablir ou valider" them. Each refused row is kept for the
organization it belongs to (derived from the row itself, or from the contact's relations
in the same file), listed to that organization's managers with the reason, and resolved
either by hand ("validated") or by the grant that re-creates it ("re-established").
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from authz.commands.accounts import bind_read_to_account
from authz.commands.base import Attestation, Deps, WriteOutcome, require_manager, require_organization, run_write
from authz.commands.forms import CHANGE_FORM, require_boxes
from authz.commands.paging import PageCursor, decode_token, encode_token, page_size, page_token_key
from authz.domain.model import Relation, RelationKind
from authz.domain.validation import id_problem
from authz.errors import InvalidArgument, NotFound
from authz.store.interface import AuditRecord, MigrationIssueRecord, Transaction

__all__ = [
    "ListMigrationIssues",
    "ListMigrationIssuesRequest",
    "ListMigrationIssuesResult",
    "MigrationIssues",
    "ResolveMigrationIssue",
    "ResolveMigrationIssueRequest",
    "ResolveMigrationIssueResult",
    "relation_match_key",
    "row_match_key",
    "scrub_secrets",
]

_SEP = "\x1f"


def relation_match_key(relation: Relation) -> str:
    """What identifies a relation for the migration follow-up: who, on what, through what, as what."""
    if relation.kind is RelationKind.ORGANIZATION:
        return _SEP.join(("organization", relation.organization_id, relation.grantee_organization_id or ""))
    if relation.kind is RelationKind.DELEGATION:
        return _SEP.join(
            ("delegation", relation.organization_id, relation.via_organization_id or "", relation.contact_id or "")
        )
    role = relation.role.value if relation.role is not None else ""
    return _SEP.join(("contact", relation.organization_id, relation.contact_id or "", role))


def row_match_key(section: str, row: dict[str, Any]) -> str | None:
    """The key of the relation a refused row of the import file stood for (as `relation_match_key`)."""
    text = {key: value if isinstance(value, str) else "" for key, value in row.items()}
    if section == "relations":
        return _SEP.join(("contact", text.get("organization_id", ""), text.get("contact_id", ""), text.get("role", "")))
    if section == "organization_relations":
        return _SEP.join(("organization", text.get("grantor_id", ""), text.get("grantee_id", "")))
    if section == "delegations":
        return _SEP.join(
            (
                "delegation",
                text.get("target_organization_id", ""),
                text.get("via_organization_id", ""),
                text.get("contact_id", ""),
            )
        )
    return None


# Fields of a refused row that hold a secret (a legacy password hash, a code): never kept, never shown.
SECRET_FIELDS = frozenset({"password_hash", "password", "code", "link_code", "token", "secret"})
REMOVED = "[removed]"
# A PBKDF2 (or any Django-style) hash wherever it sits, e.g. pasted in a field it does not belong to.
_HASH_LIKE = re.compile(r"[a-z0-9_]*pbkdf2[a-z0-9_]*\$\S*", re.IGNORECASE)


def scrub_secrets(value: Any) -> Any:
    """The row without its secrets: secret fields replaced, hash-like strings removed, at any depth."""
    if isinstance(value, dict):
        return {
            key: REMOVED if str(key).lower() in SECRET_FIELDS else scrub_secrets(item) for key, item in value.items()
        }
    if isinstance(value, list):
        return [scrub_secrets(item) for item in value]
    if isinstance(value, str):
        return _HASH_LIKE.sub(REMOVED, value)
    return value


class MigrationIssues:
    """Keeps the import's refused rows, each for the organization(s) whose managers can act on it.

    Made once per import and called where the importer refuses a row. The import streams its
    file, so a refused contact or legacy login, whose organizations are known only from the
    relations that come after it, is kept aside: the importer shows this object every relation
    row it reads (`observe`), and `finish` places what was kept aside, from the file's relations
    or else from the relations already stored. Memory grows with the refused rows only.
    """

    def __init__(self, tx: Transaction, now: datetime) -> None:
        self.tx = tx
        self.now = now
        self._waiting: list[tuple[str, int, dict[str, Any], str, list[str]]] = []
        self._organizations_of_contact: dict[str, list[str]] = {}  # only the waiting rows' contacts

    def record(self, section: str, index: int, row: Any, reason: str) -> None:
        # Secrets go before anything is kept: managers read these rows (ListMigrationIssues).
        row_dict = scrub_secrets(row if isinstance(row, dict) else {"value": row})
        reason = scrub_secrets(reason)
        if section in ("contacts", "legacy_accounts"):
            contact_ids = [row_dict.get("id")] if section == "contacts" else row_dict.get("contact_ids")
            wanted = [c for c in contact_ids if isinstance(c, str)] if isinstance(contact_ids, list) else []
            for contact_id in wanted:
                self._organizations_of_contact.setdefault(contact_id, [])
            self._waiting.append((section, index, row_dict, reason, wanted))
            return
        self._keep(section, index, row_dict, reason, self._organizations(section, row_dict))

    def observe(self, section: str, row: Any) -> None:
        """A relation or delegation row read from the file: whose contact it names."""
        if not self._organizations_of_contact or not isinstance(row, dict):
            return
        contact_id = row.get("contact_id")
        if isinstance(contact_id, str):
            self.observe_ids(
                contact_id, row.get("organization_id" if section == "relations" else "via_organization_id")
            )

    def observe_ids(self, contact_id: str | None, organization_id: str | None) -> None:
        """`observe` for a row already checked: its contact and the organization it is kept for."""
        if contact_id is not None and contact_id in self._organizations_of_contact:
            self._organizations_of_contact[contact_id].append(organization_id)  # type: ignore[arg-type]

    def finish(self) -> None:
        for section, index, row, reason, contact_ids in self._waiting:
            self._keep(section, index, row, reason, self._contact_organizations(contact_ids))
        self._waiting.clear()

    def _keep(self, section: str, index: int, row: dict[str, Any], reason: str, owners: list[str]) -> None:
        identifier = row.get("id") or row.get("username")
        kept_for: list[str | None] = [*owners] or [None]  # nobody's: kept all the same
        for organization_id in kept_for:
            self.tx.add_migration_issue(
                MigrationIssueRecord(
                    section=section,
                    row_index=index,
                    reason=reason,
                    reported_at=self.now,
                    organization_id=organization_id,
                    row_id=str(identifier)[:200] if identifier is not None else None,
                    row=row,
                    match_key=row_match_key(section, row),
                )
            )

    @staticmethod
    def _organizations(section: str, row: dict[str, Any]) -> list[str]:
        direct = {
            "relations": "organization_id",
            "organization_relations": "grantor_id",  # the grantor's managers give it again
            "delegations": "via_organization_id",  # the staff member's organization delegates
        }.get(section)
        return _ids([row.get(direct)]) if direct is not None else []  # an organization: nobody manages it yet

    def _contact_organizations(self, contact_ids: list[str]) -> list[str]:
        found: list[Any] = []
        for contact_id in contact_ids:
            in_file = [o for o in self._organizations_of_contact.get(contact_id, []) if o]
            if in_file:
                found.extend(in_file)
                continue
            # A contact imported before: its stored relations say whose it is.
            for relation in self.tx.find_relations(contact_id=contact_id):
                if relation.kind is RelationKind.CONTACT:
                    found.append(relation.organization_id)
                elif relation.kind is RelationKind.DELEGATION:
                    found.append(relation.via_organization_id)
        return _ids(found)


def _ids(values: list[Any]) -> list[str]:
    return list(dict.fromkeys(v for v in values if isinstance(v, str) and id_problem(v) is None))


# -- ListMigrationIssues


@dataclass(frozen=True)
class ListMigrationIssuesRequest:
    actor_id: str
    organization_id: str
    include_resolved: bool = False
    page_size: int = 0
    page_token: str = ""


@dataclass
class ListMigrationIssuesResult:
    issues: list[MigrationIssueRecord]
    next_page_token: str


class ListMigrationIssues:
    """The organization's migration issues, oldest first, for its managers."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def execute(self, request: ListMigrationIssuesRequest) -> ListMigrationIssuesResult:
        settings = self.deps.settings
        size = page_size(request.page_size, settings.default_page_size, settings.max_page_size)
        query = f"migration_issues{_SEP}{request.organization_id}{_SEP}{request.include_resolved}"
        key = page_token_key(self.deps)
        cursor = decode_token(request.page_token, query, key)
        after = _int(cursor.after) if cursor is not None else None
        with self.deps.store.transaction() as tx:
            bind_read_to_account(tx, actor_id=request.actor_id)
            now = self.deps.clock()
            organization = require_organization(tx, request.organization_id)
            require_manager(self.deps, request.actor_id, organization.id, now)
            issues = tx.migration_issues_page(
                organization.id, include_resolved=request.include_resolved, after=after, limit=size + 1
            )
        token = encode_token(PageCursor(query, str(issues[size - 1].id)), key) if len(issues) > size else ""
        # Scrubbed again on the way out: a row kept before secrets were stripped at import shows none.
        shown = [
            dataclasses.replace(i, row=scrub_secrets(i.row), reason=scrub_secrets(i.reason)) for i in issues[:size]
        ]
        return ListMigrationIssuesResult(shown, token)


def _int(text: str) -> int:
    if not text.isdigit():
        raise InvalidArgument.field("page_token", "not a token this service issued")
    return int(text)


# -- ResolveMigrationIssue


@dataclass(frozen=True)
class ResolveMigrationIssueRequest:
    actor_id: str
    organization_id: str
    issue_id: int
    attestation: Attestation = field(default_factory=Attestation)
    request_id: str = ""


@dataclass
class ResolveMigrationIssueResult:
    revision: str = ""


class ResolveMigrationIssue:
    """A manager marks an issue "validated": looked at, and re-established or left as it is."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def execute(self, request: ResolveMigrationIssueRequest) -> ResolveMigrationIssueResult:
        boxes = require_boxes(request.attestation, CHANGE_FORM)
        deps = self.deps

        def body(tx: Transaction, now: datetime) -> WriteOutcome:
            organization = require_organization(tx, request.organization_id)
            require_manager(deps, request.actor_id, organization.id, now)
            issue = tx.resolve_migration_issue(request.issue_id, organization.id, now, request.actor_id, "validated")
            if issue is None:
                raise NotFound(
                    f"no open migration issue {request.issue_id} for {organization.id!r}",
                    reason="MIGRATION_ISSUE_NOT_FOUND",
                )
            audit = AuditRecord(
                at=now,
                actor_id=request.actor_id,
                action="resolve_migration_issue",
                organization_id=organization.id,
                request_id=request.request_id or None,
                attestation=boxes,
                changes={"issue_id": issue.id, "section": issue.section, "row_id": issue.row_id},
            )
            return WriteOutcome(ResolveMigrationIssueResult(), audit)

        return run_write(
            deps,
            "resolve_migration_issue",
            request,
            request.request_id,
            body,
            ResolveMigrationIssueResult,
            actor_id=request.actor_id,
        )
