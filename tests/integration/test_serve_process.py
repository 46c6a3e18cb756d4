"""`authz serve` as a real process: demo data, answers, and a clean SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from authz_client import AuthzClient, Right
from grpc_health.v1 import health_pb2, health_pb2_grpc

AUTHZ = str(Path(sys.executable).with_name("authz"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    env = dict(os.environ, AUTHZ_LISTEN=f"127.0.0.1:{port}", AUTHZ_GRACE_SECONDS="3")
    env.pop("AUTHZ_DATABASE_URL", None)
    process = subprocess.Popen(
        [AUTHZ, "serve", "--demo"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 30
    for line in process.stdout:
        if "authz serving on" in line or time.monotonic() > deadline:
            break
    yield process, port
    if process.poll() is None:
        process.kill()
        process.wait()


def test_serve_with_demo_data_answers_then_drains_on_sigterm(
    served: tuple[subprocess.Popen[str], int], tmp_path: Path
) -> None:
    process, port = served
    assert (tmp_path / "authz.db").exists()  # the embedded default, in the working folder
    with AuthzClient(f"127.0.0.1:{port}", timeout=10) as client:
        assert client.allowed("C-PR", "ORG-SQC", "relations", Right.RIGHT_WRITE)

        statuses: list[int] = []
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))

        def follow() -> None:
            try:
                for answer in watch:
                    statuses.append(answer.status)
            except grpc.RpcError:
                pass

        follower = threading.Thread(target=follow)
        follower.start()
        # A slow call in flight (PBKDF2 with 600,000 rounds) when SIGTERM arrives must finish.
        pending = client._stub.LinkLegacyAccess.future(
            __import__("authz.v1.authz_pb2", fromlist=["x"]).LinkLegacyAccessRequest(
                account_id="acct-julie", legacy_username="sqc-admin", legacy_password="demo-legacy-password"
            ),
            timeout=10,
        )
        time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert list(pending.result().contact_ids) == ["C-PR"]
        assert process.wait(timeout=20) == 0
        follower.join(timeout=5)
        channel.close()
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    assert statuses[0] == serving and not_serving in statuses
