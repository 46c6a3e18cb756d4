"""A cheap store for the commands: SQLite in a temporary file, migrated and loaded with the demo
data once per session, copied for each test; the engine loaded from it as the server does.
No server and no gRPC here: the rules are the commands'."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from authz.commands.base import Attestation, Deps
from authz.commands.import_data import import_file
from authz.engine.index import DecisionEngine
from authz.engine.policy import Policy
from authz.store import migrate
from authz.store.sql import SqlStore, make_engine

DEMO_FILE = Path(__file__).resolve().parents[2] / "authz" / "demo" / "demo.json"
NOW = datetime(2026, 3, 10, 17, 0, tzinfo=UTC)  # mid-day in Montréal
ATTESTED = Attestation(authorizes_acting=True, changes_accurate=True)


class FixedClock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


@dataclass
class World:
    store: SqlStore
    deps: Deps
    clock: FixedClock

    def revision(self) -> int:
        return self.store.revision()


@pytest.fixture(scope="session")
def command_policy() -> Policy:
    return Policy.load()


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory, command_policy: Policy) -> Path:
    path = tmp_path_factory.mktemp("template") / "demo.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    store = SqlStore.from_url(f"sqlite:///{path}")
    try:
        report = import_file(store, DEMO_FILE, command_policy.subjects, now=NOW)
        assert not report.refused, report.refused
    finally:
        store.close()
    return path


def open_world(path: Path, policy: Policy, now: datetime = NOW) -> World:
    store = SqlStore.from_url(f"sqlite:///{path}")
    engine = DecisionEngine(policy)
    engine.load(store.load_relations(), store.revision())
    clock = FixedClock(now)
    return World(store, Deps(store=store, engine=engine, clock=clock), clock)


@pytest.fixture
def world(demo_template: Path, tmp_path: Path, command_policy: Policy) -> Iterator[World]:
    """The demo data at NOW, in a store of this test's own."""
    path = tmp_path / "demo.db"
    shutil.copyfile(demo_template, path)
    opened = open_world(path, command_policy)
    yield opened
    opened.store.close()
