"""ListContacts ("Contacts de l'organisation") and GetContact (a contact's details).

Both need read on the organization's `relations`. "Actif" follows the whole chain: a
delegation counts as active only while the checks would honour it (the staff member is
still in force with the organization it comes through, and that organization still holds
something there), so every list agrees with CheckAccess.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from authz.commands.accounts import bind_read_to_account
from authz.commands.base import Deps, displayed_end, relation_in_force, require_organization, require_reader
from authz.commands.listing import paged_rows
from authz.commands.paging import page_size, page_token_key
from authz.domain.model import Contact, Relation, RelationKind, Role
from authz.domain.phones import PhoneNumber
from authz.domain.text import search_key
from authz.errors import NotFound
from authz.store.interface import Transaction

__all__ = [
    "ContactDetails",
    "ContactRow",
    "GetContact",
    "GetContactRequest",
    "ListContacts",
    "ListContactsRequest",
    "ListContactsResult",
    "chain_active",
    "is_own_contact",
    "relations_shown_to",
]


@dataclass(frozen=True)
class ListContactsRequest:
    actor_id: str
    organization_id: str
    page_size: int = 0
    page_token: str = ""
    contact_id: str = ""  # filter, optional
    query: str = ""  # name search, accent- and case-insensitive


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
    organization_name: str = ""


@dataclass
class ListContactsResult:
    contacts: list[ContactRow]
    next_page_token: str


def chain_active(deps: Deps, relation: Relation, now: datetime) -> bool:
    """In force, and for a delegation, still honoured by the checks (the whole chain holds)."""
    if not relation_in_force(relation, now):
        return False
    if relation.kind is RelationKind.DELEGATION:
        return bool(deps.engine.effective_grants(relation, now))
    return True


class _Rows:
    """ContactRows with names looked up once per contact and organization."""

    def __init__(self, deps: Deps, tx: Transaction, now: datetime) -> None:
        self.deps, self.tx, self.now = deps, tx, now
        self.contacts: dict[str, Contact | None] = {}
        self.organizations: dict[str, str] = {}

    def organization_name(self, organization_id: str) -> str:
        if organization_id not in self.organizations:
            organization = self.tx.get_organization(organization_id)
            self.organizations[organization_id] = organization.name if organization else ""
        return self.organizations[organization_id]

    def row(self, relation: Relation) -> ContactRow:
        contact_id = relation.contact_id or ""
        if contact_id not in self.contacts:
            self.contacts[contact_id] = self.tx.get_contact(contact_id)
        contact = self.contacts[contact_id]
        return ContactRow(
            contact_id=contact_id,
            display_name=contact.display_name if contact else contact_id,
            role=relation.role,
            organization_id=relation.organization_id,
            active=chain_active(self.deps, relation, self.now),
            relation_id=relation.id,
            start_date=relation.start_date.isoformat(),
            end_date=displayed_end(relation).isoformat(),
            via_organization_id=relation.via_organization_id or "",
            organization_name=self.organization_name(relation.organization_id),
        )


class ListContacts:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def execute(self, request: ListContactsRequest) -> ListContactsResult:
        settings = self.deps.settings
        size = page_size(request.page_size, settings.default_page_size, settings.max_page_size)
        name_key = search_key(request.query) or None
        with self.deps.store.transaction() as tx:
            bind_read_to_account(tx, actor_id=request.actor_id)
            now = self.deps.clock()
            organization = require_organization(tx, request.organization_id)
            require_reader(self.deps, request.actor_id, organization.id, now)
            rows = _Rows(self.deps, tx, now)
            found, token = paged_rows(
                tx,
                organization.id,
                groups=[(RelationKind.CONTACT, RelationKind.DELEGATION)],
                contact_id=request.contact_id or None,
                token=request.page_token,
                size=size,
                rows_of=lambda relation: [rows.row(relation)],
                name_key=name_key,
                key=page_token_key(self.deps),
            )
        return ListContactsResult(found, token)


def relations_shown_to(tx: Transaction, organization_id: str, contact_id: str) -> list[Relation]:
    """The contact's relations as the organization's contact list shows them: with it, on it, through it."""
    on = [
        relation
        for relation in tx.find_relations(organization_id=organization_id, contact_id=contact_id)
        if relation.kind is not RelationKind.ORGANIZATION
    ]
    through = tx.find_relations(via_organization_id=organization_id, contact_id=contact_id)
    seen = {relation.id for relation in on}
    return sorted(on + [r for r in through if r.id not in seen], key=lambda relation: relation.id)


def is_own_contact(tx: Transaction, organization_id: str, contact_id: str) -> bool:
    """ "Contact dans ce profil": has the contact ever had a relation with the organization
    (or a delegation through it, given to its staff)?"""
    # Existence only: a contact with years of history costs one row read, not all of it.
    return tx.relation_exists(
        RelationKind.CONTACT, organization_id=organization_id, contact_id=contact_id
    ) or tx.relation_exists(RelationKind.DELEGATION, via_organization_id=organization_id, contact_id=contact_id)


@dataclass(frozen=True)
class GetContactRequest:
    actor_id: str
    organization_id: str
    contact_id: str


@dataclass(frozen=True)
class ContactDetails:
    contact: Contact
    relations: list[ContactRow]
    phones: list[PhoneNumber] = field(default_factory=list)  # every number, principal first


class GetContact:
    """A contact's details and relations with the organization ("Cliquez sur chaque profil")."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def execute(self, request: GetContactRequest) -> ContactDetails:
        with self.deps.store.transaction() as tx:
            bind_read_to_account(tx, actor_id=request.actor_id)
            now = self.deps.clock()
            organization = require_organization(tx, request.organization_id)
            require_reader(self.deps, request.actor_id, organization.id, now)
            contact = tx.get_contact(request.contact_id)
            relations = relations_shown_to(tx, organization.id, request.contact_id)
            if contact is None or not relations:
                raise NotFound(
                    f"contact {request.contact_id!r} is not a contact of {organization.id!r}",
                    reason="CONTACT_NOT_FOUND",
                )
            rows = _Rows(self.deps, tx, now)
            phones = tx.contact_phones(contact.id) or (
                [PhoneNumber(contact.phone_type, contact.phone, "")] if contact.phone else []
            )
            return ContactDetails(contact, [rows.row(relation) for relation in relations], phones)
