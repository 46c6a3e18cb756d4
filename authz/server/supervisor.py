"""`authz serve --processes N`: N worker processes sharing one port, each following the log.

The parent builds the index once (one snapshot), freezes it out of the collector's sight,
closes every database connection, then forks the workers: the index's pages stay shared
copy-on-write, and each worker only pays for what the change log changes afterwards. The
parent never creates a gRPC object (gRPC does not survive a fork): each worker makes its
own server (SO_REUSEPORT on the same port), database engine and follower. SO_REUSEPORT
balances connections, not calls: one client channel stays on one worker, so a caller's
write and its next read may reach different workers; revision tokens make that safe.

SIGTERM (or SIGINT) is passed to every worker, which drains as a single server does; a
worker that dies otherwise is forked again (from the parent's index, then caught up from
the log before it reports SERVING).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from types import FrameType

from authz.config import ConfigError, Settings
from authz.server.app import AuthzApp, Prepared, prepare
from authz.store.sql import SqlStore, make_engine

__all__ = ["Supervisor"]

log = logging.getLogger("authz.supervisor")

_READY_TIMEOUT = 120.0
_RESTART_PAUSE = 1.0  # between a worker's death and its replacement: no fork storm on a crash loop


@contextlib.contextmanager
def _reserved_port(listen: str) -> Iterator[str]:
    """`listen` with a concrete port: port 0 is chosen here, once, and held (bound, not listening)
    with SO_REUSEPORT so that every worker binds the same one and nobody else takes it."""
    host, _, port_text = listen.rpartition(":")
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((bare, int(port_text)))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot listen on {listen}: {exc}") from exc
        yield f"{host}:{sock.getsockname()[1]}"


class Supervisor:
    def __init__(self, settings: Settings, store: SqlStore) -> None:
        self.settings = settings
        self.store = store
        self.workers: dict[int, int] = {}  # pid -> slot
        self.restarts = 0
        self._stop = threading.Event()

    def run(self) -> int:
        prepared = prepare(self.settings, self.store)
        # Nothing open crosses the fork: each worker opens its own connections.
        self.store.close()
        with _reserved_port(self.settings.listen) as listen:
            settings = self.settings.with_overrides(listen=listen)
            ready_read, ready_write = os.pipe()
            for slot in range(settings.processes):
                self._fork(slot, settings, prepared, ready_write)
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
            if not self._wait_ready(ready_read, settings.processes):
                self._stop_all()
                return 1
            print(f"authz serving on {listen} ({settings.processes} processes)", flush=True)
            while not self._stop.wait(0.2):
                self._reap(settings, prepared, ready_write)
            self._stop_all()
            os.close(ready_read)
            os.close(ready_write)
        log.info("stopped")
        return 0

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: draining %d workers", signal.Signals(signum).name, len(self.workers))
        self._stop.set()

    def _fork(self, slot: int, settings: Settings, prepared: Prepared, ready_write: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                code = _worker(settings, prepared, ready_write)
            except BaseException:
                log.exception("worker %d failed", os.getpid())
            finally:
                logging.shutdown()
                os._exit(code)
        self.workers[pid] = slot
        log.info("worker %d started (slot %d)", pid, slot)

    def _wait_ready(self, ready_read: int, count: int) -> bool:
        deadline = time.monotonic() + _READY_TIMEOUT
        os.set_blocking(ready_read, False)
        seen = 0
        while seen < count:
            if self._stop.is_set() or time.monotonic() > deadline:
                return False
            with contextlib.suppress(BlockingIOError):
                seen += len(os.read(ready_read, 64))
            for pid, _status in self._dead():
                log.error("worker %d died before it was ready", pid)
                return False
            time.sleep(0.05)
        return True

    def _dead(self) -> list[tuple[int, int]]:
        dead = []
        for pid in list(self.workers):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                dead.append((pid, status))
        return dead

    def _reap(self, settings: Settings, prepared: Prepared, ready_write: int) -> None:
        for pid, status in self._dead():
            slot = self.workers.pop(pid)
            log.error("worker %d (slot %d) ended unexpectedly (%s): starting another", pid, slot, _describe(status))
            if self._stop.wait(_RESTART_PAUSE):
                return
            self.restarts += 1
            self._fork(slot, settings, prepared, ready_write)

    def _stop_all(self) -> None:
        for pid in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.grace_seconds + 10
        while self.workers and time.monotonic() < deadline:
            for pid, _status in self._dead():
                self.workers.pop(pid, None)
            time.sleep(0.05)
        for pid in self.workers:
            log.error("worker %d did not drain in time: killed", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        self.workers.clear()


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


def _worker(settings: Settings, prepared: Prepared, ready_write: int) -> int:
    """One worker: its own store engine, gRPC server and follower; drains on SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    signal.signal(signal.SIGINT, lambda _signum, _frame: stop.set())
    app = AuthzApp(settings, store=SqlStore(make_engine(settings.database_url)), prepared=prepared)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda _signum, _frame: app.policy_watcher.request_reload())
    app.start()
    os.write(ready_write, b"R")
    stop.wait()
    app.stop()
    return 0
