"""The follower of each server process: applies the change log to its engine, in order.

Woken by PostgreSQL LISTEN/NOTIFY (a hint: a notification missed while disconnected costs
latency, never correctness) and by its own polling, which is the guarantee; on SQLite it
polls alone. Each pass is one range read of the log after the engine's revision
(`Store.changes_after`, or the follower's own `ChangeReader`), applied revision by revision through `DecisionEngine.apply`.
A cursor older than the log's retention, or a bulk import, makes it reload the whole
index from one snapshot instead.

`catch_up` is also what a read with `at_least_as_fresh` / `fully_consistent` calls when
this process is behind: one pass at a time (the others wait for it, then find themselves
fresh), bounded by the caller's deadline.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass

from authz.calls import bounded_wait
from authz.config import Settings
from authz.engine.index import DecisionEngine
from authz.errors import FieldViolation, InvalidArgument, Unavailable
from authz.replication.changes import apply_changes
from authz.store.changes import ChangesPage
from authz.store.interface import ChangeReader, Store

__all__ = ["Follower", "ReplicaStatus"]

log = logging.getLogger("authz.follower")

PAGE = 1000  # changes read per round trip
_BEHIND = "this process could not catch up with the store within the deadline; not answered from older state"
_MAX_BACKOFF = 5.0
_LONGEST_WAIT = 300.0  # seconds: no wait of the follower lasts longer, whatever it is handed


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    pid: int
    applied_revision: int
    store_revision: int  # the newest revision this process has heard of
    synced_seconds_ago: float  # since the last pass that found nothing left to apply
    listening: bool  # LISTEN connection up (PostgreSQL with follow_notify)

    @property
    def behind(self) -> int:
        return max(0, self.store_revision - self.applied_revision)


class Follower:
    def __init__(self, store: Store, engine: DecisionEngine, settings: Settings, store_id: str) -> None:
        self.store = store
        self.engine = engine
        self.settings = settings
        self.store_id = store_id
        self.reloads = 0
        self._newest = engine.revision
        self._synced_at = time.monotonic()
        self._listening = False
        self._pass = threading.Lock()  # one catch-up at a time
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._heard = threading.Condition()  # Watch streams wait on it for newer revisions
        self._threads: list[threading.Thread] = []
        self._notify = settings.follow_notify and store.change_notices() is not None
        self._reader: ChangeReader | None = None  # used under self._pass only

    # ------------------------------------------------------------------ running
    def start(self) -> None:
        self._threads.append(threading.Thread(target=self._poll, name="authz-follower", daemon=True))
        if self._notify:
            self._threads.append(threading.Thread(target=self._listen, name="authz-follower-listen", daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        with self._heard:
            self._heard.notify_all()
        for thread in self._threads:
            thread.join(timeout=3)
        if self._pass.acquire(timeout=3):
            try:
                self._close_reader()
            finally:
                self._pass.release()

    def wake(self) -> None:
        self._wake.set()

    def status(self) -> ReplicaStatus:
        return ReplicaStatus(
            os.getpid(),
            self.engine.revision,
            max(self._newest, self.engine.revision),
            time.monotonic() - self._synced_at,
            self._listening,
        )

    def wait_newer(self, revision: int, timeout: float) -> int:
        """Block until a revision newer than `revision` is heard of, or `timeout`; the newest heard."""
        with self._heard:
            if self._newest <= revision and not self._stopping.is_set():
                self._heard.wait(bounded_wait(timeout, _LONGEST_WAIT))
            return self._newest

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # ------------------------------------------------------------------ catching up
    def catch_up(self, target: int | None = None, timeout: float | None = None, field_path: str = "") -> None:
        """Apply the log until the engine holds `target` (None: the store's newest revision).

        Raises Unavailable when the deadline passes or the store is unreachable (never an
        answer from older state), InvalidArgument when `target` is beyond anything the store
        committed (a token it never returned).
        """
        if timeout is not None:
            # Whatever a caller hands in (gRPC's "no deadline" is a huge number), the wait has an
            # end and cannot overflow the platform's lock timeout.
            timeout = bounded_wait(timeout, _LONGEST_WAIT)
        deadline = None if timeout is None else time.monotonic() + timeout
        if target is not None and self.engine.revision >= target:
            return
        # The follower's own pass (no timeout) waits for a reader's pass no longer than the longest wait.
        if not self._pass.acquire(timeout=_LONGEST_WAIT if timeout is None else timeout):
            raise Unavailable(_BEHIND, reason="REPLICA_BEHIND")
        try:
            while target is None or self.engine.revision < target:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise Unavailable(_BEHIND, reason="REPLICA_BEHIND")
                page = self._changes(self.engine.revision, left)
                self._heard_of(page.newest)
                if page.expired or not apply_changes(self.engine, page.changes):
                    self._reload()
                    continue
                if target is not None and page.newest < target:
                    raise InvalidArgument(
                        "revision token beyond the store's newest revision",
                        [FieldViolation(field_path, "this store has not committed that revision")],
                    )
                if self.engine.revision >= page.newest:
                    self._synced_at = time.monotonic()
                    if target is None:
                        break
        finally:
            self._pass.release()

    def _changes(self, after: int, timeout: float | None) -> ChangesPage:
        if timeout is not None:  # bounded by the caller's deadline: a pooled transaction with a statement timeout
            return self.store.changes_after(after, PAGE, timeout)
        try:
            if self._reader is None:
                self._reader = self.store.change_reader()
            return self._reader.read(after, PAGE)
        except Unavailable:
            self._close_reader()  # opened again on the next pass
            raise

    def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(Exception):
                reader.close()

    def _reload(self) -> None:
        """The whole index again from one snapshot: the log no longer reaches back to this engine."""
        started = time.perf_counter()
        with self.store.snapshot() as snapshot:
            if snapshot.store_id != self.store_id:
                raise Unavailable(
                    "the database is not the store this process started on; restart it", reason="WRONG_STORE"
                )
            self.engine.load_rows(snapshot.rows, snapshot.revision)
        self.reloads += 1
        log.warning(
            "reloaded the index at revision %d in %.2fs (change log beyond reach, or a bulk import)",
            self.engine.revision,
            time.perf_counter() - started,
        )

    def _heard_of(self, revision: int) -> None:
        if revision > self._newest:
            with self._heard:
                self._newest = revision
                self._heard.notify_all()

    # ------------------------------------------------------------------ threads
    def _poll(self) -> None:
        backoff = 0.0
        while not self._stopping.is_set():
            self._wake.wait(backoff or self.settings.follow_poll_seconds)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self.catch_up()
                backoff = 0.0
            except Exception as exc:  # the store down, a reload failing: try again, slower
                backoff = min(_MAX_BACKOFF, max(backoff * 2, self.settings.follow_poll_seconds))
                log.warning("follower: %s; again in %.1fs", exc, backoff)

    def _listen(self) -> None:
        backoff = 0.2
        while not self._stopping.is_set():
            notices = self.store.change_notices()
            if notices is None:
                return
            try:
                with notices as listener:
                    self._listening = True
                    backoff = 0.2
                    self._wake.set()  # whatever committed while nobody listened
                    while not self._stopping.is_set():
                        for revision in listener.heard(1.0):
                            if revision is not None:
                                self._heard_of(revision)
                            self._wake.set()
            except Exception as exc:  # lost connection: the poll covers the gap, reconnect
                if self._stopping.is_set():
                    return
                log.warning("follower: LISTEN connection lost (%s); reconnecting in %.1fs", type(exc).__name__, backoff)
            finally:
                self._listening = False
            self._stopping.wait(backoff)
            backoff = min(_MAX_BACKOFF, backoff * 2)
