"""Organizations and contacts, inside a unit of work."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import (
    delete,
    func,
    or_,
    select,
    update,
)

from authz.domain.model import (
    Contact,
    Organization,
    OrganizationKind,
)
from authz.domain.phones import PhoneNumber
from authz.store import tables as t
from authz.store.sql.rows import _contact, _contact_values, _OnConnection


class ContactsSql(_OnConnection):
    """`Contacts` on the unit of work's connection."""

    def get_organization(self, organization_id: str) -> Organization | None:
        row = self.c.execute(select(t.organizations).where(t.organizations.c.id == organization_id)).first()
        return Organization(row.id, row.name, OrganizationKind(row.kind)) if row else None

    def add_organization(self, organization: Organization, at: datetime) -> None:
        self.c.execute(
            t.organizations.insert().values(
                id=organization.id, name=organization.name, kind=organization.kind.value, created_at=at
            )
        )

    def get_contact(self, contact_id: str) -> Contact | None:
        row = self.c.execute(select(t.contacts).where(t.contacts.c.id == contact_id)).first()
        if row is None:
            return None
        return _contact(row)

    def add_contact(self, contact: Contact, at: datetime) -> None:
        self.c.execute(t.contacts.insert().values(id=contact.id, created_at=at, **_contact_values(contact)))

    def update_contact(self, contact: Contact) -> None:
        self.c.execute(update(t.contacts).where(t.contacts.c.id == contact.id).values(**_contact_values(contact)))

    def contact_phones(self, contact_id: str) -> list[PhoneNumber]:
        p = t.contact_phones.c
        rows = self.c.execute(select(t.contact_phones).where(p.contact_id == contact_id).order_by(p.position))
        return [PhoneNumber(row.type, row.number, row.region) for row in rows]

    def set_contact_phones(self, contact_id: str, phones: Sequence[PhoneNumber]) -> None:
        self.c.execute(delete(t.contact_phones).where(t.contact_phones.c.contact_id == contact_id))
        if phones:
            self.c.execute(
                t.contact_phones.insert(),
                [
                    {"contact_id": contact_id, "position": i, "type": p.type, "number": p.number, "region": p.region}
                    for i, p in enumerate(phones)
                ],
            )

    def organization_contacts_with_email(self, organization_id: str, email: str) -> list[Contact]:
        r = t.relations.c
        members = select(r.contact_id).where(
            or_(r.organization_id == organization_id, r.via_organization_id == organization_id)
        )
        rows = self.c.execute(
            select(t.contacts)
            .where(func.lower(t.contacts.c.email) == email.lower())
            .where(t.contacts.c.id.in_(members))
            .order_by(t.contacts.c.id)
        )
        return [_contact(row) for row in rows]
