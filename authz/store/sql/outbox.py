"""Mail queued with the write that causes it, sealed before the database sees it."""

from __future__ import annotations

from datetime import datetime

from authz.config import ConfigError
from authz.store import tables as t
from authz.store.interface import (
    OutboxRow,
)
from authz.store.outbox import OutboxCipher
from authz.store.sql.rows import _OnConnection


class OutboxSql(_OnConnection):
    """`Outbox` on the unit of work's connection."""

    _outbox_cipher: OutboxCipher | None
    _outbox_problem: str | None

    def enqueue_mail(self, row: OutboxRow, at: datetime) -> None:
        if self._outbox_cipher is None:
            raise ConfigError(self._outbox_problem or "no outbox key")
        # Sealed before it reaches the database: its pages, WAL and old row versions never hold a code.
        body = self._outbox_cipher.seal(row.body)
        self.c.execute(
            t.outbox.insert().values(
                id=row.id,
                recipient=row.recipient,
                subject=row.subject,
                body=body,
                created_at=at,
                attempts=0,
                expires_at=row.expires_at,
            )
        )
