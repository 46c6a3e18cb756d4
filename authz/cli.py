"""The `authz` command: serve, import, migrate, policy tools, caller credentials, bench."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from authz.config import ConfigError, Settings

if TYPE_CHECKING:
    from authz.store.interface import Store

__all__ = ["main"]

log = logging.getLogger("authz")

DEMO_FILE = Path(__file__).resolve().parent / "demo" / "demo.json"


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        database_url=getattr(args, "database_url", None),
        listen=getattr(args, "listen", None),
        policy_dir=Path(args.policy_dir) if getattr(args, "policy_dir", None) else None,
        mail_url=getattr(args, "mail_url", None),
        callers_file=Path(args.callers_file) if getattr(args, "callers_file", None) else None,
        tls_cert=Path(args.tls_cert) if getattr(args, "tls_cert", None) else None,
        tls_key=Path(args.tls_key) if getattr(args, "tls_key", None) else None,
        tls_client_ca=Path(args.tls_client_ca) if getattr(args, "tls_client_ca", None) else None,
        processes=getattr(args, "processes", None),
    )


def _configure_logging(level: str, log_format: str = "text", *, with_pid: bool = False) -> None:
    from authz.server.logs import configure_logging

    configure_logging(level, log_format, with_pid=with_pid)


def cmd_serve(args: argparse.Namespace) -> int:
    from authz.engine.policy import PolicyLoadError
    from authz.server.app import AuthzApp
    from authz.server.auth import require_callers_beyond_loopback
    from authz.server.observability import Observability
    from authz.store.sql import open_store

    settings = _settings(args)
    try:
        _configure_logging(settings.log_level, settings.log_format, with_pid=settings.processes > 1)
        Observability.check_listen(settings.metrics_listen)
    except ValueError as exc:
        print(f"authz serve: {exc}", file=sys.stderr)
        return 2
    # Before anything is opened or imported: an open listener without callers never gets that far.
    require_callers_beyond_loopback(settings)
    log.info("settings: %s", settings.describe())
    store = open_store(settings)
    try:
        if args.demo:
            _import(store, DEMO_FILE, settings, report_path=None)
        if settings.processes > 1:
            from authz.replication.supervisor import Supervisor

            return Supervisor(settings, store).run()
        app = AuthzApp(settings, store=store)
    except PolicyLoadError as exc:
        # The same report as `authz policy validate`, rather than a traceback.
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print("authz serve: the policy folder is invalid; see `authz policy validate`", file=sys.stderr)
        store.close()
        return 2
    except BaseException:
        store.close()  # a store opened before the failure is closed
        raise
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: draining", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if hasattr(signal, "SIGHUP"):  # not on Windows
        # Only wakes the watcher thread: validation and the swap never run inside a signal handler.
        signal.signal(signal.SIGHUP, lambda _signum, _frame: app.policy_watcher.request_reload())
    app.start()
    print(f"authz serving on {settings.listen.rsplit(':', 1)[0]}:{app.port}", flush=True)
    stop.wait()
    app.stop()
    log.info("stopped")
    return 0


def _import(store: Store, path: Path, settings: Settings, report_path: Path | None) -> int:
    from authz.commands.import_data import import_file
    from authz.engine.policy import Policy

    policy = Policy.load(settings.policy_dir)
    report = import_file(store, path, policy.subjects)
    summary = report.as_dict()
    accepted = ", ".join(f"{count} {name}" for name, count in report.accepted.items() if count) or "nothing new"
    print(f"imported {path.name}: {accepted}; {len(report.refused)} row(s) refused")
    if report_path is not None:
        report_path.write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        print(f"report: {report_path}")
    for refusal in report.refused[:20]:
        print(f"  refused {refusal['section']}[{refusal['index']}] {refusal['id'] or ''}: {refusal['reason']}")
    if len(report.refused) > 20:
        print(f"  … and {len(report.refused) - 20} more in the report")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from authz.store.sql import open_store

    settings = _settings(args)
    _configure_logging("WARNING")
    path = Path(args.file)
    store = open_store(settings)
    try:
        report_path = Path(args.report) if args.report else path.with_name(path.stem + ".import-report.json")
        return _import(store, path, settings, report_path)
    except ValueError as exc:
        print(f"authz import: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()


def cmd_callers_hash_token(args: argparse.Namespace) -> int:
    import secrets

    from authz.server.auth import hash_token

    if args.generate:
        token = secrets.token_urlsafe(32)
        print(f"token:        {token}")
    else:
        token = sys.stdin.readline().strip()
        if not token:
            print("authz callers hash-token: give the token on stdin", file=sys.stderr)
            return 2
    print(f"token_sha256: {hash_token(token)}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from authz.config import redact_url
    from authz.store import migrate
    from authz.store.sql import make_engine

    settings = _settings(args)
    engine = make_engine(settings.database_url)
    before = migrate.current_revision(engine)
    migrate.upgrade(engine)
    print(f"{redact_url(settings.database_url)}: schema {before or '(empty)'} -> {migrate.current_revision(engine)}")
    engine.dispose()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="authz", description="Authorization service of the CCQ online services")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--database-url", help="SQLAlchemy URL (AUTHZ_DATABASE_URL; default sqlite:///authz.db)")
        p.add_argument("--policy-dir", help="policy folder (AUTHZ_POLICY_DIR; default the packaged one)")

    serve = sub.add_parser("serve", help="serve the gRPC API, health and reflection")
    common(serve)
    serve.add_argument("--listen", help="host:port (AUTHZ_LISTEN; default 127.0.0.1:50051)")
    serve.add_argument("--mail-url", help="file:///dir or smtp://host:port (AUTHZ_MAIL_URL)")
    serve.add_argument("--demo", action="store_true", help="import the demo data set first (idempotent)")
    serve.add_argument(
        "--processes", type=int, help="worker processes sharing the port, each following the store (AUTHZ_PROCESSES)"
    )
    serve.add_argument("--callers-file", help="calling services and their RPCs (AUTHZ_CALLERS_FILE)")
    serve.add_argument("--tls-cert", help="server certificate, PEM (AUTHZ_TLS_CERT)")
    serve.add_argument("--tls-key", help="server private key, PEM (AUTHZ_TLS_KEY)")
    serve.add_argument("--tls-client-ca", help="CA that signs caller certificates: mutual TLS (AUTHZ_TLS_CLIENT_CA)")
    serve.set_defaults(func=cmd_serve)

    imp = sub.add_parser("import", help="import a JSON data set (API.md's format)")
    common(imp)
    imp.add_argument("file")
    imp.add_argument("--report", help="where to write the report (default FILE.import-report.json)")
    imp.set_defaults(func=cmd_import)

    callers = sub.add_parser("callers", help="caller credentials for the callers file")
    callers_sub = callers.add_subparsers(dest="callers_command", required=True)
    hash_token = callers_sub.add_parser(
        "hash-token", help="read a token on stdin (never argv: shell history), print its token_sha256"
    )
    hash_token.add_argument("--generate", action="store_true", help="make a new random token; print it, then its hash")
    hash_token.set_defaults(func=cmd_callers_hash_token)

    mig = sub.add_parser("migrate", help="bring the database schema up to date")
    common(mig)
    mig.set_defaults(func=cmd_migrate)

    from authz.policytools.cli import register as register_policy

    register_policy(sub)
    from authz.bench.cli import register as register_bench

    register_bench(sub)
    from authz.loadtest.cli import register as register_loadtest

    register_loadtest(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"authz {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
