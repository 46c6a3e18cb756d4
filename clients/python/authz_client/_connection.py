"""What the sync and async clients share about the connection: TLS, the retry policy, channel options."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import grpc

__all__ = ["CHANNEL_OPTIONS", "DEFAULT_RETRY", "RetryPolicy", "Tls", "channel_credentials"]

# A channel that lost its server tries to reconnect after 0.2 s, then backs off to at most 2 s
# (gRPC's own defaults: 1 s growing to 120 s, far longer than the calls retrying on top of it).
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
)


# A retry is not started with less than this left before the deadline: it could not finish.
_LAST_ATTEMPT_ROOM = 0.05


@dataclass(frozen=True)
class RetryPolicy:
    """How a call that failed with a retryable code is tried again.

    Reads are always retried; writes only when they carry a ``request_id`` (the server
    answers a repeated request id with the first answer, so a retry cannot write twice).
    Before attempt n+1 the client sleeps a random time between 0 and
    ``min(max_backoff, initial_backoff * multiplier ** (n - 1))`` seconds, as gRPC's own
    retry policy does. Every attempt shares the call's one deadline (``timeout``): no retry
    starts, and no pause runs, past it.

    ``max_attempts`` ``None`` (the default) retries until the deadline, so that a call rides
    out a server restart as long as its caller is willing to wait; a call with no deadline
    then stops after ``UNBOUNDED_ATTEMPTS``.
    """

    UNBOUNDED_ATTEMPTS: ClassVar[int] = 50

    max_attempts: int | None = None
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    multiplier: float = 2.0
    # CANCELLED too: a server that stops cancels the calls that reached it after its listener closed,
    # before it could answer them; only calls safe to repeat are retried at all.
    codes: frozenset[grpc.StatusCode] = field(
        default_factory=lambda: frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})
    )
    jitter: Callable[[float, float], float] = field(default=random.uniform, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_backoff < 0 or self.max_backoff < self.initial_backoff or self.multiplier < 1:
            raise ValueError("backoff: 0 <= initial_backoff <= max_backoff, multiplier >= 1")

    def gives_up_after(self, attempt: int, deadline: float | None) -> bool:
        """True when failed attempt number ``attempt`` is the last one."""
        limit = self.max_attempts
        if limit is None:
            limit = self.UNBOUNDED_ATTEMPTS if deadline is None else 1_000_000
        return attempt >= limit

    def pause_within(self, attempt: int, now: float, deadline: float | None) -> float | None:
        """The pause before the next attempt, shortened to leave room for it; None when none is left."""
        pause = self.pause(attempt)
        if deadline is None:
            return pause
        room = deadline - now - _LAST_ATTEMPT_ROOM
        if room <= 0:
            return None
        return min(pause, room)

    def pause(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1 for the first)."""
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return self.jitter(0.0, ceiling)


DEFAULT_RETRY = RetryPolicy()


def _pem(value: bytes | str | Path | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return Path(value).read_bytes()


@dataclass(frozen=True)
class Tls:
    """TLS to the server, with a client certificate for mutual TLS.

    Each of ``ca``, ``cert`` and ``key`` is PEM bytes or the path of a PEM file. Without
    ``ca`` the system's roots verify the server. ``server_name`` checks the server's
    certificate against another name than the target's host (e.g. when dialing an IP).
    """

    ca: bytes | str | Path | None = None
    cert: bytes | str | Path | None = None
    key: bytes | str | Path | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("a client certificate needs its key, and a key its certificate")

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=_pem(self.ca), private_key=_pem(self.key), certificate_chain=_pem(self.cert)
        )


def channel_credentials(
    tls: Tls | bool, credentials: grpc.ChannelCredentials | None
) -> tuple[grpc.ChannelCredentials | None, tuple[tuple[str, str | int], ...]]:
    """The credentials and options of a channel the client opens: insecure, TLS, or the caller's own."""
    options: tuple[tuple[str, str | int], ...] = CHANNEL_OPTIONS
    if credentials is not None:
        if tls:
            raise ValueError("give tls or credentials, not both")
        return credentials, options
    if tls is False:
        return None, options
    settings = Tls() if tls is True else tls
    if settings.server_name:
        options = (*options, ("grpc.ssl_target_name_override", settings.server_name))
    return settings.credentials(), options
