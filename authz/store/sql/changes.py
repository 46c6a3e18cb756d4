"""The revision row and the change log: numbering writes, logging them, reading and announcing them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import suppress
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    func,
    select,
    text,
    update,
)

from authz.errors import Unavailable
from authz.store import tables as t
from authz.store.changes import Change, ChangesPage, relation_from_json, relation_to_json
from authz.store.sql.engine import _STORE_DOWN
from authz.store.sql.rows import _OnConnection

if TYPE_CHECKING:
    from authz.store.sql.store import SqlStore


CHANGES_CHANNEL = "authz_changes"  # LISTEN/NOTIFY channel: "a revision committed"


def _changes_after(connection: Connection, revision: int, limit: int) -> ChangesPage:
    # One statement, so one snapshot and one round trip: the store's revision beside the log's
    # rows after `revision` (or beside nothing, when there are none). Every change up to that
    # revision is committed and visible in the same snapshot, and the log is dense (a revision is
    # taken under the row lock of store_revision, held until commit): no row can be missing.
    r, c = t.store_revision.c, t.change_log.c
    rows = connection.execute(
        select(r.revision.label("newest"), c.revision, c.committed_at, c.operation, c.relations)
        .select_from(t.store_revision.outerjoin(t.change_log, c.revision > revision))
        .where(r.id == 1)
        .order_by(c.revision)
        .limit(limit)
    ).all()
    newest = int(rows[0].newest)
    changes = tuple(
        Change(
            int(row.revision),
            row.committed_at,
            row.operation,
            None if row.relations is None else tuple(relation_from_json(item) for item in row.relations),
        )
        for row in rows
        if row.revision is not None
    )
    expired = revision < newest and (not changes or changes[0].revision != revision + 1)
    return ChangesPage(changes, expired, max(newest, changes[-1].revision if changes else 0))


class SqlChangeReader:
    """The change log read on a connection of its own, in autocommit: a follower's frequent reads
    cost one round trip each (no pool check-out and its ping, no BEGIN and COMMIT)."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self._connection: Connection | None = None

    def read(self, revision: int, limit: int) -> ChangesPage:
        try:
            if self._connection is None:
                self._connection = self._store.open_reader()
            return self._store.read_changes(self._connection, revision, limit)
        except Unavailable:
            self.close()  # opened again by the next read
            raise

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with suppress(Exception):
                connection.close()


class SqlChangeNotices:
    """PostgreSQL LISTEN on the changes channel, on a connection of its own (autocommit:
    notifications are only delivered outside a transaction)."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._connection: Any = None

    def __enter__(self) -> SqlChangeNotices:
        import psycopg

        try:
            self._connection = psycopg.connect(
                self._conninfo,
                autocommit=True,
                application_name="authz-follower",
                connect_timeout=3,
                keepalives=1,
                keepalives_idle=5,
                keepalives_interval=2,
                keepalives_count=3,
            )
            self._connection.execute(f"LISTEN {CHANGES_CHANNEL}")
        except psycopg.Error as exc:
            self.__exit__(None, None, None)
            raise Unavailable(_STORE_DOWN) from exc
        return self

    def __exit__(self, *_exc: object) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with suppress(Exception):
                connection.close()

    def heard(self, timeout: float) -> Iterator[int | None]:
        import psycopg

        if self._connection is None:
            raise Unavailable("not listening")
        try:
            for note in self._connection.notifies(timeout=timeout):
                yield int(note.payload) if note.payload.isdigit() else None
        except psycopg.Error as exc:
            raise Unavailable(_STORE_DOWN) from exc


class RevisionLogSql(_OnConnection):
    """`RevisionLog` on the unit of work's connection."""

    def bump_revision(self) -> int:
        # One row updated by every write: writers queue on its lock, so revisions
        # follow commit order on PostgreSQL as on SQLite.
        revision = self.c.execute(
            update(t.store_revision)
            .where(t.store_revision.c.id == 1)
            .values(revision=t.store_revision.c.revision + 1)
            .returning(t.store_revision.c.revision)
        ).scalar_one()
        return int(revision)

    def lock_revision(self) -> int:
        """Take the revision row's lock now (not at bump_revision), and read the store's revision.

        A write that takes it first runs alone among writers of every process and host until it
        commits: what it reads (permissions caught up from the log) stays the store's newest state.
        """
        if self.c.dialect.name == "postgresql":
            value = self.c.execute(
                select(t.store_revision.c.revision).where(t.store_revision.c.id == 1).with_for_update()
            ).scalar_one()
            return int(value)
        # SQLite has one writer at a time: a no-op write takes the database's write lock now (not at
        # the first real write), so every read after it is made under that lock.
        self.c.execute(
            update(t.store_revision).where(t.store_revision.c.id == 1).values(revision=t.store_revision.c.revision)
        )
        return int(self.c.execute(select(t.store_revision.c.revision).where(t.store_revision.c.id == 1)).scalar_one())

    def append_change(self, change: Change) -> None:
        """The change log row of this write (same transaction), and on PostgreSQL a wake-up for followers."""
        relations = None if change.relations is None else [relation_to_json(r) for r in change.relations]
        self.c.execute(
            t.change_log.insert().values(
                revision=change.revision,
                committed_at=change.committed_at,
                operation=change.operation,
                relations=relations,
            )
        )
        if self.c.dialect.name == "postgresql":
            # Delivered at commit, never before; a hint only (followers poll as well).
            self.c.execute(
                text("SELECT pg_notify(:channel, :payload)"),
                {"channel": CHANGES_CHANNEL, "payload": str(change.revision)},
            )

    def prune_changes(self, before: datetime) -> int:
        """Drop the log's prefix committed before `before` (retention); a prefix, so the log stays dense."""
        c = t.change_log.c
        last = self.c.execute(select(func.max(c.revision)).where(c.committed_at < before)).scalar()
        if last is None:
            return 0
        return int(self.c.execute(t.change_log.delete().where(c.revision <= last)).rowcount)

    def changes_after(self, revision: int, limit: int) -> ChangesPage:
        return _changes_after(self.c, revision, limit)
