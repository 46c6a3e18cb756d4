"""The store on SQLAlchemy Core: SQLite by default, PostgreSQL through psycopg."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    String,
    and_,
    create_engine,
    delete,
    event,
    func,
    or_,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.pool import ConnectionPoolEntry

from authz.calls import remaining
from authz.config import ConfigError, Settings
from authz.domain.index_rows import IndexRow
from authz.domain.model import (
    Contact,
    Organization,
    OrganizationKind,
    Relation,
    RelationKind,
    Right,
    Role,
)
from authz.domain.phones import PhoneNumber
from authz.domain.text import search_key
from authz.errors import AlreadyExists, Unavailable
from authz.store import tables as t
from authz.store.changes import Change, ChangesPage, relation_from_json, relation_to_json
from authz.store.interface import (
    AuditEntry,
    AuditRecord,
    ImportBatch,
    ImportKind,
    LegacyAccount,
    LinkCodeRecord,
    MigrationIssueRecord,
    OutboxRow,
    Snapshot,
)
from authz.store.outbox import MailDeliveryError, OutboxCipher, outbox_cipher

__all__ = [
    "CHANGES_CHANNEL",
    "SqlChangeNotices",
    "SqlChangeReader",
    "SqlStore",
    "SqlTransaction",
    "make_engine",
    "open_store",
]

log = logging.getLogger("authz.store")

OUTBOX_GIVE_UP_SECONDS = 24 * 3600  # mail other than a link code is retried this long by default
_DECRYPT_RETRY_MAX = 300.0
CHANGES_CHANNEL = "authz_changes"  # LISTEN/NOTIFY channel: "a revision committed"
_STORE_DOWN = "the store is unreachable; nothing was written, try again"
_SENT_BODY = "(sent; the body is not kept)"


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


def open_store(settings: Settings) -> SqlStore:
    """Open the store; an embedded SQLite database is brought up to date by itself."""
    from authz.store import migrate  # Alembic is imported only by what opens a store

    try:
        cipher: OutboxCipher | None = outbox_cipher(settings)
        problem = None
    except ConfigError as exc:
        # Tools that send no mail (import, policy diff) still open the store; the server refuses to start.
        cipher, problem = None, str(exc)
    engine = make_engine(settings.database_url)
    if engine.dialect.name == "sqlite":
        migrate.upgrade(engine)
    elif not migrate.is_up_to_date(engine):
        current = migrate.current_revision(engine)
        engine.dispose()
        raise ConfigError(
            f"the database schema is at {current!r}, not {migrate.head_revision()!r}: run `authz migrate` first"
        )
    return SqlStore(engine, outbox_cipher=cipher, outbox_problem=problem)


class SqlStore:
    def __init__(
        self, engine: Engine, *, outbox_cipher: OutboxCipher | None = None, outbox_problem: str | None = None
    ) -> None:
        self.engine = engine
        self._secrets: dict[str, bytes] = {}
        # Outbox bodies are sealed with this key (authz/mail.py). A store opened by hand with no key
        # and no problem to report (tests, one process) gets a key of the process.
        if outbox_cipher is None and outbox_problem is None:
            outbox_cipher = OutboxCipher.ephemeral()
        self.outbox_cipher = outbox_cipher
        self._outbox_problem = outbox_problem
        # Outbox rows this store could not decrypt, for authz_outbox_failures_total (the relay never sees them).
        self.outbox_decrypt_failures = 0

    @classmethod
    def from_url(cls, url: str) -> SqlStore:
        """A store on a URL with the default engine settings (tools and tests; the server uses open_store)."""
        return cls(make_engine(url))

    def require_outbox_key(self) -> None:
        """Raise ConfigError when no outbox key is configured (the server calls it before it starts)."""
        if self.outbox_cipher is None:
            raise ConfigError(self._outbox_problem or "no outbox key")

    @contextmanager
    def transaction(self) -> Iterator[SqlTransaction]:
        try:
            with self.engine.begin() as connection:
                _wait_no_longer_than_caller(connection)
                tx = SqlTransaction(connection, self.outbox_cipher, self._outbox_problem)
                try:
                    yield tx
                finally:
                    tx.restore_settings()
        except IntegrityError as exc:
            log.info("integrity error: %s", exc.orig)
            raise AlreadyExists("that change conflicts with data already stored", reason="CONFLICT") from exc
        except (OperationalError, DBAPIError) as exc:
            if isinstance(exc, OperationalError) or exc.connection_invalidated:
                log.warning("store unreachable: %s", type(exc.orig).__name__)
                raise Unavailable(_STORE_DOWN, reason="STORE_UNAVAILABLE") from exc
            raise

    def revision(self) -> int:
        with self._connect() as connection:
            value = connection.execute(select(t.store_revision.c.revision).where(t.store_revision.c.id == 1)).scalar()
            return int(value or 0)

    def ping(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(select(1))
            return True
        except (OperationalError, DBAPIError):
            return False

    def close(self) -> None:
        self.engine.dispose()

    def reopened(self) -> SqlStore:
        """The same store on a new engine, with the same outbox key: what a forked worker process uses."""
        return SqlStore(
            make_engine(self.engine.url.render_as_string(hide_password=False)),
            outbox_cipher=self.outbox_cipher,
            outbox_problem=self._outbox_problem,
        )

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as connection:
                yield connection
        except OperationalError as exc:
            raise Unavailable(_STORE_DOWN, reason="STORE_UNAVAILABLE") from exc

    def load_relations(self) -> Iterator[Relation]:
        """Every relation with its subjects in force, in one pass."""
        for row, granted in self._relation_rows():
            yield _relation(row, {subject: Right.parse(right) for subject, right in _split_grants(granted)})

    def load_index_rows(self, connection: Connection | None = None) -> Iterator[IndexRow]:
        """Every relation as the decision engine indexes it, in one pass (start-up).

        No domain objects are built: at a million relations, constructing `Relation`s
        alone costs seconds. Dates become day ordinals and subject lists become
        (subject, right) pairs through small caches (a few thousand distinct dates, a
        few hundred distinct subject sets); ids stay the strings the driver gave.
        """
        days: dict[Any, int] = {}
        subject_sets: dict[str | None, tuple[tuple[str, int], ...]] = {None: ()}
        rights = {right.code: int(right) for right in Right if right is not Right.NONE}
        no_end = float("inf")
        organization = RelationKind.ORGANIZATION.value
        for row, granted in self._relation_rows(connection):
            relation_id, kind, organization_id, contact_id, grantee_id, via_id, role, start, end, ended = row
            start_day = days.get(start)
            if start_day is None:
                start_day = days[start] = _date(start).toordinal()
            end_day = days.get(end)
            if end_day is None:
                end_day = days[end] = _date(end).toordinal()
            subjects = subject_sets.get(granted)
            if subjects is None:
                subjects = subject_sets[granted] = tuple(
                    sorted((subject, rights[right]) for subject, right in _split_grants(granted))
                )
            yield (
                kind,
                relation_id,
                grantee_id if kind == organization else contact_id,
                organization_id,
                via_id,
                role,
                start_day,
                end_day,
                ended.timestamp() if ended is not None else no_end,
                subjects,
            )

    def _relation_rows(self, connection: Connection | None = None) -> Iterator[tuple[Any, str | None]]:
        """(relation columns, "subject:right,..." or None) for every relation, streamed.

        One row per relation: the subjects in force are aggregated by the database
        through the relation index (group_concat on SQLite, string_agg on PostgreSQL),
        so no sort and no merge of two streams is needed. Dates come back undecoded
        (SQLite text, PostgreSQL dates): callers decode them.
        """
        r, s = t.relations.c, t.relation_subjects.c
        granted = (
            select(func.aggregate_strings(s.subject + _GRANT_SEPARATOR + s.right, _GRANTS_SEPARATOR))
            .where(s.relation_id == r.id)
            .where(s.removed_at.is_(None))
            .scalar_subquery()
        )
        query = select(
            r.id,
            r.kind,
            r.organization_id,
            r.contact_id,
            r.grantee_organization_id,
            r.via_organization_id,
            r.role,
            type_coerce(r.start_date, String),
            type_coerce(r.end_date, String),
            r.ended_at,
            granted,
        )
        if connection is not None:
            yield from _stream(connection, query)
            return
        with self._connect() as own:
            yield from _stream(own, query)

    # -- replicas
    def store_id(self) -> str:
        """The id made for this database at migration time; revision tokens carry it."""
        with self._connect() as connection:
            return str(
                connection.execute(select(t.store_identity.c.store_id).where(t.store_identity.c.id == 1)).scalar_one()
            )

    @contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        """The revision and every relation read in one snapshot (REPEATABLE READ, READ ONLY on
        PostgreSQL; one read transaction on SQLite's WAL): an index built from `rows` is exactly
        the state at `revision`, and following the log from there misses nothing."""
        with self._connect() as connection:
            if connection.dialect.name == "postgresql":
                connection = connection.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with connection.begin():
                if connection.dialect.name == "sqlite":
                    # pysqlite starts no transaction for reads: without BEGIN each SELECT sees its own moment.
                    connection.exec_driver_sql("BEGIN")
                revision = int(
                    connection.execute(
                        select(t.store_revision.c.revision).where(t.store_revision.c.id == 1)
                    ).scalar_one()
                )
                store_id = str(
                    connection.execute(
                        select(t.store_identity.c.store_id).where(t.store_identity.c.id == 1)
                    ).scalar_one()
                )
                yield Snapshot(revision, store_id, self.load_index_rows(connection))

    def open_reader(self) -> Connection:
        """A connection of its own, in autocommit: a follower's frequent reads cost one round trip
        each (no pool check-out and its ping, no BEGIN and COMMIT)."""
        try:
            return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except (OperationalError, DBAPIError) as exc:
            raise Unavailable(_STORE_DOWN, reason="STORE_UNAVAILABLE") from exc

    def read_changes(self, reader: Connection, revision: int, limit: int) -> ChangesPage:
        """`changes_after` on a connection from `open_reader`."""
        try:
            return _changes_after(reader, revision, limit)
        except (OperationalError, DBAPIError) as exc:
            raise Unavailable(_STORE_DOWN, reason="STORE_UNAVAILABLE") from exc

    def changes_after(self, revision: int, limit: int, timeout: float | None = None) -> ChangesPage:
        """Committed changes after `revision`, in order (one range read); bounded by `timeout` seconds."""
        try:
            with self.engine.begin() as connection:
                if timeout is not None and connection.dialect.name == "postgresql":
                    milliseconds = max(1, int(timeout * 1000))
                    connection.exec_driver_sql(f"SET LOCAL statement_timeout = {milliseconds}")
                return _changes_after(connection, revision, limit)
        except (OperationalError, DBAPIError) as exc:
            raise Unavailable(_STORE_DOWN, reason="STORE_UNAVAILABLE") from exc

    # -- what the follower, Watch, the policy reload and tracing need, behind the Store protocol
    def change_reader(self) -> SqlChangeReader:
        """A reader of the change log on a connection of its own (opened on its first read)."""
        return SqlChangeReader(self)

    def change_notices(self) -> SqlChangeNotices | None:
        """PostgreSQL LISTEN on the changes channel; None on SQLite, which announces nothing."""
        if self.engine.dialect.name != "postgresql":
            return None
        return SqlChangeNotices(self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False))

    def live_grants(
        self, subjects: Iterable[str] | None = None, *, excluding: Iterable[str] | None = None
    ) -> dict[str, int]:
        """Grants in force per subject (read only): subjects not removed from relations not removed
        themselves, whatever their kind (contact, organization, delegation); subjects with none are
        absent. `subjects`: count only those; `excluding`: count only the others."""
        rs, r = t.relation_subjects, t.relations
        query = (
            select(rs.c.subject, func.count())
            .select_from(rs.join(r, r.c.id == rs.c.relation_id))
            .where(rs.c.removed_at.is_(None), r.c.ended_at.is_(None))
            .group_by(rs.c.subject)
        )
        if subjects is not None:
            wanted = sorted(set(subjects))
            if not wanted:
                return {}
            query = query.where(rs.c.subject.in_(wanted))
        if excluding is not None:
            query = query.where(rs.c.subject.not_in(sorted(set(excluding))))
        with self._connect() as connection:
            return {str(subject): int(count) for subject, count in connection.execute(query)}

    def observe_statements(
        self, begin: Callable[[str, str, str], object | None], end: Callable[[object, str | None], None]
    ) -> None:
        """Call `begin(system, database, statement)` before each statement and, when it returned
        something, `end(that, error type name or None)` after it (tracing's spans)."""
        system = self.engine.dialect.name
        database = self.engine.url.database or system

        def before(conn: Any, _cursor: Any, statement: str, _parameters: Any, _context: Any, _many: bool) -> None:
            token = begin(system, database, statement)
            if token is not None:
                conn.info.setdefault("authz_statement_observers", []).append(token)

        def after(conn: Any, _cursor: Any, _statement: str, _parameters: Any, _context: Any, _many: bool) -> None:
            tokens = conn.info.get("authz_statement_observers")
            if tokens:
                end(tokens.pop(), None)

        def failed(exception_context: Any) -> None:
            connection = exception_context.connection
            tokens = connection.info.get("authz_statement_observers") if connection is not None else None
            if tokens:
                end(tokens.pop(), type(exception_context.original_exception).__name__)

        event.listen(self.engine, "before_cursor_execute", before)
        event.listen(self.engine, "after_cursor_execute", after)
        event.listen(self.engine, "handle_error", failed)

    # -- secrets shared by every server of one deployment
    def server_secret(self, name: str) -> bytes:
        """A random 256-bit secret stored under `name`, created by the first server that asks.

        Every server on one database reads the same value, so what one signs another accepts
        (several servers behind one balancer). Read once per process, then kept in memory.
        """
        cached = self._secrets.get(name)
        if cached is not None:
            return cached
        query = select(t.server_secrets.c.value).where(t.server_secrets.c.name == name)
        with self._connect() as connection:
            value = connection.execute(query).scalar()
        if value is None:
            try:
                with self.engine.begin() as connection:
                    connection.execute(
                        t.server_secrets.insert().values(
                            name=name, value=secrets.token_urlsafe(32), created_at=datetime.now(UTC)
                        )
                    )
            except IntegrityError:
                pass  # another server created it first: theirs is the one
            with self._connect() as connection:
                value = connection.execute(query).scalar_one()
        secret = str(value).encode()
        self._secrets[name] = secret
        return secret

    # -- outbox, for authz.mail.OutboxRelay
    def pending_outbox(
        self, limit: int, *, now: datetime | None = None, give_up_seconds: float | None = None
    ) -> list[OutboxRow]:
        """Unsent messages due now, oldest first: none waiting out its backoff, none past its expiry.

        A message past its expiry (a link code's, or `give_up_seconds` after it was queued) is
        given up on and left for an operator (`outbox_backlog` counts it as abandoned).
        """
        now = now or datetime.now(UTC)
        with self._connect() as connection:
            rows = connection.execute(
                select(t.outbox)
                .where(t.outbox.c.sent_at.is_(None))
                .where(or_(t.outbox.c.next_attempt_at.is_(None), t.outbox.c.next_attempt_at <= now))
                .where(_outbox_alive(now, give_up_seconds))
                .order_by(t.outbox.c.created_at)
                .limit(limit)
            )
            found = list(rows)
        pending = []
        for r in found:
            try:
                body = self._require_cipher().open(r.body)
            except MailDeliveryError as exc:
                # Another server's key, or a damaged row: counted as a failed attempt, left for an operator.
                log.error("outbox %s: %s", r.id, exc)
                self.outbox_decrypt_failures += 1
                # Tried again later (the key may be fixed by a restart), not in a tight loop.
                retry_at = now + timedelta(seconds=min(_DECRYPT_RETRY_MAX, 2.0 ** min(r.attempts, 16)))
                self.mark_outbox_failed(r.id, str(exc), retry_at)
                continue
            pending.append(OutboxRow(r.id, r.recipient, r.subject, body, r.attempts, r.expires_at, r.created_at))
        return pending

    def _require_cipher(self) -> OutboxCipher:
        self.require_outbox_key()
        assert self.outbox_cipher is not None
        return self.outbox_cipher

    def outbox_backlog(self, give_up_seconds: float | None = None) -> tuple[int, datetime | None, int]:
        """For /metrics: messages waiting, when the oldest of them was written, messages given up on."""
        now = datetime.now(UTC)
        alive = _outbox_alive(now, give_up_seconds)
        with self._connect() as connection:
            waiting = t.outbox.c.sent_at.is_(None)
            pending, oldest = connection.execute(
                select(func.count(), func.min(t.outbox.c.created_at)).select_from(t.outbox).where(waiting, alive)
            ).one()
            abandoned = connection.execute(
                select(func.count()).select_from(t.outbox).where(waiting, ~alive)
            ).scalar_one()
        if isinstance(oldest, str):  # SQLite's MIN() skips the column type: the stored text comes back
            oldest = datetime.fromisoformat(oldest)
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        return int(pending), oldest, int(abandoned)

    def mark_outbox_sent(self, message_id: str, sent_at: datetime) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(t.outbox)
                .where(t.outbox.c.id == message_id)
                # The body of a link-code email holds the code in clear: once sent, the store keeps none of it.
                .values(sent_at=sent_at, attempts=t.outbox.c.attempts + 1, last_error=None, body=_SENT_BODY)
            )

    def mark_outbox_failed(self, message_id: str, error: str, retry_at: datetime | None = None) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(t.outbox)
                .where(t.outbox.c.id == message_id)
                .values(attempts=t.outbox.c.attempts + 1, last_error=error[:2000], next_attempt_at=retry_at)
            )


def _outbox_alive(now: datetime, give_up_seconds: float | None) -> Any:
    """Outbox rows still worth sending: before their own expiry, else within the give-up window of their creation."""
    window = OUTBOX_GIVE_UP_SECONDS if give_up_seconds is None else give_up_seconds
    o = t.outbox.c
    return or_(
        and_(o.expires_at.is_not(None), o.expires_at > now),
        and_(o.expires_at.is_(None), o.created_at > now - timedelta(seconds=window)),
    )


def _stream(connection: Connection, query: Any) -> Iterator[tuple[Any, str | None]]:
    result = connection.execution_options(stream_results=True, yield_per=20_000).execute(query)
    for row in result:
        yield row[:10], row[10]


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


class SqlTransaction:
    """The unit of work of one command, on one connection inside one transaction."""

    def __init__(
        self, connection: Connection, outbox_cipher: OutboxCipher | None = None, outbox_problem: str | None = None
    ) -> None:
        self.c = connection
        self._outbox_cipher = outbox_cipher
        self._outbox_problem = outbox_problem
        self._dates: dict[date, Any] = {}  # bulk import: each distinct date converted for the driver once
        self._cache_size: int | None = None  # SQLite's page cache before a bulk write widened it

    def restore_settings(self) -> None:
        """Put back what a bulk write changed on this (pooled) connection."""
        if self._cache_size is not None:
            with suppress(DBAPIError):  # a broken connection is discarded by the pool anyway
                self.c.exec_driver_sql(f"PRAGMA cache_size = {int(self._cache_size)}")
            self._cache_size = None

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

    # -- replicas
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

    # -- organizations and contacts
    def get_organization(self, organization_id: str) -> Organization | None:
        row = self.c.execute(select(t.organizations).where(t.organizations.c.id == organization_id)).first()
        return Organization(row.id, row.name, OrganizationKind(row.kind)) if row else None

    def add_organization(self, organization: Organization, at: datetime) -> None:
        self.c.execute(
            t.organizations.insert().values(
                id=organization.id, name=organization.name, kind=organization.kind.value, created_at=at
            )
        )

    def get_contact(self, contact_id: str) -> Contact | None:
        row = self.c.execute(select(t.contacts).where(t.contacts.c.id == contact_id)).first()
        if row is None:
            return None
        return _contact(row)

    def add_contact(self, contact: Contact, at: datetime) -> None:
        self.c.execute(t.contacts.insert().values(id=contact.id, created_at=at, **_contact_values(contact)))

    # -- relations
    def _with_subjects(self, rows: list[Any]) -> list[Relation]:
        if not rows:
            return []
        ids = [row.id for row in rows]
        granted: dict[str, dict[str, Right]] = {relation_id: {} for relation_id in ids}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for s in self.c.execute(
                select(t.relation_subjects.c.relation_id, t.relation_subjects.c.subject, t.relation_subjects.c.right)
                .where(t.relation_subjects.c.relation_id.in_(chunk))
                .where(t.relation_subjects.c.removed_at.is_(None))
            ):
                granted[s.relation_id][s.subject] = Right.parse(s.right)
        return [_relation(row, granted[row.id]) for row in rows]

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

    # -- audit and idempotency
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

    # -- link codes
    def add_link_code(self, record: LinkCodeRecord) -> None:
        self.c.execute(
            t.link_codes.insert().values(
                id=record.id,
                contact_id=record.contact_id,
                organization_id=record.organization_id,
                lookup=record.lookup,
                salt=record.salt,
                code_hash=record.code_hash,
                issued_by=record.issued_by,
                issued_at=record.issued_at,
                expires_at=record.expires_at,
            )
        )

    def void_link_codes(self, contact_id: str, at: datetime) -> int:
        result = self.c.execute(
            update(t.link_codes)
            .where(t.link_codes.c.contact_id == contact_id)
            .where(t.link_codes.c.used_at.is_(None))
            .where(t.link_codes.c.voided_at.is_(None))
            .values(voided_at=at)
        )
        return int(result.rowcount)

    def find_link_code(self, lookup: str) -> LinkCodeRecord | None:
        row = self.c.execute(select(t.link_codes).where(t.link_codes.c.lookup == lookup)).first()
        if row is None:
            return None
        return LinkCodeRecord(
            id=row.id,
            contact_id=row.contact_id,
            organization_id=row.organization_id,
            lookup=row.lookup,
            salt=row.salt,
            code_hash=row.code_hash,
            issued_by=row.issued_by,
            issued_at=row.issued_at,
            expires_at=row.expires_at,
            used_at=row.used_at,
            voided_at=row.voided_at,
        )

    def use_link_code(self, code_id: str, account_id: str, at: datetime) -> bool:
        # The conditional update is what makes a code single-use under concurrency:
        # of two redemptions racing, only one sees used_at still empty.
        result = self.c.execute(
            update(t.link_codes)
            .where(t.link_codes.c.id == code_id)
            .where(t.link_codes.c.used_at.is_(None))
            .where(t.link_codes.c.voided_at.is_(None))
            .values(used_at=at, used_by_account=account_id)
        )
        return result.rowcount == 1

    def add_link_attempt(
        self,
        account_id: str,
        contact_id: str | None,
        at: datetime,
        success: bool,
        legacy_username: str | None = None,
    ) -> int:
        result = self.c.execute(
            t.link_code_attempts.insert()
            .values(
                account_id=account_id, contact_id=contact_id, at=at, success=success, legacy_username=legacy_username
            )
            .returning(t.link_code_attempts.c.id)
        )
        return int(result.scalar_one())

    def mark_link_attempt_succeeded(self, attempt_id: int) -> None:
        self.c.execute(update(t.link_code_attempts).where(t.link_code_attempts.c.id == attempt_id).values(success=True))

    def last_attempted_contact(self, account_id: str, since: datetime) -> str | None:
        """The contact whose codes this account most recently got wrong since `since` (throttling)."""
        a = t.link_code_attempts.c
        return self.c.execute(
            select(a.contact_id)
            .where(a.account_id == account_id)
            .where(a.at >= since)
            .where(a.success.is_(False))
            .where(a.contact_id.is_not(None))
            .order_by(a.at.desc())
            .limit(1)
        ).scalar()

    def count_failed_attempts(
        self,
        *,
        since: datetime,
        account_id: str | None = None,
        contact_id: str | None = None,
        legacy_username: str | None = None,
    ) -> int:
        a = t.link_code_attempts.c
        query = select(func.count()).select_from(t.link_code_attempts).where(a.at >= since).where(a.success.is_(False))
        if account_id is not None:
            query = query.where(a.account_id == account_id)
        if contact_id is not None:
            query = query.where(a.contact_id == contact_id)
        if legacy_username is not None:
            query = query.where(a.legacy_username == legacy_username)
        return int(self.c.execute(query).scalar_one())

    # -- accounts
    def link_account(self, account_id: str, contact_id: str, method: str, at: datetime) -> bool:
        exists = self.c.execute(
            select(t.account_links.c.account_id).where(
                and_(t.account_links.c.account_id == account_id, t.account_links.c.contact_id == contact_id)
            )
        ).first()
        if exists:
            return False
        self.c.execute(
            t.account_links.insert().values(account_id=account_id, contact_id=contact_id, method=method, linked_at=at)
        )
        return True

    def linked_contacts(self, account_id: str) -> list[str]:
        rows = self.c.execute(
            select(t.account_links.c.contact_id)
            .where(t.account_links.c.account_id == account_id)
            .order_by(t.account_links.c.contact_id)
        )
        return [row.contact_id for row in rows]

    def accounts_linked_to(self, contact_id: str) -> list[str]:
        rows = self.c.execute(
            select(t.account_links.c.account_id)
            .where(t.account_links.c.contact_id == contact_id)
            .order_by(t.account_links.c.account_id)
        )
        return [row.account_id for row in rows]

    def unlink_contact(self, contact_id: str, *, keep_account: str) -> list[str]:
        others = [account for account in self.accounts_linked_to(contact_id) if account != keep_account]
        if others:
            self.c.execute(
                t.account_links.delete().where(
                    and_(t.account_links.c.contact_id == contact_id, t.account_links.c.account_id.in_(others))
                )
            )
        return others

    def get_legacy_account(self, username: str) -> LegacyAccount | None:
        row = self.c.execute(select(t.legacy_accounts).where(t.legacy_accounts.c.username == username)).first()
        if row is None:
            return None
        rows = list(
            self.c.execute(
                select(t.legacy_account_contacts.c.contact_id, t.legacy_account_contacts.c.used_at)
                .where(t.legacy_account_contacts.c.username == username)
                .order_by(t.legacy_account_contacts.c.contact_id)
            )
        )
        return LegacyAccount(
            row.username,
            row.password_hash,
            tuple(c.contact_id for c in rows),
            row.used_at,
            used_contact_ids=tuple(c.contact_id for c in rows if c.used_at is not None),
        )

    def add_legacy_account(self, account: LegacyAccount) -> None:
        self.c.execute(
            t.legacy_accounts.insert().values(username=account.username, password_hash=account.password_hash)
        )
        if account.contact_ids:
            self.c.execute(
                t.legacy_account_contacts.insert(),
                [{"username": account.username, "contact_id": contact_id} for contact_id in account.contact_ids],
            )

    def use_legacy_account(self, username: str, account_id: str, at: datetime) -> bool:
        result = self.c.execute(
            update(t.legacy_accounts)
            .where(t.legacy_accounts.c.username == username)
            .where(t.legacy_accounts.c.used_at.is_(None))
            .values(used_at=at, used_by_account=account_id)
        )
        return result.rowcount == 1

    # -- mail
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

    # -- the guide's other screens
    def update_contact(self, contact: Contact) -> None:
        self.c.execute(update(t.contacts).where(t.contacts.c.id == contact.id).values(**_contact_values(contact)))

    def contact_phones(self, contact_id: str) -> list[PhoneNumber]:
        p = t.contact_phones.c
        rows = self.c.execute(select(t.contact_phones).where(p.contact_id == contact_id).order_by(p.position))
        return [PhoneNumber(row.type, row.number, row.region) for row in rows]

    def set_contact_phones(self, contact_id: str, phones: Sequence[PhoneNumber]) -> None:
        self.c.execute(delete(t.contact_phones).where(t.contact_phones.c.contact_id == contact_id))
        if phones:
            self.c.execute(
                t.contact_phones.insert(),
                [
                    {"contact_id": contact_id, "position": i, "type": p.type, "number": p.number, "region": p.region}
                    for i, p in enumerate(phones)
                ],
            )

    def organization_contacts_with_email(self, organization_id: str, email: str) -> list[Contact]:
        r = t.relations.c
        members = select(r.contact_id).where(
            or_(r.organization_id == organization_id, r.via_organization_id == organization_id)
        )
        rows = self.c.execute(
            select(t.contacts)
            .where(func.lower(t.contacts.c.email) == email.lower())
            .where(t.contacts.c.id.in_(members))
            .order_by(t.contacts.c.id)
        )
        return [_contact(row) for row in rows]

    def set_relation_end(self, relation_id: str, end_date: date) -> None:
        self.c.execute(update(t.relations).where(t.relations.c.id == relation_id).values(end_date=end_date))

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

    def add_migration_issue(self, issue: MigrationIssueRecord) -> bool:
        m = t.migration_issues.c
        fingerprint = _issue_fingerprint(issue)
        same_organization = (
            m.organization_id.is_(None) if issue.organization_id is None else m.organization_id == issue.organization_id
        )
        if self.c.execute(select(m.id).where(m.fingerprint == fingerprint).where(same_organization)).first():
            return False
        self.c.execute(
            t.migration_issues.insert().values(
                fingerprint=fingerprint,
                organization_id=issue.organization_id,
                section=issue.section,
                row_index=issue.row_index,
                row_id=issue.row_id,
                reason=issue.reason,
                row=_jsonable(issue.row),
                match_key=issue.match_key,
                reported_at=issue.reported_at,
            )
        )
        return True

    def migration_issues_page(
        self, organization_id: str, *, include_resolved: bool, after: int | None, limit: int
    ) -> list[MigrationIssueRecord]:
        m = t.migration_issues.c
        query = select(t.migration_issues).where(m.organization_id == organization_id)
        if not include_resolved:
            query = query.where(m.resolved_at.is_(None))
        if after is not None:
            query = query.where(m.id > after)
        return [_issue(row) for row in self.c.execute(query.order_by(m.id).limit(limit))]

    def resolve_migration_issue(
        self, issue_id: int, organization_id: str, at: datetime, by: str, resolution: str
    ) -> MigrationIssueRecord | None:
        m = t.migration_issues.c
        result = self.c.execute(
            update(t.migration_issues)
            .where(m.id == issue_id)
            .where(m.organization_id == organization_id)
            .where(m.resolved_at.is_(None))
            .values(resolved_at=at, resolved_by=by, resolution=resolution)
        )
        if result.rowcount != 1:
            return None
        return _issue(self.c.execute(select(t.migration_issues).where(m.id == issue_id)).one())

    def resolve_migration_issues_matching(
        self, organization_id: str, match_key: str, at: datetime, by: str
    ) -> list[int]:
        m = t.migration_issues.c
        open_ids = [
            row.id
            for row in self.c.execute(
                select(m.id)
                .where(m.organization_id == organization_id)
                .where(m.match_key == match_key)
                .where(m.resolved_at.is_(None))
            )
        ]
        if open_ids:
            self.c.execute(
                update(t.migration_issues)
                .where(m.id.in_(open_ids))
                .values(resolved_at=at, resolved_by=by, resolution="re-established")
            )
        return open_ids

    def use_legacy_contact(self, username: str, contact_id: str, account_id: str, at: datetime) -> bool:
        lc = t.legacy_account_contacts.c
        result = self.c.execute(
            update(t.legacy_account_contacts)
            .where(lc.username == username)
            .where(lc.contact_id == contact_id)
            .where(lc.used_at.is_(None))
            .values(used_at=at, used_by_account=account_id)
        )
        return result.rowcount == 1

    # -- bulk import (authz import)
    def stored_keys(self, kind: ImportKind, keys: Collection[str]) -> set[str]:
        column = _IMPORT_KEYS[kind]
        quote = self.c.dialect.identifier_preparer.quote
        found: set[str] = set()
        for chunk in _chunks(list(keys), _IN_CHUNK):
            # Plain SQL: SQLAlchemy's expansion of a thousand-item IN costs more than the lookup.
            marks = ", ".join(self._mark for _ in chunk)
            query = (
                f"SELECT {quote(column.name)} FROM {quote(column.table.name)} WHERE {quote(column.name)} IN ({marks})"
            )
            found.update(row[0] for row in self.c.exec_driver_sql(query, tuple(chunk)))
        return found

    def stored_as_added(
        self, kind: ImportKind, keys: Collection[str]
    ) -> dict[str, Organization | Contact | Relation | LegacyAccount]:
        found: dict[str, Organization | Contact | Relation | LegacyAccount] = {}
        for chunk in _chunks(list(keys), _IN_CHUNK):
            if kind == "organizations":
                for row in self.c.execute(select(t.organizations).where(t.organizations.c.id.in_(chunk))):
                    found[row.id] = Organization(row.id, row.name, OrganizationKind(row.kind))
            elif kind == "contacts":
                for row in self.c.execute(select(t.contacts).where(t.contacts.c.id.in_(chunk))):
                    found[row.id] = Contact(row.id, row.first_name, row.last_name, row.email, row.language, row.phone)
            elif kind == "relations":
                found.update(self._relations_as_added(chunk))
            else:
                found.update(self._legacy_accounts_as_added(chunk))
        return found

    def _relations_as_added(self, ids: list[str]) -> dict[str, Relation]:
        r, s = t.relations, t.relation_subjects
        granted: dict[str, dict[str, Right]] = {relation_id: {} for relation_id in ids}
        # The subjects granted with the relation share its created_at; later grants and removals are history.
        for row in self.c.execute(
            select(s.c.relation_id, s.c.subject, s.c.right)
            .join(r, r.c.id == s.c.relation_id)
            .where(r.c.id.in_(ids))
            .where(s.c.granted_at == r.c.created_at)
        ):
            granted[row.relation_id][row.subject] = Right.parse(row.right)
        return {
            row.id: replace(_relation(row, granted[row.id]), ended_at=None)
            for row in self.c.execute(select(*_RELATION_COLUMNS).where(r.c.id.in_(ids)))
        }

    def _legacy_accounts_as_added(self, usernames: list[str]) -> dict[str, LegacyAccount]:
        a, links = t.legacy_accounts, t.legacy_account_contacts
        linked: dict[str, list[str]] = {username: [] for username in usernames}
        for row in self.c.execute(select(links.c.username, links.c.contact_id).where(links.c.username.in_(usernames))):
            linked[row.username].append(row.contact_id)
        return {
            row.username: LegacyAccount(row.username, row.password_hash, tuple(sorted(linked[row.username])))
            for row in self.c.execute(select(a.c.username, a.c.password_hash).where(a.c.username.in_(usernames)))
        }

    def add_batch(self, batch: ImportBatch, at: datetime, created_by: str) -> None:
        if self.c.dialect.name == "sqlite" and self._cache_size is None:
            # A million relations grow five indexes at random places: with SQLite's default 2 MB of
            # cache most inserts read a page back from the OS. 128 MiB cut the writes' time by a fifth.
            self._cache_size = int(self.c.exec_driver_sql("PRAGMA cache_size").scalar_one())
            self.c.exec_driver_sql(f"PRAGMA cache_size = -{_BULK_CACHE_KIB}")
        # Plain tuples to the driver: SQLAlchemy's per-row parameter processing costs more than the insert.
        day = self._date_value
        stamp = self._bind(t.relations.c.created_at, at)
        self._insert(t.organizations, [(o.id, o.name, o.kind.value, stamp) for o in batch.organizations])
        self._insert(
            t.contacts,
            [
                # Every stored contact carries its search key, however it was loaded (ListContacts' query).
                (
                    c.id,
                    c.first_name,
                    c.last_name,
                    c.email,
                    c.language,
                    c.phone,
                    c.phone_type,
                    stamp,
                    _contact_key(c.first_name, c.last_name),
                )
                for c in batch.contacts
            ],
            ("id", "first_name", "last_name", "email", "language", "phone", "phone_type", "created_at", "search_key"),
        )
        # Enum values looked up once (their properties are slow at a million rows).
        kinds, roles = _ENUM_VALUES
        rights = _RIGHT_CODES
        self._insert(
            t.relations,
            [
                (
                    r.id,
                    kinds[r.kind],
                    r.organization_id,
                    r.contact_id,
                    r.grantee_organization_id,
                    r.via_organization_id,
                    roles[r.role],
                    day(r.start_date),
                    day(r.end_date),
                    None if r.ended_at is None else self._bind(t.relations.c.ended_at, r.ended_at),
                    stamp,
                    created_by,
                )
                for r in batch.relations
            ],
            _RELATION_INSERT,
        )
        self._insert(
            t.relation_subjects,
            [(r.id, subject, rights[right], stamp) for r in batch.relations for subject, right in r.subjects.items()],
            ("relation_id", "subject", "right", "granted_at"),
        )
        self._insert(
            t.legacy_accounts,
            [(a.username, a.password_hash) for a in batch.legacy_accounts],
            ("username", "password_hash"),
        )
        self._insert(
            t.legacy_account_contacts,
            [(a.username, contact_id) for a in batch.legacy_accounts for contact_id in a.contact_ids],
            ("username", "contact_id"),
        )

    @property
    def _mark(self) -> str:
        """The driver's placeholder, for plain SQL."""
        return "?" if self.c.dialect.paramstyle == "qmark" else "%s"

    def _bind(self, column: Any, value: Any) -> Any:
        """`value` as the driver takes it for `column` (what SQLAlchemy would send)."""
        process = column.type.dialect_impl(self.c.dialect).bind_processor(self.c.dialect)
        return value if process is None else process(value)

    def _date_value(self, value: date) -> Any:
        found = self._dates.get(value)
        if found is None:
            found = self._dates[value] = self._bind(t.relations.c.start_date, value)
        return found

    def _insert(self, table: Any, rows: Sequence[tuple[Any, ...]], columns: Sequence[str] | None = None) -> None:
        if not rows:
            return
        names = list(columns) if columns is not None else [column.name for column in table.columns]
        quote = self.c.dialect.identifier_preparer.quote
        column_list = ", ".join(quote(name) for name in names)
        if self.c.dialect.name == "postgresql":
            # COPY: the bulk path of PostgreSQL, inside this transaction, on the same connection.
            statement = f"COPY {quote(table.name)} ({column_list}) FROM STDIN"
            driver = self.c.dialect.loaded_dbapi
            cursor = self.c.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                with cursor.copy(statement) as copy:
                    for row in rows:
                        copy.write_row(row)
            except driver.Error as exc:
                # As SQLAlchemy would have wrapped it: the store maps IntegrityError and the rest once.
                raise DBAPIError.instance(statement, None, exc, driver.Error) from exc
            finally:
                cursor.close()
            return
        marks = ", ".join(self._mark for _ in names)
        self.c.exec_driver_sql(f"INSERT INTO {quote(table.name)} ({column_list}) VALUES ({marks})", list(rows))


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


def _issue_fingerprint(issue: MigrationIssueRecord) -> str:
    payload = json.dumps([issue.section, _jsonable(issue.row), issue.reason], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def _issue(row: Any) -> MigrationIssueRecord:
    return MigrationIssueRecord(
        id=row.id,
        organization_id=row.organization_id,
        section=row.section,
        row_index=row.row_index,
        row_id=row.row_id,
        reason=row.reason,
        row=row.row,
        match_key=row.match_key,
        reported_at=row.reported_at,
        resolved_at=row.resolved_at,
        resolved_by=row.resolved_by,
        resolution=row.resolution,
    )


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


# -- bulk import
_IMPORT_KEYS = {
    "organizations": t.organizations.c.id,
    "contacts": t.contacts.c.id,
    "relations": t.relations.c.id,
    "legacy_accounts": t.legacy_accounts.c.username,
}
_RELATION_INSERT = (
    "id",
    "kind",
    "organization_id",
    "contact_id",
    "grantee_organization_id",
    "via_organization_id",
    "role",
    "start_date",
    "end_date",
    "ended_at",
    "created_at",
    "created_by",
)
_ENUM_VALUES: tuple[dict[RelationKind, str], dict[Role | None, str | None]] = (
    {kind: kind.value for kind in RelationKind},
    {None: None, **{role: role.value for role in Role}},
)
_RIGHT_CODES = {right: right.code for right in Right}
_BULK_CACHE_KIB = 128 * 1024
_IN_CHUNK = 1000  # keys per IN (...): well under SQLite's and PostgreSQL's limits on parameters


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
