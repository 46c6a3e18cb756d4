"""Real `authz serve` processes on one real PostgreSQL database, and what the tests compare them with."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from authz_client import AuthzClient, Right, Role, check_request
from grpc_health.v1 import health_pb2, health_pb2_grpc

from authz.engine.index import DecisionEngine
from authz.engine.policy import Policy
from authz.replication.tokens import revision_of
from authz.store.sql import SqlStore

from ..conftest import TEST_OUTBOX_KEY, load_demo

AUTHZ = str(Path(sys.executable).with_name("authz"))
MANAGER, ORG = "C-PR", "ORG-SQC"
ORGANIZATIONS = ("ORG-SQC", "LOC-SQC-MTL", "EMP-ABC", "EMP-XYZ")
DEMO_CONTACTS = ("C-PR", "C-DIR1", "C-DIR2", "C-IND", "C-REP", "C-ABC-PR", "C-XYZ-DIR", "C-LOC-DIR")
GRANTEES = ("C-DIR1", "C-DIR2", "C-IND", "C-REP")
REPLICA = "authz.v1.AuthzService/replica"


class Served:
    """`authz serve` as a real process; its output is read continuously (and kept) so it never blocks."""

    def __init__(self, url: str, folder: Path, **env: str) -> None:
        self.url, self.folder, self.env = url, folder, env
        self.lines: list[str] = []
        self.port = 0
        self.process: subprocess.Popen[str] | None = None
        self.start()

    def start(self) -> None:
        env = dict(
            os.environ,
            AUTHZ_DATABASE_URL=self.url,
            AUTHZ_LISTEN=f"127.0.0.1:{self.port}",
            AUTHZ_MAIL_URL=f"file://{self.folder / 'outbox'}",
            AUTHZ_MAIL_INTERVAL_SECONDS="0.5",
            AUTHZ_MAX_WORKERS="8",
            AUTHZ_GRACE_SECONDS="1",
            AUTHZ_OUTBOX_KEY=TEST_OUTBOX_KEY,  # PostgreSQL servers need one, the same on every server
            **self.env,
        )
        self.process = subprocess.Popen(
            [AUTHZ, "serve"], cwd=self.folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        ready = threading.Event()
        process = self.process

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                self.lines.append(line)
                found = re.search(r"authz serving on [\d.]+:(\d+)", line)
                if found:
                    self.port = int(found.group(1))
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(60):
            process.kill()
            pytest.fail("the server did not start:\n" + "".join(self.lines))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> AuthzClient:
        return AuthzClient(self.address, timeout=10)

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(timeout=30)

    def replica_status(self) -> dict[str, str]:
        """The health entry's figures, from whichever process answers."""
        with grpc.insecure_channel(self.address) as channel:
            _, call = health_pb2_grpc.HealthStub(channel).Check.with_call(
                health_pb2.HealthCheckRequest(service=REPLICA), timeout=5
            )
            return {key: str(value) for key, value in call.trailing_metadata()}


@pytest.fixture
def pg_demo(postgres_database: Callable[[], str], policy: Policy) -> str:
    url = postgres_database()
    load_demo(url, policy)
    return url


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(url: str, **env: str) -> Served:
        folder = tmp_path / f"server-{len(started)}"
        folder.mkdir()
        served = Served(url, folder, **env)
        started.append(served)
        return served

    yield start
    for served in started:
        if served.process is not None and served.process.poll() is None:
            served.process.terminate()
            try:
                served.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                served.process.kill()
                served.process.wait()


class RandomWriter:
    """Random grants and revokes at ORG-SQC through one server; remembers what it created."""

    def __init__(self, client: AuthzClient, seed: int, subjects: list[str]) -> None:
        self.client = client
        self.rng = random.Random(seed)
        self.subjects = subjects
        self.relations: list[tuple[str, str, str]] = []  # (relation id, contact, subject)

    def step(self) -> tuple[str, str, str]:
        """One write; (its revision token, the contact and subject it changed)."""
        # One writer relation per contact at a time, with a role none of them holds in the demo data:
        # a second one in force would repeat the first (one relation per purpose).
        free = [contact for contact in GRANTEES if contact not in {held for _, held, _ in self.relations}]
        if self.relations and (not free or self.rng.random() < 0.45):
            relation_id, contact, subject = self.relations.pop(self.rng.randrange(len(self.relations)))
            answer = self.client.revoke_relation(
                MANAGER, ORG, contact_id=contact, relation_ids=[relation_id], attest=True
            )
            return answer.revision, contact, subject
        contact = self.rng.choice(free)
        subject = self.rng.choice(self.subjects)
        right = self.rng.choice((Right.RIGHT_READ, Right.RIGHT_WRITE))
        granted = self.client.grant_relation(
            MANAGER,
            ORG,
            contact_id=contact,
            role=Role.ROLE_MEMBRE_DU_PERSONNEL,
            subjects=[(subject, right)],
            attest=True,
        )
        self.relations.append((granted.relation_id, contact, subject))
        return granted.revision, contact, subject


def every_check(at: datetime, subjects: list[str]) -> list[tuple[str, str, str, int]]:
    return [
        (contact, organization, subject, right)
        for contact in DEMO_CONTACTS
        for organization in ORGANIZATIONS
        for subject in subjects
        for right in (1, 2)
    ]


def served_answers(client: AuthzClient, at: datetime, subjects: list[str]) -> tuple[int, list[bool]]:
    """Every check answered by a server from its memory now (minimize_latency): (revision, answers)."""
    checks = every_check(at, subjects)
    answers: list[bool] = []
    revisions = set()
    for start in range(0, len(checks), 1000):
        batch = [check_request(c, o, s, r, at=at) for c, o, s, r in checks[start : start + 1000]]
        results = client.batch_check(batch)
        revisions.update(revision_of(result.revision) for result in results)
        answers.extend(result.allowed for result in results)
    # Several batches decided at different revisions are not one state: -1, and the caller asks again.
    return (revisions.pop() if len(revisions) == 1 else -1), answers


def store_answers(url: str, policy: Policy, at: datetime, subjects: list[str]) -> tuple[int, list[bool]]:
    """The same checks decided by an engine built from the store at one revision."""
    store = SqlStore.from_url(url)
    try:
        engine = DecisionEngine(policy)
        with store.snapshot() as snapshot:
            engine.load_rows(snapshot.rows, snapshot.revision)
    finally:
        store.close()
    ts = at.timestamp()
    return engine.revision, [engine.check(c, o, s, r, ts) for c, o, s, r in every_check(at, subjects)]


def converges(served: Served, url: str, policy: Policy, subjects: list[str], timeout: float = 20.0) -> int:
    """Wait until `served` answers at the store's revision, then compare every answer with the store's."""
    at = datetime.now(UTC)
    deadline = time.monotonic() + timeout
    with served.client() as client:
        while True:
            expected_revision, expected = store_answers(url, policy, at, subjects)
            revision, answers = served_answers(client, at, subjects)
            if revision == expected_revision:
                assert answers == expected, "the index differs from the store at the same revision"
                return revision
            assert time.monotonic() < deadline, f"still at revision {revision}, the store is at {expected_revision}"
            time.sleep(0.1)
