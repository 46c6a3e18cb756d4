"""`authz serve` as operators run it: draining restarts, one owner per port, JSON output."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from authz_client import AuthzClient, AuthzClientError, Right
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .conftest import Cluster


def test_a_restart_under_a_steady_client_loop_fails_no_call(cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    served = cluster(f"sqlite:///{tmp_path / 'authz.db'}", AUTHZ_PROCESSES="1", AUTHZ_SHUTDOWN_GRACE_SECONDS="1.5")
    served.start("--demo")
    calls: list[bool] = []
    failures: list[str] = []
    stop = threading.Event()

    def loop() -> None:
        # The default retry policy: it lasts up to the call's deadline.
        with AuthzClient(served.address, timeout=30) as client:
            while not stop.is_set():
                try:
                    calls.append(client.allowed("C-PR", "ORG-SQC", "relations", Right.RIGHT_WRITE))
                except AuthzClientError as exc:
                    failures.append(str(exc))
                time.sleep(0.01)

    threads = [threading.Thread(target=loop) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    assert served.process is not None
    served.process.send_signal(signal.SIGTERM)
    # Draining: NOT_SERVING at once, yet calls are still answered during the grace.
    time.sleep(0.3)
    with grpc.insecure_channel(served.address) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING
    during = len(calls)
    time.sleep(0.5)
    assert len(calls) > during
    assert served.process.wait(timeout=30) == 0
    served.start()
    time.sleep(1)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == [] and all(calls) and len(calls) > 50


def test_a_second_server_on_the_same_port_is_refused(cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    served = cluster(f"sqlite:///{tmp_path / 'authz.db'}").start("--demo")
    for processes in ("1", "2"):
        second = served.run("serve", "--processes", processes)
        assert second.returncode == 2, second.stderr
        assert f"{served.address} is already served by another authz server" in second.stderr
    # Any other program listening on a port (no authz lock at all) is refused too, by the bind probe.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        other = cluster(f"sqlite:///{tmp_path / 'other.db'}", port=taken.getsockname()[1])
        refused = other.run("serve", "--processes", "2")
        assert refused.returncode == 2
        assert "already in use by another process" in refused.stderr


def test_every_output_line_is_json_with_the_pid(cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    served = cluster(f"sqlite:///{tmp_path / 'authz.db'}", AUTHZ_LOG_FORMAT="json").start("--demo")
    with AuthzClient(served.address, timeout=10) as client:
        client.issue_link_code("C-PR", "ORG-SQC", "C-IND", attest=True)
    time.sleep(1)  # the mailer's line
    assert served.stop() == 0
    lines = [json.loads(line) for line in served.output().splitlines() if line.strip()]
    assert all("pid" in line for line in lines)
    serving = [line for line in lines if line["message"].startswith("authz serving on")]
    assert serving and serving[0]["listen"] == served.address
    assert len({line["pid"] for line in lines}) >= 3  # the supervisor and two workers
    assert not any("@example.org" in line["message"] for line in lines if line["logger"] == "authz.mail")


@pytest.mark.postgres
def test_worker_processes_on_postgresql_refuse_to_start_without_an_outbox_key(
    cluster: Callable[..., Cluster], postgres_database: Callable[[], str]
) -> None:
    served = cluster(postgres_database(), AUTHZ_OUTBOX_KEY="")
    refused = served.run("serve", "--processes", "2")
    assert refused.returncode == 2
    assert "AUTHZ_OUTBOX_KEY" in refused.stderr and "started (slot" not in refused.stderr
