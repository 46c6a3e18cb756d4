"""Relations and their subjects, inside a unit of work; history is kept."""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    or_,
    select,
    update,
)

from authz.domain.model import (
    Relation,
    RelationKind,
    Right,
)
from authz.store import tables as t
from authz.store.sql.rows import _RELATION_COLUMNS, _OnConnection, _with_subjects


class RelationsSql(_OnConnection):
    """`Relations` on the unit of work's connection."""

    def _with_subjects(self, rows: list[Any]) -> list[Relation]:
        return _with_subjects(self.c, rows)

    def get_relation(self, relation_id: str) -> Relation | None:
        rows = list(self.c.execute(select(*_RELATION_COLUMNS).where(t.relations.c.id == relation_id)))
        found = self._with_subjects(rows)
        return found[0] if found else None

    def find_relations(
        self,
        *,
        organization_id: str | None = None,
        contact_id: str | None = None,
        grantee_organization_id: str | None = None,
        via_organization_id: str | None = None,
    ) -> list[Relation]:
        query = select(*_RELATION_COLUMNS)
        if organization_id is not None:
            query = query.where(t.relations.c.organization_id == organization_id)
        if contact_id is not None:
            query = query.where(t.relations.c.contact_id == contact_id)
        if grantee_organization_id is not None:
            query = query.where(t.relations.c.grantee_organization_id == grantee_organization_id)
        if via_organization_id is not None:
            query = query.where(t.relations.c.via_organization_id == via_organization_id)
        return self._with_subjects(list(self.c.execute(query.order_by(t.relations.c.id))))

    def find_open_relations(
        self,
        at: datetime,
        *,
        organization_id: str | None = None,
        contact_ids: Collection[str] | None = None,
        grantee_organization_ids: Collection[str] | None = None,
        via_organization_id: str | None = None,
    ) -> list[Relation]:
        r = t.relations.c
        query = select(*_RELATION_COLUMNS).where(or_(r.ended_at.is_(None), r.ended_at > at))
        if organization_id is not None:
            query = query.where(r.organization_id == organization_id)
        if via_organization_id is not None:
            query = query.where(r.via_organization_id == via_organization_id)
        if contact_ids is not None and grantee_organization_ids is not None:
            raise ValueError("filter by contacts or by grantee organizations, not both")
        column, wanted = (
            (r.contact_id, contact_ids)
            if contact_ids is not None
            else (r.grantee_organization_id, grantee_organization_ids)
        )
        if wanted is None:
            return self._with_subjects(list(self.c.execute(query.order_by(r.id))))
        ids = sorted(set(wanted))
        rows: list[Any] = []
        for start in range(0, len(ids), 500):  # a bounded number of parameters per statement
            rows.extend(self.c.execute(query.where(column.in_(ids[start : start + 500])).order_by(r.id)))
        return self._with_subjects(rows)

    def relation_exists(
        self,
        kind: RelationKind,
        *,
        organization_id: str | None = None,
        contact_id: str | None = None,
        via_organization_id: str | None = None,
    ) -> bool:
        r = t.relations.c
        query = select(r.id).where(r.kind == kind.value)
        if organization_id is not None:
            query = query.where(r.organization_id == organization_id)
        if contact_id is not None:
            query = query.where(r.contact_id == contact_id)
        if via_organization_id is not None:
            query = query.where(r.via_organization_id == via_organization_id)
        return self.c.execute(query.limit(1)).first() is not None

    def add_relation(self, relation: Relation, at: datetime, created_by: str | None) -> None:
        self.c.execute(
            t.relations.insert().values(
                id=relation.id,
                kind=relation.kind.value,
                organization_id=relation.organization_id,
                contact_id=relation.contact_id,
                grantee_organization_id=relation.grantee_organization_id,
                via_organization_id=relation.via_organization_id,
                role=relation.role.value if relation.role else None,
                start_date=relation.start_date,
                end_date=relation.end_date,
                ended_at=relation.ended_at,
                created_at=at,
                created_by=created_by,
            )
        )
        self.add_subjects(relation.id, dict(relation.subjects), at)

    def end_relation(self, relation_id: str, at: datetime) -> bool:
        result = self.c.execute(
            update(t.relations)
            .where(t.relations.c.id == relation_id)
            .where(or_(t.relations.c.ended_at.is_(None), t.relations.c.ended_at > at))
            .values(ended_at=at)
        )
        return bool(result.rowcount)

    def add_subjects(self, relation_id: str, subjects: dict[str, Any], at: datetime) -> None:
        if not subjects:
            return
        # A subject granted again replaces its previous grant; the old row stays as history.
        self.remove_subjects(relation_id, list(subjects), at)
        self.c.execute(
            t.relation_subjects.insert(),
            [
                {"relation_id": relation_id, "subject": subject, "right": Right(right).code, "granted_at": at}
                for subject, right in subjects.items()
            ],
        )

    def remove_subjects(self, relation_id: str, subjects: list[str], at: datetime) -> int:
        result = self.c.execute(
            update(t.relation_subjects)
            .where(t.relation_subjects.c.relation_id == relation_id)
            .where(t.relation_subjects.c.subject.in_(subjects))
            .where(t.relation_subjects.c.removed_at.is_(None))
            .values(removed_at=at)
        )
        return int(result.rowcount)

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
        r = t.relations.c
        query = (
            select(*_RELATION_COLUMNS)
            .where(
                or_(
                    r.organization_id == organization_id,
                    r.via_organization_id == organization_id,
                    r.grantee_organization_id == organization_id,
                )
            )
            .where(r.kind.in_([kind.value for kind in kinds]))
        )
        if contact_id is not None:
            query = query.where(r.contact_id == contact_id)
        if name_key:
            matching = select(t.contacts.c.id).where(t.contacts.c.search_key.contains(name_key, autoescape=True))
            query = query.where(r.contact_id.in_(matching))
        if after is not None:
            query = query.where(r.id > after)
        return self._with_subjects(list(self.c.execute(query.order_by(r.id).limit(limit))))

    def set_relation_end(self, relation_id: str, end_date: date) -> None:
        self.c.execute(update(t.relations).where(t.relations.c.id == relation_id).values(end_date=end_date))
