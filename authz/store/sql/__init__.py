"""The store on SQLAlchemy Core: SQLite by default, PostgreSQL through psycopg.

One module per concern; `SqlTransaction` (transaction.py) composes one mixin per role
protocol of authz.store.interface."""

from __future__ import annotations

from authz.store.sql.changes import CHANGES_CHANNEL, SqlChangeNotices, SqlChangeReader
from authz.store.sql.engine import make_engine
from authz.store.sql.store import SqlStore, open_store
from authz.store.sql.transaction import SqlTransaction

__all__ = [
    "CHANGES_CHANNEL",
    "SqlChangeNotices",
    "SqlChangeReader",
    "SqlStore",
    "SqlTransaction",
    "make_engine",
    "open_store",
]
