"""`authz serve --processes 2` on PostgreSQL as an operator runs it: one metrics port, mail, restarts.

One server, in order: link codes queued through both workers are all delivered; a worker killed
with SIGKILL leaves /metrics by the next scrape; a second server on the same port is refused; a
rolling restart under a loop of reads and idempotent writes fails no call; then, after a full
restart on an SMTP relay that is down for a while, the queued email arrives once it is back.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from authz_client import AuthzClient, AuthzClientError, NewContact, Right, Role

from authz.engine.policy import Policy

from ..conftest import load_demo
from .conftest import Cluster, free_port, wait_until

MANAGER, ORG = "C-PR", "ORG-SQC"
SUBJECT = "rapport_mensuel"
# The done-when figure is 30 s; a shorter outage proves the same path when iterating locally.
SMTP_OUTAGE_SECONDS = float(os.environ.get("AUTHZ_TEST_SMTP_OUTAGE_SECONDS", "30"))

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def grant_new_contact(client: AuthzClient, name: str, request_id: str) -> Any:
    person = NewContact(first_name="Multi", last_name=name, email=f"{name}@example.org", language="fr")
    return client.grant_relation(
        MANAGER,
        ORG,
        new_contact=person,
        role=Role.ROLE_INDIVIDU_AUTORISE,
        subjects=[(SUBJECT, Right.RIGHT_READ)],
        attest=True,
        request_id=request_id,
    )


def series_pids(text: str, metric: str) -> set[int]:
    return {int(found) for found in re.findall(rf'^{metric}\{{[^}}]*pid="(\d+)"', text, re.MULTILINE)}


class ClientLoop:
    """Callers spread over the workers, each reading and writing (with request ids) until stopped."""

    def __init__(self, clients: list[AuthzClient]) -> None:
        self.clients = clients
        self.calls = 0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(n,)) for n in range(len(clients))]

    def run(self, n: int) -> None:
        client = self.clients[n]
        step = 0
        while not self.stop.is_set():
            step += 1
            try:
                if step % 5 == 0:
                    grant_new_contact(client, f"loop{n}x{step}", f"loop-{n}-{step}")
                else:
                    client.check(MANAGER, ORG, "relations", Right.RIGHT_WRITE)
                self.calls += 1
            except AuthzClientError as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.01)

    def __enter__(self) -> ClientLoop:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)


def test_two_workers_on_postgresql_mail_metrics_one_owner_and_restarts(
    cluster: Callable[..., Cluster], postgres_database: Callable[[], str], policy: Policy, tmp_path: Path
) -> None:
    url = postgres_database()
    load_demo(url, policy)
    served = cluster(url, metrics_port=free_port()).start()
    wait_until(lambda: len(served.workers()) == 2, 10, "two workers")
    outbox = served.folder / "outbox"

    # 1. Ten link codes queued through both workers, all delivered (one outbox key for every worker).
    callers = served.callers(10, timeout=30)
    assert len({pid for _, pid in callers}) == 2
    for n, (client, _pid) in enumerate(callers):
        assert grant_new_contact(client, f"mail{n}", f"mail-{n}").link_code_sent
    wait_until(lambda: len(list(outbox.glob("*.eml"))) >= 10, 30, "ten emails")
    assert "cannot be decrypted" not in served.output()

    # 2. One metrics port for both workers; a worker killed with SIGKILL is gone by the next scrape.
    scraped = served.scrape()
    workers = served.workers()
    assert series_pids(scraped, "process_resident_memory_bytes") == workers
    assert series_pids(scraped, "authz_policy_info") == workers
    assert re.search(r'^grpc_server_msg_received_total\{.*grpc_method="GrantRelation"', scraped, re.MULTILINE)
    assert re.search(r'^grpc_server_msg_sent_total\{.*grpc_method="GrantRelation"', scraped, re.MULTILINE)
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: f"worker {victim} (slot" in served.output(), 10, "the supervisor to reap the worker")
    scraped = served.scrape()
    assert victim not in series_pids(scraped, "process_resident_memory_bytes")
    assert victim not in series_pids(scraped, "authz_policy_info")
    wait_until(lambda: len(served.workers()) == 2, 30, "a replacement worker")

    # 3. A second server on the same host and port is refused, and says why.
    second = served.run("serve")
    assert second.returncode == 2
    assert f"{served.address} is already served by another authz server" in second.stderr

    # 4. A rolling restart (SIGUSR2: each worker replaced, the new one SERVING before the old drains)
    # under a loop of reads and idempotent writes fails no call.
    for client, _ in callers:
        client.close()
    before = served.workers()
    loop_clients = [client for client, _ in served.callers(6, timeout=30)]
    with ClientLoop(loop_clients) as loop:
        time.sleep(1)
        assert served.process is not None
        served.process.send_signal(signal.SIGUSR2)
        wait_until(lambda: not (served.workers() & before) and len(served.workers()) == 2, 60, "both replaced")
        time.sleep(1)
    assert loop.failures == [] and loop.calls > 50, (loop.calls, loop.failures[:5])

    # 5. A full restart onto an SMTP relay that is down: the email waits, retried with backoff, and
    # arrives once the relay is back.
    assert served.stop() == 0
    smtp_port = free_port()
    served.env.update(
        AUTHZ_MAIL_URL=f"smtp://127.0.0.1:{smtp_port}",
        AUTHZ_MAIL_RETRY_INITIAL_SECONDS="0.5",
        AUTHZ_MAIL_RETRY_MAX_SECONDS="2",
    )
    served.lines.clear()
    served.start()
    with AuthzClient(served.address, timeout=30) as client:
        assert grant_new_contact(client, "outage", "outage-1").link_code_sent
    time.sleep(SMTP_OUTAGE_SECONDS)
    assert "failed (attempt" in served.output()
    assert "outage@example.org" not in served.output()  # the mailer's lines carry no address
    received = start_smtp(smtp_port)
    try:
        wait_until(lambda: any("outage@example.org" in rcpt for rcpt in received), 15, "the email after the outage")
    finally:
        received.stop()
    assert served.stop() == 0


class Received(list[str]):
    controller: Any

    def stop(self) -> None:
        self.controller.stop()


def start_smtp(port: int) -> Received:
    from aiosmtpd.controller import Controller

    received = Received()

    class Handler:
        async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
            received.extend(envelope.rcpt_tos)
            return "250 OK"

    received.controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    received.controller.start()
    return received
