"""ListContacts: "Contacts de l'organisation". Needs read on the organization's `relations`."""

from __future__ import annotations

from dataclasses import dataclass

from authz.commands.base import Deps, displayed_end, relation_in_force, require_organization, require_reader
from authz.commands.listing import paged_rows
from authz.commands.paging import page_size, page_token_key
from authz.domain.model import Contact, Relation, RelationKind, Role

__all__ = ["ContactRow", "ListContacts", "ListContactsRequest", "ListContactsResult"]


@dataclass(frozen=True)
class ListContactsRequest:
    actor_id: str
    organization_id: str
    page_size: int = 0
    page_token: str = ""


@dataclass(frozen=True)
class ContactRow:
    contact_id: str
    display_name: str
    role: Role | None
    organization_id: str
    active: bool
    relation_id: str
    start_date: str
    end_date: str
    via_organization_id: str


@dataclass
class ListContactsResult:
    contacts: list[ContactRow]
    next_page_token: str


class ListContacts:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def execute(self, request: ListContactsRequest) -> ListContactsResult:
        settings = self.deps.settings
        size = page_size(request.page_size, settings.default_page_size, settings.max_page_size)
        with self.deps.store.transaction() as tx:
            now = self.deps.clock()
            organization = require_organization(tx, request.organization_id)
            require_reader(self.deps, request.actor_id, organization.id, now)
            names: dict[str, Contact | None] = {}

            def rows_of(relation: Relation) -> list[ContactRow]:
                contact_id = relation.contact_id or ""
                if contact_id not in names:
                    names[contact_id] = tx.get_contact(contact_id)
                contact = names[contact_id]
                return [
                    ContactRow(
                        contact_id=contact_id,
                        display_name=contact.display_name if contact else contact_id,
                        role=relation.role,
                        organization_id=relation.organization_id,
                        active=relation_in_force(relation, now),
                        relation_id=relation.id,
                        start_date=relation.start_date.isoformat(),
                        end_date=displayed_end(relation).isoformat(),
                        via_organization_id=relation.via_organization_id or "",
                    )
                ]

            rows, token = paged_rows(
                tx,
                organization.id,
                groups=[(RelationKind.CONTACT, RelationKind.DELEGATION)],
                contact_id=None,
                token=request.page_token,
                size=size,
                rows_of=rows_of,
                key=page_token_key(self.deps),
            )
        return ListContactsResult(rows, token)
