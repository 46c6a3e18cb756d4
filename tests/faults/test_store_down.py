"""The database goes away under load: checks keep answering from memory, writes fail cleanly and
fast, health says so, and everything resumes when it comes back.

Uses a private PostgreSQL started for this test (tests/faults/conftest.py): stopping the
shared cluster would break other people's tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import grpc
import pytest
from authz_client import AuthzClient, UnavailableError
from grpc_health.v1 import health_pb2, health_pb2_grpc

from authz.server.app import STORE_HEALTH_NAME

from ..conftest import Running
from ..integration.helpers import row_counts
from .conftest import PrivatePostgres

PR, SQC = "C-PR", "ORG-SQC"
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


class CheckLoad:
    """Checks in a loop from two threads, bounded in count and time, recording every outcome."""

    def __init__(self, client: AuthzClient) -> None:
        self.client = client
        self.stop = threading.Event()
        self.answers: list[tuple[bool, bool]] = []  # (PR may manage SQC, the canary may)
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._run) for _ in range(2)]

    def _run(self) -> None:
        deadline = time.monotonic() + 60
        for _ in range(20_000):
            if self.stop.is_set() or time.monotonic() > deadline:
                return
            try:
                allowed = self.client.allowed(PR, SQC, "relations", "write")
                canary = self.client.allowed("C-CANARY", SQC, "profil", "read")
                self.answers.append((allowed, canary))
            except Exception as error:
                self.errors.append(repr(error))
            time.sleep(0.002)

    def __enter__(self) -> CheckLoad:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)


def store_health(port: int) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=STORE_HEALTH_NAME), timeout=5
        )
        return int(answer.status)


def wait_for(predicate: Callable[[], bool], seconds: float) -> float:
    """Seconds it took `predicate` to hold; fails when it does not within `seconds`."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.1)
    pytest.fail(f"not within {seconds}s")


def grant(client: AuthzClient, request_id: str) -> object:
    return client.grant_relation(
        PR, SQC, contact_id="C-IND", role="membre_du_personnel", subjects=[("paiements_et_releves", "read")],
        attest=True, request_id=request_id,
    )  # fmt: skip


def test_postgres_stops_during_a_check_load(
    private_postgres: PrivatePostgres, start_server: Callable[..., Running]
) -> None:
    server = start_server(private_postgres.fresh_database())
    port = server.app.port
    assert store_health(port) == SERVING
    # retry=None: the figure is the server's own time to UNAVAILABLE, not the client's retries on top of it.
    writer = AuthzClient(f"127.0.0.1:{port}", timeout=5, retry=None)
    baseline = row_counts(server)
    with CheckLoad(server.client) as load:
        time.sleep(0.3)
        private_postgres.stop()
        # Writes: UNAVAILABLE, well within the caller's 5 s deadline.
        timings = []
        for attempt in range(3):
            started = time.monotonic()
            with pytest.raises(UnavailableError) as down:
                grant(writer, f"down-{attempt}")
            timings.append(time.monotonic() - started)
        assert down.value.message == "the store is unreachable; nothing was written, try again"
        assert max(timings) < 5.0, timings
        with pytest.raises(UnavailableError):
            writer.issue_link_code(PR, SQC, "C-IND", attest=True)
        # Health: the store entry turns NOT_SERVING; the service itself keeps serving checks.
        wait_for(lambda: store_health(port) == NOT_SERVING, 10)
        served_while_down = len(load.answers)
        time.sleep(0.5)
        assert len(load.answers) > served_while_down  # checks still answered with the store down
        private_postgres.start()
        wait_for(lambda: store_health(port) == SERVING, 15)
    assert not load.errors, load.errors[:3]
    assert load.answers and all(answer == (True, False) for answer in load.answers)
    # Nothing of the failed writes was stored; the same request now goes through, once.
    before = row_counts(server)
    assert before == baseline
    wait_for(lambda: _succeeds(lambda: grant(writer, "down-0")), 15)
    after = row_counts(server)
    assert after["relations"] == before["relations"] + 1 and after["audit_log"] == before["audit_log"] + 1
    assert writer.allowed("C-IND", SQC, "paiements_et_releves", "read")
    grant(writer, "down-0")  # a retry of the acknowledged request: nothing more
    assert row_counts(server) == after
    writer.close()
    print(f"time to UNAVAILABLE with PostgreSQL stopped: {[round(t, 3) for t in timings]} s")


def _succeeds(call: Callable[[], object]) -> bool:
    try:
        call()
        return True
    except UnavailableError:
        return False


def test_a_store_that_never_answers_reads_as_down(demo: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    """A half-open database connection: the ping hangs instead of failing. Health must still turn."""
    release = threading.Event()
    real_ping = demo.app.store.ping

    def hanging_ping() -> bool:
        release.wait(30)
        return False

    port = demo.app.port
    monkeypatch.setattr(demo.app.store, "ping", hanging_ping)
    try:
        took = wait_for(lambda: store_health(port) == NOT_SERVING, 10)
        assert demo.client.allowed(PR, SQC, "relations", "write")  # checks answer from memory meanwhile
    finally:
        monkeypatch.setattr(demo.app.store, "ping", real_ping)
        release.set()
    wait_for(lambda: store_health(port) == SERVING, 10)
    print(f"a hanging store read as down after {took:.1f} s")
