"""One typed settings object: defaults in one place, AUTHZ_* variables, secrets redacted."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

__all__ = ["ConfigError", "Settings", "redact_url"]

DEFAULT_DATABASE_FILE = "authz.db"
_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


class ConfigError(Exception):
    """The settings cannot work (a bad value, a missing file, a schema to migrate).

    Library code raises it; `authz/cli.py` prints it and exits with code 2.
    """


def redact_url(url: str) -> str:
    """The URL with any password replaced, for logs and errors."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class Settings:
    database_url: str = f"sqlite:///{DEFAULT_DATABASE_FILE}"
    listen: str = "127.0.0.1:50051"
    policy_dir: Path | None = None  # None = the packaged authz/policies
    mail_url: str | None = None  # None = an outbox/ folder beside the database
    link_code_ttl_seconds: int = 24 * 3600
    max_workers: int = 16
    max_batch_checks: int = 1000
    max_page_size: int = 1000
    default_page_size: int = 100
    max_message_bytes: int = 1024 * 1024
    grace_seconds: float = 10.0
    # How long a write without a deadline may wait for the write lock before UNAVAILABLE.
    write_wait_seconds: float = 30.0
    # How long a read asking for fresher state than this process holds (fully_consistent, or a
    # token ahead of it) may wait to catch up, when its caller set no shorter deadline: then UNAVAILABLE.
    read_wait_seconds: float = 10.0
    mail_interval_seconds: float = 1.0
    log_level: str = "INFO"
    # Caller credentials and TLS (see authz/server/auth.py): no callers file is allowed on loopback only.
    callers_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # set: every caller must present a certificate this CA signed
    # Secrets, never in repr or describe(). Page tokens are signed with this key; unset,
    # a key kept in the database serves every server of the deployment (authz/commands/paging.py).
    page_token_key: str | None = field(default=None, repr=False)
    # The outbox keeps link-code emails encrypted with this Fernet key (authz/store/outbox.py OutboxCipher);
    # unset: read from `outbox_key_file`, or from a file beside an SQLite database; required on PostgreSQL.
    outbox_key: str | None = field(default=None, repr=False)
    outbox_key_file: Path | None = None
    # Observability (see authz/server/observability.py and logs.py).
    metrics_listen: str = ""  # host:port of /metrics; empty = no listener
    # host:port of the HTTP/JSON face (the Connect protocol, authz/server/connect.py); empty = off.
    http_listen: str = ""
    log_format: str = "text"  # text | json
    # Replicas (authz/replication/)
    processes: int = 1  # worker processes sharing the port (SO_REUSEPORT)
    follow_notify: bool = True  # PostgreSQL LISTEN/NOTIFY wakes the follower (a hint; polling is the guarantee)
    follow_poll_seconds: float = 1.0  # the follower reads the change log at least this often
    change_log_retention_seconds: int = 24 * 3600
    watch_checkpoint_seconds: float = 5.0  # an idle Watch stream gets a checkpoint this often
    watch_send_timeout_seconds: float = 10.0  # a Watch consumer that reads nothing for this long is cut off
    max_watchers: int = 4  # Watch streams at once per calling service, per process (each holds a worker thread)
    # Legacy password checks (PBKDF2, 600,000 rounds) running at once per process; the excess is
    # refused at once (RESOURCE_EXHAUSTED), so hashing never holds more than this many worker threads.
    max_concurrent_hashing: int = 2
    # Calls in progress at once per process (gRPC answers RESOURCE_EXHAUSTED past it); 0 = no limit.
    max_concurrent_rpcs: int = 1024
    max_watchers_total: int = 8  # Watch streams at once per process, all callers together
    # Operations: draining, sibling processes, mail retries.
    # After SIGTERM, health answers NOT_SERVING while calls are still answered for this long, so that
    # balancers and clients move away before the listener closes; then in-flight calls get grace_seconds.
    shutdown_grace_seconds: float = 2.0
    # A read waits at most this long for its process to apply a write a sibling process acknowledged.
    sibling_wait_seconds: float = 2.0
    mail_retry_initial_seconds: float = 1.0  # first pause after a failed send; doubles each time
    mail_retry_max_seconds: float = 300.0  # the pause never grows beyond this
    mail_give_up_seconds: int = 24 * 3600  # mail other than a link code is retried this long

    _ENV: ClassVar[dict[str, str]] = {
        "database_url": "AUTHZ_DATABASE_URL",
        "listen": "AUTHZ_LISTEN",
        "policy_dir": "AUTHZ_POLICY_DIR",
        "mail_url": "AUTHZ_MAIL_URL",
        "link_code_ttl_seconds": "AUTHZ_LINK_CODE_TTL_SECONDS",
        "max_workers": "AUTHZ_MAX_WORKERS",
        "max_batch_checks": "AUTHZ_MAX_BATCH_CHECKS",
        "grace_seconds": "AUTHZ_GRACE_SECONDS",
        "write_wait_seconds": "AUTHZ_WRITE_WAIT_SECONDS",
        "read_wait_seconds": "AUTHZ_READ_WAIT_SECONDS",
        "mail_interval_seconds": "AUTHZ_MAIL_INTERVAL_SECONDS",
        "log_level": "AUTHZ_LOG_LEVEL",
        "callers_file": "AUTHZ_CALLERS_FILE",
        "tls_cert": "AUTHZ_TLS_CERT",
        "tls_key": "AUTHZ_TLS_KEY",
        "tls_client_ca": "AUTHZ_TLS_CLIENT_CA",
        "page_token_key": "AUTHZ_PAGE_TOKEN_KEY",
        "outbox_key": "AUTHZ_OUTBOX_KEY",
        "outbox_key_file": "AUTHZ_OUTBOX_KEY_FILE",
        "metrics_listen": "AUTHZ_METRICS_LISTEN",
        "http_listen": "AUTHZ_HTTP_LISTEN",
        "log_format": "AUTHZ_LOG_FORMAT",
        "processes": "AUTHZ_PROCESSES",
        "follow_notify": "AUTHZ_FOLLOW_NOTIFY",
        "follow_poll_seconds": "AUTHZ_FOLLOW_POLL_SECONDS",
        "change_log_retention_seconds": "AUTHZ_CHANGE_LOG_RETENTION_SECONDS",
        "watch_checkpoint_seconds": "AUTHZ_WATCH_CHECKPOINT_SECONDS",
        "watch_send_timeout_seconds": "AUTHZ_WATCH_SEND_TIMEOUT_SECONDS",
        "max_watchers": "AUTHZ_MAX_WATCHERS",
        "max_watchers_total": "AUTHZ_MAX_WATCHERS_TOTAL",
        "max_concurrent_hashing": "AUTHZ_MAX_CONCURRENT_HASHING",
        "max_concurrent_rpcs": "AUTHZ_MAX_CONCURRENT_RPCS",
        "shutdown_grace_seconds": "AUTHZ_SHUTDOWN_GRACE_SECONDS",
        "sibling_wait_seconds": "AUTHZ_SIBLING_WAIT_SECONDS",
        "mail_retry_initial_seconds": "AUTHZ_MAIL_RETRY_INITIAL_SECONDS",
        "mail_retry_max_seconds": "AUTHZ_MAIL_RETRY_MAX_SECONDS",
        "mail_give_up_seconds": "AUTHZ_MAIL_GIVE_UP_SECONDS",
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        types = {f.name: f.type for f in fields(cls)}
        for name, variable in cls._ENV.items():
            raw = env.get(variable)
            if raw is None or raw == "":
                continue
            kind = types[name]
            try:
                if kind == "int":
                    values[name] = int(raw)
                elif kind == "float":
                    values[name] = float(raw)
                elif kind == "Path | None":
                    values[name] = Path(raw)
                elif kind == "bool":
                    if raw.lower() not in _BOOLEANS:
                        raise ValueError(raw)
                    values[name] = _BOOLEANS[raw.lower()]
                else:
                    values[name] = raw
            except ValueError as exc:
                raise ConfigError(f"{variable}={raw!r} is not a valid {kind}") from exc
        values.update({key: value for key, value in overrides.items() if value is not None})
        settings = cls(**values)
        if settings.processes < 1:
            raise ConfigError(f"AUTHZ_PROCESSES={settings.processes}: at least 1")
        if settings.max_concurrent_hashing < 1 or settings.max_concurrent_hashing >= settings.max_workers:
            raise ConfigError(
                "AUTHZ_MAX_CONCURRENT_HASHING must be at least 1 and below AUTHZ_MAX_WORKERS "
                "(hashing must leave worker threads for checks and health)"
            )
        if settings.follow_poll_seconds <= 0:
            raise ConfigError("AUTHZ_FOLLOW_POLL_SECONDS must be positive")
        return settings

    def with_overrides(self, **overrides: Any) -> Settings:
        return replace(self, **{key: value for key, value in overrides.items() if value is not None})

    @property
    def outbox_dir(self) -> Path:
        """Where .eml files go by default: an outbox/ folder beside the SQLite file."""
        if self.database_url.startswith("sqlite:///") and not self.database_url.endswith(":memory:"):
            return Path(self.database_url.removeprefix("sqlite:///")).resolve().parent / "outbox"
        return Path.cwd() / "outbox"

    def describe(self) -> dict[str, str]:
        """Settings as safe to log: passwords in URLs redacted."""
        return {
            "database_url": redact_url(self.database_url),
            "listen": self.listen,
            "policy_dir": str(self.policy_dir or "(packaged)"),
            "mail_url": redact_url(self.mail_url) if self.mail_url else f"file://{self.outbox_dir}",
            "link_code_ttl_seconds": str(self.link_code_ttl_seconds),
            "max_workers": str(self.max_workers),
            "processes": str(self.processes),
            "follow": f"{'notify+' if self.follow_notify else ''}poll every {self.follow_poll_seconds}s",
            # Paths only: the callers file holds token hashes, and the key file is never read here.
            "callers_file": str(self.callers_file or "(none: loopback only)"),
            "tls": "off" if self.tls_cert is None else ("mutual" if self.tls_client_ca else "server"),
            # Where the keys come from, never the keys.
            "outbox_key": "AUTHZ_OUTBOX_KEY"
            if self.outbox_key
            else str(self.outbox_key_file or "(a file beside the SQLite database)"),
            "page_token_key": "AUTHZ_PAGE_TOKEN_KEY" if self.page_token_key else "(kept in the database)",
            "metrics_listen": self.metrics_listen or "(off)",
            "http_listen": self.http_listen or "(off)",
        }
