"""Answers kept by request id, inside a unit of work."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    and_,
    select,
)

from authz.store import tables as t
from authz.store.sql.rows import _OnConnection


class IdempotencySql(_OnConnection):
    """`Idempotency` on the unit of work's connection."""

    def get_idempotent(self, request_id: str, operation: str) -> tuple[str, dict[str, Any]] | None:
        row = self.c.execute(
            select(t.idempotency_keys.c.fingerprint, t.idempotency_keys.c.response).where(
                and_(t.idempotency_keys.c.request_id == request_id, t.idempotency_keys.c.operation == operation)
            )
        ).first()
        return (row.fingerprint, dict(row.response)) if row else None

    def put_idempotent(
        self, request_id: str, operation: str, fingerprint: str, response: dict[str, Any], at: datetime
    ) -> None:
        self.c.execute(
            t.idempotency_keys.insert().values(
                request_id=request_id, operation=operation, fingerprint=fingerprint, response=response, created_at=at
            )
        )
