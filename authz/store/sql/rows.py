"""Rows as the domain's objects and back, shared by every part of the SQL store."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    select,
)

from authz.domain.model import (
    Contact,
    OrganizationKind,
    Relation,
    RelationKind,
    Right,
    Role,
)
from authz.domain.text import search_key
from authz.store import tables as t


class _OnConnection:
    """What every part of the unit of work shares: its connection."""

    c: Connection


_RELATION_COLUMNS = (
    t.relations.c.id,
    t.relations.c.kind,
    t.relations.c.organization_id,
    t.relations.c.contact_id,
    t.relations.c.grantee_organization_id,
    t.relations.c.via_organization_id,
    t.relations.c.role,
    t.relations.c.start_date,
    t.relations.c.end_date,
    t.relations.c.ended_at,
)


def _relation(row: Any, subjects: dict[str, Right]) -> Relation:
    return Relation(
        id=row[0],
        kind=RelationKind(row[1]),
        organization_id=row[2],
        start_date=_date(row[7]),
        end_date=_date(row[8]),
        contact_id=row[3],
        grantee_organization_id=row[4],
        via_organization_id=row[5],
        role=Role(row[6]) if row[6] else None,
        subjects=subjects,
        ended_at=row[9],
    )


_GRANT_SEPARATOR = ":"  # subject codes and rights never hold ":" or ","


_GRANTS_SEPARATOR = ","


def _split_grants(text: str | None) -> list[tuple[str, str]]:
    if not text:
        return []
    pairs = (item.partition(_GRANT_SEPARATOR) for item in text.split(_GRANTS_SEPARATOR))
    return [(subject, right) for subject, _, right in pairs]


def _date(value: date | str) -> date:
    """A DATE column as the driver returns it: a date, or ISO text (SQLite)."""
    return value if isinstance(value, date) else date.fromisoformat(value[:10])


def _contact(row: Any) -> Contact:
    return Contact(row.id, row.first_name, row.last_name, row.email, row.language, row.phone, row.phone_type)


def _contact_values(contact: Contact) -> dict[str, str]:
    """A contact's stored columns but its id, its search key following its name."""
    return {
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "email": contact.email,
        "language": contact.language,
        "phone": contact.phone,
        "phone_type": contact.phone_type,
        "search_key": _contact_key(contact.first_name, contact.last_name),
    }


def _contact_key(first_name: str, last_name: str) -> str:
    return search_key(f"{first_name} {last_name}")


def _jsonable(value: Any) -> Any:
    """Audit changes as JSON: dates and enums as their text."""
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Right):
        return value.code
    if isinstance(value, Role | RelationKind | OrganizationKind):
        return value.value
    return value


def _with_subjects(connection: Connection, rows: list[Any]) -> list[Relation]:
    """Relations from their rows, with the subjects in force on each (one query per 500)."""
    if not rows:
        return []
    ids = [row.id for row in rows]
    granted: dict[str, dict[str, Right]] = {relation_id: {} for relation_id in ids}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for s in connection.execute(
            select(t.relation_subjects.c.relation_id, t.relation_subjects.c.subject, t.relation_subjects.c.right)
            .where(t.relation_subjects.c.relation_id.in_(chunk))
            .where(t.relation_subjects.c.removed_at.is_(None))
        ):
            granted[s.relation_id][s.subject] = Right.parse(s.right)
    return [_relation(row, granted[row.id]) for row in rows]
