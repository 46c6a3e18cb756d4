"""Watch: the change log as a stream, for caches and auditors downstream.

One item per committed write, in commit order, exactly once from the cursor on (the log is
dense and read by revision, so a resumed stream neither skips nor repeats); a checkpoint
when nothing committed for a while. Memory is bounded per stream (one page of the log),
and a consumer that stops reading is cut off after `watch_send_timeout_seconds` instead
of holding a worker thread and a page forever. Streams are counted: each holds one of the
server's worker threads, so at most `max_watchers` run at once per calling service and
`max_watchers_total` in all, per process. A stream may be limited to some organizations.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from authz.config import Settings
from authz.errors import FailedPrecondition, FieldViolation, InvalidArgument, ResourceExhausted
from authz.replication.follower import Follower
from authz.store.changes import Change
from authz.store.interface import Store

__all__ = ["Checkpoint", "WatchChanges", "touches"]

log = logging.getLogger("authz.watch")

PAGE = 200
_EXPIRED = (
    "after_revision is older than the change log keeps (retention), or from before it existed: "
    "read the current state, then watch from its revision"
)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Nothing new: everything up to `revision` was sent."""

    revision: int


def touches(change: Change, organizations: frozenset[str] | None) -> bool:
    """Whether a change concerns one of `organizations` (None: every organization). A change too
    large to list (a bulk import, which asks followers to reload) concerns every one."""
    if organizations is None or change.relations is None:
        return True
    return any(
        relation.organization_id in organizations
        or relation.grantee_organization_id in organizations
        or relation.via_organization_id in organizations
        for relation in change.relations
    )


@dataclass
class _Stream:
    cancel: Callable[[], None]
    caller: str = ""
    waiting_since: float | None = None  # when the consumer was handed an item it has not taken yet


class WatchChanges:
    def __init__(self, store: Store, follower: Follower, settings: Settings) -> None:
        self.store = store
        self.follower = follower
        self.settings = settings
        self._streams: dict[int, _Stream] = {}
        self._lock = threading.Lock()
        self._watchdog: threading.Thread | None = None

    def stream(
        self,
        after: int | None,
        is_active: Callable[[], bool],
        cancel: Callable[[], None],
        organizations: frozenset[str] | None = None,
        caller: str = "",
    ) -> Iterator[Change | Checkpoint]:
        """Changes after revision `after` (None: from the store's revision now), then as they commit;
        only those touching `organizations` when given (the cursor moves past the others)."""
        me = _Stream(cancel, caller)
        with self._lock:
            # Per calling service, so one caller cannot hold every slot; and a total, since each
            # stream holds one of the server's worker threads.
            mine = sum(1 for s in self._streams.values() if s.caller == caller)
            if mine >= self.settings.max_watchers:
                raise ResourceExhausted(
                    f"at most {self.settings.max_watchers} Watch streams at once per caller on a process",
                    reason="WATCH_LIMIT_PER_CALLER",
                )
            if len(self._streams) >= self.settings.max_watchers_total:
                raise ResourceExhausted(
                    f"at most {self.settings.max_watchers_total} Watch streams at once on a process",
                    reason="WATCH_LIMIT",
                )
            self._streams[id(me)] = me
            self._start_watchdog()
        try:
            newest = self.store.revision()
            if after is not None and after > newest:
                raise InvalidArgument(
                    "after_revision is beyond the store's newest revision",
                    [FieldViolation("after_revision", "this store has not committed that revision")],
                )
            cursor = newest if after is None else after
            last_sent = time.monotonic()
            while is_active() and not self.follower.stopping:
                page = self.store.changes_after(cursor, PAGE)
                if page.expired:
                    raise FailedPrecondition(_EXPIRED, reason="CURSOR_EXPIRED")
                for change in page.changes:
                    if touches(change, organizations):
                        me.waiting_since = time.monotonic()
                        yield change
                        me.waiting_since = None
                    cursor = change.revision
                if page.changes:
                    last_sent = time.monotonic()
                    continue
                idle = time.monotonic() - last_sent
                if idle >= self.settings.watch_checkpoint_seconds:
                    me.waiting_since = time.monotonic()
                    yield Checkpoint(cursor)
                    me.waiting_since = None
                    last_sent = time.monotonic()
                    continue
                # Woken by the follower as soon as it hears of a newer revision (NOTIFY or its poll).
                self.follower.wait_newer(cursor, min(1.0, self.settings.watch_checkpoint_seconds - idle))
        finally:
            with self._lock:
                self._streams.pop(id(me), None)

    def _start_watchdog(self) -> None:
        if self._watchdog is None or not self._watchdog.is_alive():
            self._watchdog = threading.Thread(target=self._watch_consumers, name="authz-watch-dog", daemon=True)
            self._watchdog.start()

    def _watch_consumers(self) -> None:
        """Cut off a stream whose consumer has not taken its last item for too long (flow control
        holds the send: the server buffers one message, the consumer's window fills, and then
        nothing moves)."""
        limit = self.settings.watch_send_timeout_seconds
        while True:
            time.sleep(min(1.0, limit / 4))
            now = time.monotonic()
            with self._lock:
                if not self._streams:
                    self._watchdog = None
                    return
                stuck = [
                    s for s in self._streams.values() if s.waiting_since is not None and now - s.waiting_since > limit
                ]
            for stream in stuck:
                log.warning("Watch consumer read nothing for %.0fs: disconnected", limit)
                stream.waiting_since = None
                stream.cancel()
