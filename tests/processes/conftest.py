"""`authz serve --processes 2` as real processes: the supervisor, its workers, and callers spread over them."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from authz_client import AuthzClient
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ..conftest import TEST_OUTBOX_KEY

AUTHZ = str(Path(sys.executable).with_name("authz"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


class Cluster:
    """One `authz serve` (a supervisor and its workers) on a fixed port; its output kept, read continuously."""

    def __init__(self, url: str, folder: Path, *, port: int = 0, metrics_port: int = 0, **env: str) -> None:
        self.url, self.folder, self.env = url, folder, env
        self.port = port or free_port()
        self.metrics_port = metrics_port
        self.lines: list[str] = []
        self.process: subprocess.Popen[str] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        env = dict(
            os.environ,
            AUTHZ_DATABASE_URL=self.url,
            AUTHZ_LISTEN=self.address,
            AUTHZ_MAIL_URL=f"file://{self.folder / 'outbox'}",
            AUTHZ_MAIL_INTERVAL_SECONDS="0.3",
            AUTHZ_GRACE_SECONDS="2",
            AUTHZ_SHUTDOWN_GRACE_SECONDS="0.5",
            AUTHZ_PROCESSES="2",
            AUTHZ_OUTBOX_KEY=TEST_OUTBOX_KEY,
        )
        env.update(self.env)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if self.metrics_port:
            env["AUTHZ_METRICS_LISTEN"] = f"127.0.0.1:{self.metrics_port}"
        return env

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Another `authz` command with the same settings, to the end."""
        return subprocess.run(
            [AUTHZ, *args], cwd=self.folder, env=self.environment(), capture_output=True, text=True, timeout=timeout
        )

    def start(self, *args: str) -> Cluster:
        self.process = subprocess.Popen(
            [AUTHZ, "serve", *args],
            cwd=self.folder,
            env=self.environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        ready = threading.Event()
        process = self.process

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                self.lines.append(line)
                if "authz serving on" in line:
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(60):
            process.kill()
            pytest.fail("the server did not start:\n" + "".join(self.lines))
        return self

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def output(self) -> str:
        return "".join(self.lines)

    def workers(self) -> set[int]:
        """Pids of the worker processes, from the supervisor's log."""
        started = {int(m.group(1)) for m in re.finditer(r"worker (\d+) started", self.output())}
        ended = {
            int(m.group(1))
            for m in re.finditer(r"worker (\d+) (?:\(slot \d+\) )?(?:ended|drained|died)", self.output())
        }
        return started - ended

    def scrape(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as answer:
            return str(answer.read().decode())

    def callers(self, count: int, timeout: float = 10) -> list[tuple[AuthzClient, int]]:
        """`count` clients, each on a connection of its own, and the pid of the worker that connection reached."""
        found: list[tuple[AuthzClient, int]] = []
        # More connections until both workers are reached (the kernel's hash may favour one for a while).
        while len(found) < count or (len({pid for _, pid in found}) < 2 and len(found) < 4 * count):
            # A local subchannel pool: every channel opens its own connection, which SO_REUSEPORT
            # hands to one worker or the other.
            channel = grpc.insecure_channel(self.address, options=[("grpc.use_local_subchannel_pool", 1)])
            _, call = health_pb2_grpc.HealthStub(channel).Check.with_call(
                health_pb2.HealthCheckRequest(service=""), timeout=10
            )
            pid = int(dict(call.trailing_metadata())["authz-pid"])
            found.append((AuthzClient(channel=channel, timeout=timeout), pid))
        return found


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    made: list[Cluster] = []

    def make(url: str, **options: object) -> Cluster:
        folder = tmp_path / f"cluster-{len(made)}"
        folder.mkdir()
        made_one = Cluster(url, folder, **options)  # type: ignore[arg-type]
        made.append(made_one)
        return made_one

    yield make
    for one in made:
        if one.process is not None and one.process.poll() is None:
            one.process.terminate()
            try:
                one.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                one.process.kill()
                one.process.wait()
