"""Connections: an engine with the settings each backend needs, and a transaction's time limit."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    event,
)
from sqlalchemy.pool import ConnectionPoolEntry

from authz.calls import remaining
from authz.errors import Unavailable

log = logging.getLogger("authz.store")


_STORE_DOWN = "the store is unreachable; nothing was written, try again"


def make_engine(url: str, *, connect_timeout: float = 3.0) -> Engine:
    """An engine with the settings each backend needs to behave under load and faults."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    connect_args: dict[str, Any] = {}
    if url.startswith("postgresql"):
        # Fail fast when the server is gone: a write must answer UNAVAILABLE within its deadline.
        connect_args = {"connect_timeout": max(1, int(connect_timeout))}
        # A server cut off mid-statement (no RST) is noticed in seconds, not after the kernel's ~15 minutes:
        # the statement_timeout set per transaction is enforced by the server, which may be unreachable.
        connect_args |= {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3}
        connect_args["tcp_user_timeout"] = 10_000
    # pool_timeout: with every connection stuck on a dead server, a write waits seconds for one, not 30.
    return create_engine(
        url, pool_pre_ping=True, connect_args=connect_args, pool_size=5, max_overflow=5, pool_timeout=connect_timeout
    )


_SQLITE_BUSY_MS = 30_000  # as make_engine's `timeout`


def _wait_no_longer_than_caller(connection: Connection) -> None:
    """Bound lock waits and statements by the caller's deadline (authz.calls), when there is one."""
    left = remaining()
    if left is not None and left <= 0:
        raise Unavailable(
            "the caller's deadline passed before the write could be made; nothing was written", reason="DEADLINE_PASSED"
        )
    milliseconds = _SQLITE_BUSY_MS if left is None else max(1, int(left * 1000))
    if connection.dialect.name == "postgresql":
        if left is not None:  # SET LOCAL: ends with this transaction
            connection.exec_driver_sql(f"SET LOCAL statement_timeout = {milliseconds}")
            connection.exec_driver_sql(f"SET LOCAL lock_timeout = {milliseconds}")
    elif connection.dialect.name == "sqlite":
        # A connection-wide setting: set on every transaction, so a pooled connection never keeps an old one.
        connection.exec_driver_sql(f"PRAGMA busy_timeout = {min(milliseconds, _SQLITE_BUSY_MS)}")
