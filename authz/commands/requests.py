""" "Mes demandes": the changes made for an organization, newest first (rule 12's audit, read back).

Needs read on the organization's `relations`; with `mine`, only the actor's own changes, and
then any active contact of the organization may read them. Each row says who made the change,
when, what it changed (field by field, and as recorded), which attestation boxes were ticked on
its form, and one line summing it up in the organization's language (French: organizations
carry no language of their own, and French is the guide's).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from authz.commands.accounts import bind_read_to_account
from authz.commands.base import Deps, relation_in_force, require_organization, require_reader
from authz.commands.contacts import chain_active
from authz.commands.paging import PageCursor, decode_token, encode_token, page_size, page_token_key
from authz.domain.model import RelationKind
from authz.errors import InvalidArgument, PermissionDenied
from authz.store.interface import AuditEntry

__all__ = ["ListRequests", "ListRequestsRequest", "ListRequestsResult", "RequestRow"]


@dataclass(frozen=True)
class ListRequestsRequest:
    actor_id: str
    organization_id: str
    page_size: int = 0
    page_token: str = ""
    mine: bool = False


@dataclass(frozen=True)
class FieldChange:
    field: str
    before: str
    after: str


@dataclass(frozen=True)
class RequestRow:
    id: str
    at: datetime
    actor_id: str
    actor_name: str
    action: str
    attestation: dict[str, bool]
    changes_json: str
    caller: str
    revision: str
    changes: tuple[FieldChange, ...] = ()
    summary: str = ""


@dataclass
class ListRequestsResult:
    requests: list[RequestRow]
    next_page_token: str


class ListRequests:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def execute(self, request: ListRequestsRequest) -> ListRequestsResult:
        settings = self.deps.settings
        size = page_size(request.page_size, settings.default_page_size, settings.max_page_size)
        query = f"requests\x1f{request.organization_id}" + ("\x1fmine" if request.mine else "")
        key = page_token_key(self.deps)
        cursor = decode_token(request.page_token, query, key)
        before = None
        if cursor is not None:
            if not cursor.after.isdigit():
                raise InvalidArgument.field("page_token", "not a token this service issued")
            before = int(cursor.after)
        with self.deps.store.transaction() as tx:
            bind_read_to_account(tx, actor_id=request.actor_id)
            now = self.deps.clock()
            organization = require_organization(tx, request.organization_id)
            if request.mine:
                # "Mes demandes" is everyone's: an active contact of the organization reads their own.
                active = any(
                    (r.kind is RelationKind.CONTACT and relation_in_force(r, now))
                    or (r.kind is RelationKind.DELEGATION and chain_active(self.deps, r, now))
                    for r in tx.find_relations(organization_id=organization.id, contact_id=request.actor_id)
                )
                if not active:
                    raise PermissionDenied(
                        f"{request.actor_id!r} is not an active contact of {organization.id!r}",
                        reason="NOT_AN_ACTIVE_CONTACT",
                    )
            else:
                require_reader(self.deps, request.actor_id, organization.id, now)
            entries = tx.audit_page(
                organization.id, before=before, limit=size + 1, actor_id=request.actor_id if request.mine else None
            )
            names: dict[str, str] = {}

            def name(contact_id: object) -> str:
                if not isinstance(contact_id, str) or not contact_id:
                    return ""
                if contact_id not in names:
                    contact = tx.get_contact(contact_id)
                    names[contact_id] = contact.display_name if contact is not None else ""
                return names[contact_id]

            for entry in entries[:size]:
                name(entry.record.actor_id)
                name(entry.record.changes.get("contact_id"))
        token = encode_token(PageCursor(query, str(entries[size - 1].id)), key) if len(entries) > size else ""
        return ListRequestsResult([_row(entry, names) for entry in entries[:size]], token)


def _row(entry: AuditEntry, names: dict[str, str]) -> RequestRow:
    record = entry.record
    return RequestRow(
        id=str(entry.id),
        at=record.at,
        actor_id=record.actor_id,
        actor_name=names.get(record.actor_id, ""),
        action=record.action,
        attestation=dict(record.attestation or {}),
        changes_json=json.dumps(record.changes, sort_keys=True, ensure_ascii=False, default=str),
        caller=record.caller or "",
        revision=str(entry.revision),
        changes=tuple(field_changes(record.changes)),
        summary=summary(record.action, record.changes, names),
    )


# What each write is called on the screen, in French (the guide's words).
_ACTIONS_FR = {
    "grant_relation": "Ajout d'une relation ou de sujets autorisés",
    "revoke_relation": "Retrait d'une relation ou de sujets autorisés",
    "update_contact": "Modification des informations personnelles et des coordonnées",
    "update_relation": "Modification d'une relation",
    "issue_link_code": "Émission d'un code de liaison",
    "redeem_link_code": "Liaison d'un compte par code",
    "resolve_migration_issue": "Validation d'un élément de la migration",
}
# Keys that say which record a change is about, not what changed.
_ABOUT = frozenset({"contact_id", "relation_id", "grantee_organization_id", "on_organization_id", "kind", "scope"})


def summary(action: str, changes: dict[str, Any], names: dict[str, str]) -> str:
    """One line for "Mes demandes": what was done, and to whom."""
    what = _ACTIONS_FR.get(action, action.replace("_", " "))
    contact_id = changes.get("contact_id")
    whom = names.get(contact_id, "") if isinstance(contact_id, str) else ""
    whom = (
        whom or (contact_id if isinstance(contact_id, str) else "") or str(changes.get("grantee_organization_id") or "")
    )
    return f"{what} : {whom}" if whom else what


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return ", ".join(f"{key}:{_text(item)}" for key, item in sorted(value.items()))
    if isinstance(value, list | tuple):
        return ", ".join(_text(item) for item in value)
    return str(value)


def field_changes(changes: dict[str, Any]) -> list[FieldChange]:
    """The recorded changes, field by field: a before/after pair where the write recorded one,
    otherwise the value it set (before empty)."""
    result: list[FieldChange] = []
    before, after = changes.get("before"), changes.get("after")
    if isinstance(before, dict) and isinstance(after, dict):
        for name in dict.fromkeys([*before, *after]):
            result.append(FieldChange(str(name), _text(before.get(name)), _text(after.get(name))))
    for key, value in changes.items():
        if key in ("before", "after", "changed_fields") or key in _ABOUT:
            continue
        if isinstance(value, dict) and set(value) == {"before", "after"}:
            result.append(FieldChange(key, _text(value["before"]), _text(value["after"])))
        elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            # Nested changes (the relations of a contact's form): each one's fields, prefixed.
            for item in value:
                prefix = f"{key}[{item.get('relation_id', '')}]"
                for change in field_changes(item):
                    result.append(FieldChange(f"{prefix}.{change.field}", change.before, change.after))
        elif value not in (None, "", [], {}, False):
            result.append(FieldChange(key, "", _text(value)))
    return result
