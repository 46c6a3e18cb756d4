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
the log before it reports SERVING). SIGHUP is passed on (policy reload); SIGUSR2 replaces
the workers one at a time, each new one SERVING before the old one drains (a rolling restart
that fails no call).

Sibling workers see each other's writes before answering through a revision counter in
shared memory (authz/replication/siblings.py), made here before the fork.

Metrics: with AUTHZ_METRICS_LISTEN set, the supervisor turns prometheus_client's
multiprocess mode on by itself (a fresh folder, unless PROMETHEUS_MULTIPROC_DIR names one),
binds the port once before forking and serves every worker's figures from it; a worker that
ends is marked dead at once, so its gauges are gone by the next scrape.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import HTTPServer
from types import FrameType

from authz.config import ConfigError, Settings
from authz.replication.siblings import SiblingRevision
from authz.server.app import AuthzApp, Prepared, prepare
from authz.server.logs import announce
from authz.server.observability import Observability, enable_multiprocess, mark_process_dead, multiprocess_dir
from authz.store.sql import SqlStore

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
        self.retiring: set[int] = set()  # replaced by a rolling restart: not forked again when they end
        self.restarts = 0
        self.siblings = SiblingRevision()
        self._stop = threading.Event()
        self._roll = threading.Event()
        self._http: HTTPServer | None = None
        self._own_metrics_dir: str | None = None

    def run(self) -> int:
        prepared = prepare(self.settings, self.store)
        # Nothing open crosses the fork: each worker opens its own connections.
        self.store.close()
        try:
            self._open_metrics()
            return self._run(prepared)
        finally:
            self._close_metrics()

    def _run(self, prepared: Prepared) -> int:
        with _reserved_port(self.settings.listen) as listen:
            # The workers serve no /metrics of their own: the supervisor serves them all, once.
            settings = self.settings.with_overrides(listen=listen, metrics_listen="")
            ready_read, ready_write = os.pipe()
            os.set_blocking(ready_read, False)
            for slot in range(settings.processes):
                self._fork(slot, settings, prepared, ready_write)
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
            if hasattr(signal, "SIGHUP"):
                signal.signal(signal.SIGHUP, self._on_hangup)
            if hasattr(signal, "SIGUSR2"):
                signal.signal(signal.SIGUSR2, lambda _signum, _frame: self._roll.set())
            if not self._wait_ready(ready_read, settings.processes):
                self._stop_all()
                return 1
            announce(f"authz serving on {listen} ({settings.processes} processes)", listen=listen)
            while not self._tick():
                self._reap(settings, prepared, ready_write)
                if self._roll.is_set():
                    self._roll.clear()
                    self._rolling_restart(settings, prepared, ready_read, ready_write)
            self._stop_all()
            os.close(ready_read)
            os.close(ready_write)
        log.info("stopped")
        return 0

    def _tick(self) -> bool:
        """Serve /metrics scrapes for a fifth of a second (or just wait); True once asked to stop."""
        if self._http is None:
            return self._stop.wait(0.2)
        self._http.handle_request()  # returns after one scrape, or its 0.2 s timeout
        return self._stop.is_set()

    def _open_metrics(self) -> None:
        """Bind /metrics once, before any fork, and turn multiprocess mode on for the workers."""
        address = Observability.check_listen(self.settings.metrics_listen)
        if address is None:
            return
        directory = multiprocess_dir()
        if directory is None:
            directory = self._own_metrics_dir = tempfile.mkdtemp(prefix="authz-metrics-")
        enable_multiprocess(directory)
        from prometheus_client import CollectorRegistry
        from prometheus_client.exposition import MetricsHandler
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        host, port = address
        try:
            server = _QuietHTTPServer((host.strip("[]"), port), MetricsHandler.factory(registry))
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {self.settings.metrics_listen}: {exc.strerror}") from None
        server.timeout = 0.2
        server.RequestHandlerClass.timeout = 5  # type: ignore[attr-defined]  # a scraper that sends nothing holds the loop 5 s at most
        self._http = server
        log.info("metrics of every worker on http://%s:%d/metrics", host, server.server_port)

    def _close_metrics(self) -> None:
        if self._http is not None:
            self._http.server_close()
            self._http = None
        if self._own_metrics_dir is not None:
            shutil.rmtree(self._own_metrics_dir, ignore_errors=True)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: draining %d workers", signal.Signals(signum).name, len(self.workers))
        self._stop.set()

    def _on_hangup(self, _signum: int, _frame: FrameType | None) -> None:
        # Each worker validates and swaps the policy on its own (authz/server/reload.py).
        for pid in list(self.workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)

    def _rolling_restart(self, settings: Settings, prepared: Prepared, ready_read: int, ready_write: int) -> None:
        """Each worker in turn: a new one forked and SERVING first, then the old one drained."""
        log.info("rolling restart of %d workers", len(self.workers))
        for old_pid, slot in list(self.workers.items()):
            if self._stop.is_set():
                return
            _drain_pipe(ready_read)
            self._fork(slot, settings, prepared, ready_write)
            if not self._wait_ready(ready_read, 1):
                log.error("rolling restart stopped: a new worker did not become ready")
                return
            self.retiring.add(old_pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(old_pid, signal.SIGTERM)
        self.restarts += 1

    def _fork(self, slot: int, settings: Settings, prepared: Prepared, ready_write: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                if self._http is not None:
                    self._http.socket.close()  # the supervisor's listener: not the worker's to hold
                code = _worker(settings, prepared, ready_write, self.store, self.siblings)
            except BaseException:
                log.exception("worker %d failed", os.getpid())
            finally:
                logging.shutdown()
                os._exit(code)
        self.workers[pid] = slot
        log.info("worker %d started (slot %d)", pid, slot)

    def _wait_ready(self, ready_read: int, count: int) -> bool:
        deadline = time.monotonic() + _READY_TIMEOUT
        seen = 0
        while seen < count:
            if self._stop.is_set() or time.monotonic() > deadline:
                return False
            with contextlib.suppress(BlockingIOError):
                seen += len(os.read(ready_read, 64))
            for pid, _status in self._dead():
                retired = pid in self.retiring
                # Reaped here: no longer ours to wait for (a second waitpid raises ChildProcessError).
                self._forget(pid)
                if retired:
                    continue
                log.error("worker %d died before it was ready", pid)
                return False
            time.sleep(0.05)
        return True

    def _dead(self) -> list[tuple[int, int]]:
        dead = []
        for pid in list(self.workers):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # reaped already
                done, status = pid, 0
            if done:
                dead.append((pid, status))
        return dead

    def _forget(self, pid: int) -> int | None:
        """A worker that ended: out of the books, and out of /metrics (its gauges) before the next scrape."""
        mark_process_dead(pid)
        self.retiring.discard(pid)
        return self.workers.pop(pid, None)

    def _reap(self, settings: Settings, prepared: Prepared, ready_write: int) -> None:
        for pid, status in self._dead():
            retired = pid in self.retiring
            slot = self._forget(pid)
            if retired or slot is None:
                log.info("worker %d drained and ended (%s)", pid, _describe(status))
                continue
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
        deadline += self.settings.shutdown_grace_seconds
        while self.workers and time.monotonic() < deadline:
            for pid, _status in self._dead():
                self._forget(pid)
            time.sleep(0.05)
        for pid in list(self.workers):
            log.error("worker %d did not drain in time: killed", pid)
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            self._forget(pid)
        self.workers.clear()


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


def _drain_pipe(ready_read: int) -> None:
    with contextlib.suppress(BlockingIOError):
        while os.read(ready_read, 64):
            pass


class _QuietHTTPServer(HTTPServer):
    """/metrics in the supervisor's own loop (no thread: the supervisor forks); scrapes are not logged."""

    def handle_error(self, request: object, client_address: object) -> None:
        log.debug("metrics scrape from %s failed", client_address, exc_info=True)


def _worker(
    settings: Settings, prepared: Prepared, ready_write: int, parent_store: SqlStore, siblings: SiblingRevision
) -> int:
    """One worker, built as a single process is (the same store settings and outbox key); drains on SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    signal.signal(signal.SIGINT, lambda _signum, _frame: stop.set())
    if hasattr(signal, "SIGUSR2"):
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    app = AuthzApp(settings, store=parent_store.reopened(), prepared=prepared, siblings=siblings)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda _signum, _frame: app.policy_watcher.request_reload())
    app.start()
    os.write(ready_write, b"R")
    stop.wait()
    app.drain_and_stop()
    return 0
