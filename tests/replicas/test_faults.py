"""Followers converge to the store whatever happens to them: a lost LISTEN connection, kill -9
under write load, a server joining in the middle of writes; commits out of order are applied once,
in order."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from authz_client import AuthzClientError
from sqlalchemy import create_engine, text

from authz.config import Settings
from authz.domain.model import Relation, RelationKind, Right
from authz.engine.index import DecisionEngine
from authz.engine.policy import Policy
from authz.replication.follower import Follower
from authz.store.changes import Change
from authz.store.sql import SqlStore

from .conftest import RandomWriter, Served, converges


class BackgroundWrites:
    """Random writes through one server, as fast as it takes them, until stopped."""

    def __init__(self, served: Served, subjects: list[str]) -> None:
        self.client = served.client()
        self.writer = RandomWriter(self.client, seed=7, subjects=subjects)
        self.done = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.writer.step()
                self.done += 1
            except AuthzClientError:
                time.sleep(0.05)

    def wait_for(self, count: int) -> None:
        target = self.done + count
        deadline = time.monotonic() + 30
        while self.done < target:
            assert time.monotonic() < deadline, "the writes stalled"
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.client.close()


def _terminate_listeners(url: str) -> int:
    database = url.rsplit("/", 1)[1]
    admin = create_engine(url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            return len(
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = :db AND application_name = 'authz-follower'"
                    ),
                    {"db": database},
                ).all()
            )
    finally:
        admin.dispose()


def test_followers_converge_through_a_lost_connection_a_kill_and_a_late_joiner(
    pg_demo: str, serve: Callable[..., Served], policy: Policy
) -> None:
    subjects = sorted(policy.subjects)
    writes_to = serve(pg_demo)
    follower = serve(pg_demo)
    load = BackgroundWrites(writes_to, subjects)
    try:
        load.wait_for(10)
        assert _terminate_listeners(pg_demo) >= 2  # both servers' LISTEN connections cut
        load.wait_for(10)
        # The follower reconnects: it is listening again, and still follows.
        deadline = time.monotonic() + 15
        while follower.replica_status().get("authz-listening") != "1":
            assert time.monotonic() < deadline, "the LISTEN connection never came back"
            time.sleep(0.1)
        follower.kill()  # kill -9 under write load...
        load.wait_for(10)
        follower.start()  # ...and back, on the same port
        joiner = serve(pg_demo)  # a new server while writes go on
        load.wait_for(10)
    finally:
        load.stop()
    revisions = {converges(served, pg_demo, policy, subjects) for served in (writes_to, follower, joiner)}
    assert len(revisions) == 1


def _relation(number: int) -> Relation:
    return Relation(
        id=f"R-OOO-{number}",
        kind=RelationKind.CONTACT,
        organization_id="ORG-SQC",
        start_date=datetime(2020, 1, 1).date(),
        end_date=datetime(9999, 12, 31).date(),
        contact_id="C-IND",
        subjects={f"s{number}": Right.WRITE},
    )


class CountingEngine(DecisionEngine):
    def __init__(self, policy: Policy) -> None:
        super().__init__(policy)
        self.applied: list[int] = []

    def apply(self, relations: object, revision: int) -> bool:  # type: ignore[override]
        before = self.revision
        done = super().apply(relations, revision)  # type: ignore[arg-type]
        if self.revision != before:
            self.applied.append(revision)
        return done


def test_a_commit_held_back_is_applied_once_and_in_order(pg_demo: str, policy: Policy) -> None:
    store = SqlStore.from_url(pg_demo)
    engine = CountingEngine(policy)
    with store.snapshot() as snapshot:
        engine.load_rows(snapshot.rows, snapshot.revision)
        start = snapshot.revision
    follower = Follower(store, engine, Settings(database_url=pg_demo), snapshot.store_id)
    now = datetime.now(UTC)
    first_holds = threading.Event()
    release_first = threading.Event()
    second_done = threading.Event()

    def write(number: int, hold: bool) -> None:
        with store.transaction() as tx:
            tx.lock_revision()
            revision = tx.bump_revision()
            tx.append_change(Change(revision, now, "test", (_relation(number),)))
            if hold:
                first_holds.set()
                release_first.wait(30)
        if not hold:
            second_done.set()

    first = threading.Thread(target=write, args=(1, True))
    first.start()
    assert first_holds.wait(10)
    # A later write starts while the first holds its revision uncommitted: it waits for the row lock.
    second = threading.Thread(target=write, args=(2, False))
    second.start()
    time.sleep(0.3)
    assert not second_done.is_set()
    follower.catch_up()  # nothing committed yet: nothing applied, nothing skipped
    assert engine.applied == []
    release_first.set()
    first.join(10)
    second.join(10)
    follower.catch_up()
    assert engine.applied == [start + 1, start + 2]
    follower.catch_up()
    assert engine.applied == [start + 1, start + 2]  # once
    day = now.timestamp()
    assert engine.check("C-IND", "ORG-SQC", "s1", 2, day) and engine.check("C-IND", "ORG-SQC", "s2", 2, day)
    store.close()


def test_a_follower_older_than_the_log_reloads(pg_demo: str, policy: Policy) -> None:
    store = SqlStore.from_url(pg_demo)
    engine = DecisionEngine(policy)
    with store.snapshot() as snapshot:
        engine.load_rows(snapshot.rows, snapshot.revision)
    follower = Follower(store, engine, Settings(database_url=pg_demo), snapshot.store_id)
    now = datetime.now(UTC)
    for number in (1, 2):
        with store.transaction() as tx:
            tx.lock_revision()
            tx.add_relation(_relation(number), now, "test")
            tx.append_change(Change(tx.bump_revision(), now, "test", (_relation(number),)))
    with store.transaction() as tx:
        assert tx.prune_changes(now + timedelta(seconds=1)) >= 2  # retention passed over all of it
    follower.catch_up()
    assert follower.reloads == 1
    assert engine.revision == store.revision()
    assert engine.check("C-IND", "ORG-SQC", "s2", 2, now.timestamp())
    store.close()


@pytest.mark.parametrize("processes", [2])
def test_worker_processes_share_the_port_and_tokens_hold_across_them(
    processes: int, pg_demo: str, serve: Callable[..., Served], policy: Policy
) -> None:
    import os
    import signal

    served = serve(pg_demo, AUTHZ_PROCESSES=str(processes))
    pids = {served.replica_status()["authz-pid"] for _ in range(30)}
    assert len(pids) == processes  # connections spread over both workers
    subjects = sorted(policy.subjects)
    with served.client() as writer_client:
        writer = RandomWriter(writer_client, seed=11, subjects=subjects)
        for _ in range(15):
            token, contact, subject = writer.step()
            truth = writer_client.check(contact, "ORG-SQC", subject, 1, consistency=token).allowed
            # A new channel each time: SO_REUSEPORT hands it to either worker.
            for _ in range(2):
                with served.client() as reader:
                    assert reader.check(contact, "ORG-SQC", subject, 1, consistency=token).allowed == truth
    # A worker that dies is replaced, and the replacement serves at the store's state.
    victim = int(next(iter(pids)))
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while True:
        now_pids = set()
        for _ in range(20):
            try:
                now_pids.add(served.replica_status()["authz-pid"])
            except grpc.RpcError:  # a connection the kernel had queued on the dead worker's socket
                continue
        if len(now_pids) == processes and str(victim) not in now_pids:
            break
        assert time.monotonic() < deadline, f"worker {victim} was not replaced: {now_pids}"
        time.sleep(0.2)
    converges(served, pg_demo, policy, subjects)
    # SIGTERM drains every worker and the parent ends.
    served.kill(signal.SIGTERM)
    assert served.process is not None and served.process.returncode == 0
