"""The `authz` command: serve, import, migrate, policy tools, caller credentials, bench."""

from __future__ import annotations

import argparse
import json
import logging
import os
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
        _flag_environment(args),
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


# Settings with no flag of their own: secrets (argv is visible to every user of the host, in `ps`).
_NO_FLAG = frozenset({"page_token_key", "outbox_key"})


def _setting_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """A flag for every setting not given one by hand, named after it (`--grace-seconds` for
    AUTHZ_GRACE_SECONDS): the flag wins over the variable, and is read exactly as the variable is."""
    taken = {option for action in parser._actions for option in action.option_strings}
    for name, variable in Settings._ENV.items():
        flag = _setting_flag(name)
        if name in _NO_FLAG or flag in taken:
            continue
        parser.add_argument(flag, dest=f"setting_{name}", metavar="VALUE", help=f"({variable})")


def _flag_environment(args: argparse.Namespace) -> dict[str, str]:
    """The environment with the generated setting flags laid over it."""
    environ = dict(os.environ)
    for name, variable in Settings._ENV.items():
        value = getattr(args, f"setting_{name}", None)
        if value is not None:
            environ[variable] = value
    return environ


def _configure_logging(level: str, log_format: str = "text", *, with_pid: bool = False) -> None:
    from authz.server.logs import configure_logging

    configure_logging(level, log_format, with_pid=with_pid)


def cmd_serve(args: argparse.Namespace) -> int:
    from authz.engine.policy import PolicyLoadError
    from authz.server.app import AuthzApp, check_settings
    from authz.server.auth import require_callers_beyond_loopback
    from authz.server.logs import announce
    from authz.server.observability import Observability
    from authz.server.ports import claim_port
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
    # Before anything binds: a second server on this host and port stops here, with who holds it.
    claim = claim_port(settings.listen)
    store = open_store(settings)
    try:
        # One code path for one process or N: every check of the settings, before any fork.
        check_settings(settings, store)
        if args.demo:
            _import(store, DEMO_FILE, settings, report_path=None)
        if settings.processes > 1:
            from authz.server.supervisor import Supervisor

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
    listen = f"{settings.listen.rsplit(':', 1)[0]}:{app.port}"
    announce(f"authz serving on {listen}", listen=listen)
    if app.http is not None:
        http_listen = f"{settings.http_listen.rsplit(':', 1)[0]}:{app.http.port}"
        announce(f"authz serving HTTP/JSON on {http_listen}", http_listen=http_listen)
    stop.wait()
    app.drain_and_stop()
    if claim is not None:
        claim.release()
    log.info("stopped")
    return 0


def _import(store: Store, path: Path, settings: Settings, report_path: Path | None) -> int:
    from authz.commands.import_data import import_file
    from authz.engine.policy import Policy

    policy = Policy.load(settings.policy_dir)
    report = import_file(store, path, policy.subjects)
    summary = report.as_dict()
    accepted = ", ".join(f"{count} {name}" for name, count in report.accepted.items() if count) or "nothing new"
    from authz.server.logs import announce

    announce(f"imported {path.name}: {accepted}; {len(report.refused)} row(s) refused")
    if report_path is not None:
        report_path.write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        print(f"report: {report_path}")
    for refusal in report.refused[:20]:
        # Ids and reasons come from the input file: escaped, so no byte of it reaches the terminal as a control.
        shown = _printable(str(refusal["id"] or ""))
        print(f"  refused {refusal['section']}[{refusal['index']}] {shown}: {_printable(str(refusal['reason']))}")
    if len(report.refused) > 20:
        print(f"  … and {len(report.refused) - 20} more in the report")
    return len(report.refused)


def _printable(text: str) -> str:
    """`text` with control characters (terminal escape sequences among them) shown as escapes."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def cmd_import(args: argparse.Namespace) -> int:
    from authz.store.sql import open_store

    settings = _settings(args)
    _configure_logging("WARNING")
    if args.demo == bool(args.file):
        print("authz import: give a FILE, or --demo for the packaged demo data set", file=sys.stderr)
        return 2
    path = DEMO_FILE if args.demo else Path(args.file)
    if args.report:
        report_path = Path(args.report)
    elif args.demo:
        # The demo file sits inside the installed package: its report goes to the working folder.
        report_path = Path.cwd() / "demo.import-report.json"
    else:
        report_path = path.with_name(path.stem + ".import-report.json")
    store = open_store(settings)
    try:
        refused = _import(store, path, settings, report_path)
        if refused and not args.allow_refused:
            print(
                f"authz import: {refused} row(s) refused (see the report); --allow-refused accepts that",
                file=sys.stderr,
            )
            return 1
        return 0
    except ValueError as exc:
        print(f"authz import: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # The transaction was rolled back on the way out: say so rather than show a traceback.
        print("authz import: interrupted; nothing was imported", file=sys.stderr)
        return 130
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
    _add_setting_flags(serve)
    serve.set_defaults(func=cmd_serve)

    imp = sub.add_parser("import", help="import a JSON data set (the format of docs/IMPORT.md)")
    common(imp)
    imp.add_argument("file", nargs="?", help="the JSON data set (or --demo)")
    imp.add_argument("--demo", action="store_true", help="import the demo data set packaged with authz")
    imp.add_argument(
        "--report", help="where to write the report (default FILE.import-report.json beside FILE; --demo: ./)"
    )
    imp.add_argument(
        "--allow-refused", action="store_true", help="exit 0 even when rows were refused (default: exit 1)"
    )
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
        from authz.server.logs import announce

        announce(f"authz {args.command}: {exc}", level="ERROR", stream=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
