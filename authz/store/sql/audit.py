"""The audit log, inside a unit of work."""

from __future__ import annotations

from sqlalchemy import (
    select,
)

from authz.store import tables as t
from authz.store.interface import (
    AuditEntry,
    AuditRecord,
)
from authz.store.sql.rows import _jsonable, _OnConnection


class AuditLogSql(_OnConnection):
    """`AuditLog` on the unit of work's connection."""

    def add_audit(self, record: AuditRecord, revision: int) -> None:
        self.c.execute(
            t.audit_log.insert().values(
                at=record.at,
                revision=revision,
                actor_id=record.actor_id,
                caller=record.caller,
                action=record.action,
                organization_id=record.organization_id,
                request_id=record.request_id,
                attestation=record.attestation,
                changes=_jsonable(record.changes),
            )
        )

    def audit_page(
        self, organization_id: str, *, before: int | None, limit: int, actor_id: str | None = None
    ) -> list[AuditEntry]:
        a = t.audit_log.c
        query = select(t.audit_log).where(a.organization_id == organization_id)
        if actor_id is not None:
            query = query.where(a.actor_id == actor_id)
        if before is not None:
            query = query.where(a.id < before)
        rows = self.c.execute(query.order_by(a.id.desc()).limit(limit))
        return [
            AuditEntry(
                id=row.id,
                revision=int(row.revision),
                record=AuditRecord(
                    at=row.at,
                    actor_id=row.actor_id,
                    action=row.action,
                    changes=dict(row.changes or {}),
                    organization_id=row.organization_id,
                    request_id=row.request_id,
                    attestation=dict(row.attestation) if row.attestation is not None else None,
                    caller=row.caller,
                ),
            )
            for row in rows
        ]
