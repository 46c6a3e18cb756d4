"""The supervisor's book of workers: a worker that dies before it is ready leaves the book at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from authz.config import Settings
from authz.server.supervisor import Supervisor
from authz.store.sql import SqlStore


def test_a_worker_dead_before_ready_is_forgotten_and_stopping_does_not_fail(tmp_path: Path) -> None:
    store = SqlStore.from_url(f"sqlite:///{tmp_path / 'authz.db'}")
    supervisor = Supervisor(Settings(processes=2), store)
    ready_read, ready_write = os.pipe()
    os.set_blocking(ready_read, False)
    child = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    supervisor.workers[child.pid] = 0
    try:
        assert supervisor._wait_ready(ready_read, 1) is False
        # Reaped there, so out of the book: stopping must not wait on it again (ChildProcessError before).
        assert supervisor.workers == {}
        supervisor._stop_all()
    finally:
        os.close(ready_read)
        os.close(ready_write)
        store.close()


def test_a_metrics_port_in_use_stops_the_start_before_any_fork(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = dict(
            os.environ,
            AUTHZ_DATABASE_URL=f"sqlite:///{tmp_path / 'authz.db'}",
            AUTHZ_LISTEN="127.0.0.1:0",
            AUTHZ_METRICS_LISTEN=f"127.0.0.1:{taken.getsockname()[1]}",
        )
        done = subprocess.run(
            [str(Path(sys.executable).with_name("authz")), "serve", "--processes", "2"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert "cannot serve metrics on" in done.stderr and "Traceback" not in done.stderr
    assert "started (slot" not in done.stderr  # refused before any worker was forked
