"""One committed write as the store's change log keeps it, and its plain-JSON form."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from authz.domain.model import Relation, RelationKind, Right, Role

__all__ = ["Change", "ChangesPage", "relation_from_json", "relation_to_json"]


@dataclass(frozen=True, slots=True)
class Change:
    """The effects of the write that committed revision `revision`.

    `relations` are the relations the write changed, as they stand after it (each replaces
    its previous state); None means the write changed too much to list (a bulk import):
    whoever follows reloads everything from a snapshot.
    """

    revision: int
    committed_at: datetime
    operation: str
    relations: tuple[Relation, ...] | None


@dataclass(frozen=True, slots=True)
class ChangesPage:
    """Changes after a cursor, in revision order, dense from cursor + 1.

    `expired` is True when the log no longer holds cursor + 1 (pruned by retention, or the
    cursor predates the log): the follower must reload, a Watch cursor is refused.
    `newest` is the store's revision when read.
    """

    changes: tuple[Change, ...]
    expired: bool
    newest: int


def relation_to_json(relation: Relation) -> dict[str, Any]:
    return {
        "id": relation.id,
        "kind": relation.kind.value,
        "organization_id": relation.organization_id,
        "contact_id": relation.contact_id,
        "grantee_organization_id": relation.grantee_organization_id,
        "via_organization_id": relation.via_organization_id,
        "role": relation.role.value if relation.role is not None else None,
        "start_date": relation.start_date.isoformat(),
        "end_date": relation.end_date.isoformat(),
        "ended_at": relation.ended_at.isoformat() if relation.ended_at is not None else None,
        "subjects": {subject: Right(right).code for subject, right in sorted(relation.subjects.items())},
    }


def relation_from_json(data: dict[str, Any]) -> Relation:
    ended = data.get("ended_at")
    return Relation(
        id=data["id"],
        kind=RelationKind(data["kind"]),
        organization_id=data["organization_id"],
        start_date=date.fromisoformat(data["start_date"]),
        end_date=date.fromisoformat(data["end_date"]),
        contact_id=data.get("contact_id"),
        grantee_organization_id=data.get("grantee_organization_id"),
        via_organization_id=data.get("via_organization_id"),
        role=Role(data["role"]) if data.get("role") else None,
        subjects={subject: Right.parse(right) for subject, right in (data.get("subjects") or {}).items()},
        ended_at=datetime.fromisoformat(ended) if ended else None,
    )
