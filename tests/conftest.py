"""Shared fixtures: a real server on port 0, the demo data, a PostgreSQL database per session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from authz_client import AuthzClient
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from authz.cli import DEMO_FILE
from authz.commands.import_data import import_file
from authz.config import Settings
from authz.engine.policy import Policy
from authz.server.app import AuthzApp
from authz.store import migrate
from authz.store.sql import SqlStore, make_engine, open_store

POSTGRES_ADMIN_URL = os.environ.get("AUTHZ_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


class Clock:
    """A clock tests can move; by default it follows real time."""

    def __init__(self) -> None:
        self.fixed: datetime | None = None

    def __call__(self) -> datetime:
        return self.fixed or datetime.now(UTC)

    def set(self, moment: datetime) -> None:
        self.fixed = moment


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="session")
def policy() -> Policy:
    return Policy.load()


def _postgres_available() -> str | None:
    try:
        engine = create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("select 1"))
        engine.dispose()
        return None
    except OperationalError as exc:
        return f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {exc.orig}"


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[Callable[[], str]]:
    """A factory of fresh, migrated PostgreSQL databases, dropped at the end of the session."""
    reason = _postgres_available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI has PostgreSQL: its absence there is a failure, not a skip
        pytest.skip(reason)
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    created: list[str] = []

    def fresh() -> str:
        name = f"authz_test_{uuid.uuid4().hex[:12]}"
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        return url

    yield fresh
    with admin.connect() as connection:
        for name in created:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'authz.db'}"
    fresh: Callable[[], str] = request.getfixturevalue("postgres_database")
    return fresh()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'authz.db'}"


# A fixed outbox key for PostgreSQL servers (required there; SQLite keeps one beside the database).
TEST_OUTBOX_KEY = "tQ8s0tq7Yb1cV3sH4m2ZlJ9pX6wR5eK0aN1uD7fG2hI="


def settings_for(url: str, tmp_path: Path, **overrides: object) -> Settings:
    if not url.startswith("sqlite"):
        overrides.setdefault("outbox_key", TEST_OUTBOX_KEY)
    return Settings(
        database_url=url,
        listen="127.0.0.1:0",
        mail_url=f"file://{tmp_path / 'outbox'}",
        mail_interval_seconds=0.05,
        grace_seconds=2.0,
        **overrides,  # type: ignore[arg-type]
    )


def load_demo(url: str, policy: Policy) -> None:
    store = open_store(Settings(database_url=url))
    try:
        report = import_file(store, DEMO_FILE, policy.subjects)
        assert not report.refused, report.refused
    finally:
        store.close()


class Running:
    """A started server and a client talking to it."""

    def __init__(self, app: AuthzApp, client: AuthzClient, outbox: Path) -> None:
        self.app = app
        self.client = client
        self.outbox = outbox
        self.store: SqlStore = app.store

    def emails(self) -> list[str]:
        """Bodies of the emails delivered so far (waits for the relay to drain)."""
        import time

        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self.store.pending_outbox(100, now=self.app.deps.clock()):
            self.app.relay.wake()
            time.sleep(0.02)
        from email import message_from_bytes
        from email import policy as email_policy

        bodies = []
        for path in sorted(self.outbox.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns):
            message = message_from_bytes(path.read_bytes(), policy=email_policy.default)
            body = message.get_body(preferencelist=("plain",))
            bodies.append(f"To: {message['To']}\nSubject: {message['Subject']}\n\n{body.get_content() if body else ''}")
        return bodies


@pytest.fixture
def start_server(tmp_path: Path, clock: Clock, policy: Policy) -> Iterator[Callable[..., Running]]:
    """Start a real server (port 0) on a database URL, optionally with the demo data."""
    running: list[Running] = []

    def start(url: str | None = None, *, demo: bool = True, **overrides: object) -> Running:
        url = url or f"sqlite:///{tmp_path / f'authz-{len(running)}.db'}"
        settings = settings_for(url, tmp_path, **overrides)
        store = open_store(settings)
        if demo:
            load_demo(url, policy)
        app = AuthzApp(settings, store=store, clock=clock)
        app.start()
        client = AuthzClient(f"127.0.0.1:{app.port}", timeout=10)
        server = Running(app, client, tmp_path / "outbox")
        running.append(server)
        return server

    yield start
    for server in running:
        server.client.close()
        server.app.stop(grace=0)


@pytest.fixture
def demo(start_server: Callable[..., Running]) -> Running:
    """The demo data set (the worked example's starting point) on SQLite."""
    return start_server()


@pytest.fixture
def demo_any(start_server: Callable[..., Running], database_url: str) -> Running:
    """The demo data set, once on SQLite and once on PostgreSQL."""
    return start_server(database_url)
