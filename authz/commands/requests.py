""" "Mes demandes": the changes made for an organization, newest first (rule 12's audit, read back).

Needs read on the organization's `relations`. Each row says who made the change, when,
what it changed, and which attestation boxes were ticked on its form.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from authz.commands.accounts import bind_read_to_account
from authz.commands.base import Deps, require_organization, require_reader
from authz.commands.paging import PageCursor, decode_token, encode_token, page_size, page_token_key
from authz.errors import InvalidArgument
from authz.store.interface import AuditEntry

__all__ = ["ListRequests", "ListRequestsRequest", "ListRequestsResult", "RequestRow"]


@dataclass(frozen=True)
class ListRequestsRequest:
    actor_id: str
    organization_id: str
    page_size: int = 0
    page_token: str = ""


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
        query = f"requests\x1f{request.organization_id}"
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
            require_reader(self.deps, request.actor_id, organization.id, now)
            entries = tx.audit_page(organization.id, before=before, limit=size + 1)
            names: dict[str, str] = {}
            for entry in entries[:size]:
                actor = entry.record.actor_id
                if actor not in names:
                    contact = tx.get_contact(actor)
                    names[actor] = contact.display_name if contact is not None else ""
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
    )
