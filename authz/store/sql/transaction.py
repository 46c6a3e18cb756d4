"""SqlTransaction: the unit of work of one command, every role on one connection."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import (
    Connection,
)

from authz.store.outbox import OutboxCipher
from authz.store.sql.accounts import AccountsSql
from authz.store.sql.audit import AuditLogSql
from authz.store.sql.bulk import BulkImportSql
from authz.store.sql.changes import RevisionLogSql
from authz.store.sql.contacts import ContactsSql
from authz.store.sql.idempotency import IdempotencySql
from authz.store.sql.link_codes import LinkCodesSql
from authz.store.sql.migration_issues import MigrationIssuesSql
from authz.store.sql.outbox import OutboxSql
from authz.store.sql.relations import RelationsSql
from authz.store.sql.throttles import ThrottlesSql


class SqlTransaction(
    RevisionLogSql,
    ContactsSql,
    RelationsSql,
    LinkCodesSql,
    ThrottlesSql,
    AccountsSql,
    AuditLogSql,
    IdempotencySql,
    OutboxSql,
    MigrationIssuesSql,
    BulkImportSql,
):
    """The unit of work of one command, on one connection inside one transaction: every role
    protocol of authz.store.interface, one mixin each."""

    def __init__(
        self, connection: Connection, outbox_cipher: OutboxCipher | None = None, outbox_problem: str | None = None
    ) -> None:
        self.c = connection
        self._outbox_cipher = outbox_cipher
        self._outbox_problem = outbox_problem
        self._dates: dict[date, Any] = {}  # bulk import: each distinct date converted for the driver once
        self._cache_size: int | None = None  # SQLite's page cache before a bulk write widened it
        self._deferred_indexes: list[str] = []
