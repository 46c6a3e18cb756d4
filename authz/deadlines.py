"""The caller's deadline, carried from the gRPC edge down to the store without a gRPC import.

The server sets it around each call; the write envelope and the store read it so that a
write the caller has given up on stops before it commits, and no lock or statement waits
longer than the caller will.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["deadline_scope", "remaining"]

# Monotonic instant after which the caller no longer listens; None = no deadline.
_DEADLINE: ContextVar[float | None] = ContextVar("authz_deadline", default=None)


@contextmanager
def deadline_scope(seconds: float | None) -> Iterator[None]:
    """Run the block under a deadline `seconds` from now (None: no deadline)."""
    token = _DEADLINE.set(None if seconds is None else time.monotonic() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def remaining() -> float | None:
    """Seconds left before the caller's deadline (may be <= 0), or None when there is none."""
    deadline = _DEADLINE.get()
    return None if deadline is None else deadline - time.monotonic()
