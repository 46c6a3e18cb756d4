"""What the edge knows about the call in progress, carried to the commands without a gRPC import.

The server sets it around each call: the caller's deadline, and the calling service's name
(from the callers file; empty on loopback without one). The write envelope and the store read
it: no lock or statement waits longer than the caller will, idempotency keys are scoped by
caller, and the audit names the service that asked.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = [
    "ACCOUNT_METADATA",
    "account_id",
    "account_required",
    "account_scope",
    "bounded_wait",
    "caller_name",
    "caller_scope",
    "deadline_scope",
    "remaining",
]

# Monotonic instant after which the caller no longer listens; None = no deadline.
_DEADLINE: ContextVar[float | None] = ContextVar("authz_deadline", default=None)
_CALLER: ContextVar[str] = ContextVar("authz_caller", default="")
# gRPC reports "no deadline" as a huge remaining time; past a day it is no deadline at all
# (a time.monotonic() + 1e300 would overflow the platform's time_t in Lock.acquire).
_NO_DEADLINE_BEYOND = 86_400.0


@contextmanager
def deadline_scope(seconds: float | None) -> Iterator[None]:
    """Run the block under a deadline `seconds` from now (None, or absurdly far: no deadline)."""
    if seconds is not None and seconds > _NO_DEADLINE_BEYOND:
        seconds = None
    token = _DEADLINE.set(None if seconds is None else time.monotonic() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def remaining() -> float | None:
    """Seconds left before the caller's deadline (may be <= 0), or None when there is none."""
    deadline = _DEADLINE.get()
    return None if deadline is None else deadline - time.monotonic()


def bounded_wait(seconds: float | None, bound: float) -> float:
    """How long a blocking wait may last: the caller's time left (never below 0), at most `bound`.

    No deadline (None, or gRPC's huge "time remaining") waits `bound`: every wait of the
    service has an end, and no timeout handed to a lock or an event can overflow.
    """
    if seconds is None or seconds != seconds or seconds > _NO_DEADLINE_BEYOND:  # None, NaN or "no deadline"
        return bound
    return max(min(seconds, bound), 0.0)


@contextmanager
def caller_scope(name: str) -> Iterator[None]:
    token = _CALLER.set(name)
    try:
        yield
    finally:
        _CALLER.reset(token)


def caller_name() -> str:
    """The calling service's name from the callers file, or "" when the server runs without one."""
    return _CALLER.get()


# -- the end-user account a caller names with a write, and whether its entry requires one.
# Metadata key of the account (a gRPC metadata key is lower-case ASCII).
ACCOUNT_METADATA = "x-authz-account"
_ACCOUNT: ContextVar[str] = ContextVar("authz_account", default="")
_ACCOUNT_REQUIRED: ContextVar[bool] = ContextVar("authz_account_required", default=False)


@contextmanager
def account_scope(account: str, *, required: bool) -> Iterator[None]:
    """Run the block for the end-user account the caller named ("" for none); `required`
    when the caller's entry says `require_account: true`."""
    token = _ACCOUNT.set(account)
    required_token = _ACCOUNT_REQUIRED.set(required)
    try:
        yield
    finally:
        _ACCOUNT_REQUIRED.reset(required_token)
        _ACCOUNT.reset(token)


def account_id() -> str:
    """The end-user account the caller named with this call (`x-authz-account`), or ""."""
    return _ACCOUNT.get()


def account_required() -> bool:
    """Whether this call's writes must name an account whose linked profiles include the actor."""
    return _ACCOUNT_REQUIRED.get()
