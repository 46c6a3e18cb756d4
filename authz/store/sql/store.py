"""The SQL store: SqlStore, and what it reads outside a unit of work."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    String,
    and_,
    event,
    func,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from authz.config import ConfigError, Settings
from authz.domain.index_rows import IndexRow
from authz.domain.model import (
    Relation,
    RelationKind,
    Right,
)
from authz.errors import AlreadyExists, Unavailable
from authz.store import tables as t
from authz.store.changes import ChangesPage
from authz.store.interface import (
    OutboxRow,
    Snapshot,
)
from authz.store.outbox import MailDeliveryError, OutboxCipher, outbox_cipher
from authz.store.sql.changes import SqlChangeNotices, SqlChangeReader, _changes_after
from authz.store.sql.engine import _STORE_DOWN, _wait_no_longer_than_caller, log, make_engine
from authz.store.sql.rows import _GRANT_SEPARATOR, _GRANTS_SEPARATOR, _date, _relation, _split_grants
from authz.store.sql.transaction import SqlTransaction

OUTBOX_GIVE_UP_SECONDS = 24 * 3600  # mail other than a link code is retried this long by default


_DECRYPT_RETRY_MAX = 300.0


_SENT_BODY = "(sent; the body is not kept)"


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
                    tx.build_deferred_indexes()
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
