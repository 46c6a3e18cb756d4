"""Log output: plain text for a terminal, or one JSON object per line (AUTHZ_LOG_FORMAT=json).

A JSON line holds `time` (UTC, ISO 8601), `level`, `logger` and `message`, then any
structured fields the record carries (the access log adds `method`, `caller`, `status`,
`duration_ms` and `request_id`), and `exception` with the traceback when there is one, so a
multi-line traceback is still one line. Warnings and uncaught exceptions of any thread go
through logging too, so nothing the server writes to stderr escapes the format. No code
here looks at request bodies: what is logged is what callers of `log.*` pass, and they
never pass link codes or passwords (tests/integration/test_observability.py greps for them).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TextIO

__all__ = ["LOG_FORMATS", "JsonFormatter", "announce", "configure_logging"]

LOG_FORMATS = ("text", "json")
_format = {"current": "text"}  # what configure_logging set: announce() writes its line the same way
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# The attributes every LogRecord has: anything else on a record was passed with `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            # Several worker processes write to one output: every line says which one.
            "pid": record.process,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure_logging(
    level: str, log_format: str = "text", stream: TextIO | None = None, *, with_pid: bool = False
) -> None:
    """Set the root logger up once for the process: `text` (the default) or `json`.

    `with_pid`: several worker processes write to one output, so text lines name their process.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"AUTHZ_LOG_FORMAT={log_format!r}: expected one of {', '.join(LOG_FORMATS)}")
    _format["current"] = log_format
    handler = logging.StreamHandler(stream or sys.stderr)
    text_format = TEXT_FORMAT.replace("%(levelname)s", "%(levelname)s [%(process)d]") if with_pid else TEXT_FORMAT
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(text_format))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    if log_format == "json":
        # Python's own stderr writers, turned into records so that they come out as JSON as well.
        logging.captureWarnings(True)
        crashes = logging.getLogger("authz.crash")

        def on_exception(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
            crashes.critical("uncaught %s", kind.__name__, exc_info=(kind, error, tb))

        def on_thread_exception(args: threading.ExceptHookArgs) -> None:
            if args.exc_type is SystemExit:
                return
            crashes.error(
                "uncaught %s in thread %s",
                args.exc_type.__name__,
                args.thread.name if args.thread else "?",
                exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback),
            )

        sys.excepthook = on_exception
        threading.excepthook = on_thread_exception


def announce(message: str, *, level: str = "INFO", stream: TextIO | None = None, **fields: Any) -> None:
    """The one line `authz serve` prints on stdout once it answers ("authz serving on ..."),
    in the log format: a JSON object (with the pid) under AUTHZ_LOG_FORMAT=json, plain text otherwise."""
    if _format["current"] == "json":
        line = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "level": level,
            "logger": "authz",
            "message": message,
            "pid": os.getpid(),
            **fields,
        }
        print(json.dumps(line, ensure_ascii=False, default=str), file=stream or sys.stdout, flush=True)
    else:
        print(message, file=stream or sys.stdout, flush=True)
