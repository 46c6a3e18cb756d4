"""The newest revision any worker process of one server acknowledged, in shared memory.

`authz serve --processes N` forks N workers that each hold an index of their own, fed by
their follower. Without more, a caller whose revoke one worker acknowledged could ask
another worker a moment later and get the old answer. The supervisor therefore makes one
64-bit counter in anonymous shared memory before it forks: a write raises it to its
revision after commit and before it answers; a read compares it with its own engine's
revision (one aligned load, tens of nanoseconds) and, when behind, catches up from the
change log before answering, within a bounded wait (UNAVAILABLE past it, never an older
answer). A single process has no siblings and makes no counter: no cost at all.

Across hosts, revision tokens remain the answer (`at_least_as_fresh`).
"""

from __future__ import annotations

import ctypes
import multiprocessing
from collections.abc import Callable
from multiprocessing.sharedctypes import RawValue
from typing import Any

__all__ = ["SiblingRevision"]


class SiblingRevision:
    """One counter shared by the processes forked after it was made; only ever raised."""

    def __init__(self) -> None:
        # Created before fork: every worker maps the same page. Aligned int64 loads and stores are
        # single instructions on the platforms served (x86-64, arm64), so a reader never sees half a value.
        self._value: Any = RawValue(ctypes.c_int64, 0)
        # Raising is read-compare-write: writers of two processes serialise on this lock (writes are rare).
        self._lock = multiprocessing.get_context("fork").Lock()

    @property
    def revision(self) -> int:
        return int(self._value.value)

    def publish(self, revision: int) -> None:
        """After a commit: no sibling answers from a revision older than this one from now on."""
        if self._value.value >= revision:
            return
        with self._lock:
            if self._value.value < revision:
                self._value.value = revision

    def reader(self, current: Callable[[], int], catch_up: Callable[[int, float], None]) -> Callable[[float], None]:
        """What a read calls first: `current()` is its engine's revision, `catch_up(target, timeout)` applies the log."""
        value = self._value

        def ensure(timeout: float) -> None:
            target = value.value
            if target > current():
                catch_up(target, timeout)

        return ensure
