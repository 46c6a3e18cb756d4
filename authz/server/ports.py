"""One server owns its port: a second `authz serve` on the same host and port refuses to start.

Worker processes share their port through SO_REUSEPORT, which would as gladly let a stray
second instance (same user) bind it too and take a share of the calls. Before anything
binds, `claim_port` takes an exclusive lock on a file named after host and port (held
until every process of this server has ended: the workers inherit it), then tries to bind
the port without SO_REUSEPORT, which fails while anyone at all listens there.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from authz.config import ConfigError

__all__ = ["PortClaim", "claim_port", "lock_path"]


@dataclass
class PortClaim:
    """The lock of one host:port; released when `release()` is called or every holder ends."""

    path: Path
    fd: int

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _split(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"cannot listen on {listen!r}: expected host:port")
    return host.strip("[]"), int(port)


def lock_path(listen: str, directory: Path | None = None) -> Path:
    host, port = _split(listen)
    safe_host = re.sub(r"[^A-Za-z0-9.-]", "_", host)
    return (directory or Path(tempfile.gettempdir())) / f"authz-{safe_host}-{port}.lock"


def claim_port(listen: str, directory: Path | None = None) -> PortClaim | None:
    """Lock `listen` for this server, or raise ConfigError naming who holds it; None for port 0 (a free one)
    or an address that is not host:port (a unix socket: its path is its own lock)."""
    host, _, port_text = listen.rpartition(":")
    if not host or not port_text.isdigit() or listen.startswith("unix:"):
        return None
    host, port = _split(listen)
    if port == 0:
        return None
    try:
        import fcntl
    except ImportError:  # not on Windows: the bind probe below still refuses a port in use
        fcntl = None  # type: ignore[assignment]
    path = lock_path(listen, directory)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ConfigError(
                f"{listen} is already served by another authz server (pid {holder}, lock {path}): "
                "stop it first, or give this one another --listen"
            ) from None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR so that connections of a server that just stopped (TIME_WAIT) do not count;
        # no SO_REUSEPORT, so that any listener on the port does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            os.close(fd)
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"{listen} is already in use by another process: stop it, or choose another --listen"
                ) from None
            raise ConfigError(f"cannot listen on {listen}: {exc.strerror}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return PortClaim(path, fd)
