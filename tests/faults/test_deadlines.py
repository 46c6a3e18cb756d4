"""Deadlines propagate: when the caller gives up, the write stops and nothing of it is stored."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from authz_client import AuthzClient, AuthzClientError
from sqlalchemy import create_engine, text

from ..conftest import Running
from ..integration.helpers import row_counts

PR, SQC = "C-PR", "ORG-SQC"


def grant(client: AuthzClient, request_id: str) -> object:
    return client.grant_relation(
        PR, SQC, contact_id="C-IND", role="membre_du_personnel", subjects=[("paiements_et_releves", "read")],
        attest=True, request_id=request_id,
    )  # fmt: skip


def test_a_write_queued_past_its_deadline_is_dropped(demo: Running) -> None:
    before = row_counts(demo)
    impatient = AuthzClient(f"127.0.0.1:{demo.app.port}", timeout=0.5)
    demo.app.deps.write_lock.acquire()  # another write holding the store, longer than the caller will wait
    try:
        started = time.monotonic()
        with pytest.raises(AuthzClientError) as gave_up:
            grant(impatient, "impatient-1")
        assert gave_up.value.code.name in {"DEADLINE_EXCEEDED", "UNAVAILABLE"}  # whichever side noticed first
        assert time.monotonic() - started < 1.5
        time.sleep(0.7)  # the server side gives up on its own at the deadline, without the lock
    finally:
        demo.app.deps.write_lock.release()
    time.sleep(0.3)
    assert row_counts(demo) == before  # the abandoned write never ran
    grant(demo.client, "impatient-1")  # the caller's retry goes through, once
    assert row_counts(demo)["relations"] == before["relations"] + 1
    impatient.close()


def test_a_write_blocked_in_postgresql_stops_at_the_deadline(
    start_server: Callable[..., Running], postgres_database: Callable[[], str]
) -> None:
    """A row lock held by someone else: the statement gives up at the caller's deadline (lock_timeout),
    instead of holding a worker thread and the write lock for as long as the other holds the row."""
    url = postgres_database()
    server = start_server(url)
    before = row_counts(server)
    blocker = create_engine(url)
    impatient = AuthzClient(f"127.0.0.1:{server.app.port}", timeout=1.0)
    with blocker.connect() as connection:
        connection.execute(text("UPDATE store_revision SET revision = revision WHERE id = 1"))  # holds the row
        with pytest.raises(AuthzClientError) as gave_up:
            grant(impatient, "blocked-1")
        assert gave_up.value.code.name in {"DEADLINE_EXCEEDED", "UNAVAILABLE"}  # whichever side noticed first
        # The server's side stopped at the deadline: the write lock is free again within about a second,
        # though the row is still held.
        assert server.app.deps.write_lock.acquire(timeout=2.0)
        server.app.deps.write_lock.release()
        connection.rollback()
    blocker.dispose()
    assert row_counts(server) == before
    grant(server.client, "blocked-1")
    assert row_counts(server)["relations"] == before["relations"] + 1
    impatient.close()
