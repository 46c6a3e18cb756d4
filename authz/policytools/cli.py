"""`authz policy validate | test | diff`: what a platform engineer runs before shipping an edit."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from authz.config import Settings
from authz.domain.dates import MONTREAL
from authz.engine.policy import Policy, default_policy_dir
from authz.engine.validation import ValidationReport, validate

__all__ = ["register"]

DEMO_FILE = Path(__file__).resolve().parent.parent / "demo" / "demo.json"


def register(subparsers: Any) -> None:
    """Adds `policy` and its three subcommands to the `authz` parser."""
    policy = subparsers.add_parser("policy", help="validate, test and diff the policy files")
    sub = policy.add_subparsers(dest="policy_command", required=True)

    folder_help = f"policy folder (default: ${_POLICY_DIR_ENV}, as the server does, else the packaged authz/policies)"
    val = sub.add_parser("validate", help="report every problem of a policy folder (file, line, why)")
    # The folder positionally, as `cerbos compile DIR` and `opa test DIR` take it; --policy-dir names it too.
    val.add_argument("folder", nargs="?", metavar="DIR", help="the policy folder (same as --policy-dir)")
    val.add_argument("--policy-dir", metavar="DIR", help=folder_help)
    val.add_argument("--strict", action="store_true", help="fail on warnings too")
    val.add_argument("--json", action="store_true", help="machine-readable output")
    val.add_argument(
        "--database",
        metavar="URL",
        help="SQLAlchemy URL of the server's database: also refuse removing a subject it still grants",
    )
    val.set_defaults(func=cmd_validate)

    test = sub.add_parser("test", help="run YAML policy test files through the server's engine")
    test.add_argument(
        "files",
        nargs="*",
        help="the policy folder DIR first (or --policy-dir), then test files (default DIR/tests/*.yaml)",
    )
    test.add_argument("--policy-dir", metavar="DIR", help=folder_help)
    test.add_argument("--coverage", action="store_true", help="print the whole role × subject × right table")
    test.add_argument("--min-coverage", type=float, default=0.0, help="fail below this coverage percentage")
    test.set_defaults(func=cmd_test)

    diff = sub.add_parser("diff", help="which decisions an edit flips, on real data")
    diff.add_argument("old", help="policy folder in production")
    diff.add_argument("new", help="edited policy folder")
    source = diff.add_mutually_exclusive_group()
    source.add_argument("--data", help="import-format JSON file (default: the demo data)")
    source.add_argument("--database", help="SQLAlchemy URL of a database to read the relations from")
    diff.add_argument(
        "--at", help="instant of the decisions: YYYY-MM-DD (noon, Montreal) or ISO date-time; default now"
    )
    diff.add_argument("--json", action="store_true", help="machine-readable output")
    diff.add_argument("--fail-on-change", action="store_true", help="exit 1 when any decision changes")
    diff.set_defaults(func=cmd_diff)


_POLICY_DIR_ENV = Settings._ENV["policy_dir"]


def policy_dir(given: str | None) -> tuple[Path, str]:
    """The folder to check and where it came from: --policy-dir, else the setting the server
    reads, else the packaged folder. Said out loud: checking another folder than the one
    served is the mistake this guards against."""
    if given:
        return Path(given), "--policy-dir"
    from_env = os.environ.get(_POLICY_DIR_ENV)
    if from_env:
        return Path(from_env), _POLICY_DIR_ENV
    return default_policy_dir(), "packaged"


def _print_report(report: ValidationReport) -> None:
    for problem in report.problems:
        print(problem)


def _checked(directory: str | None) -> Policy | None:
    """The policy if valid; otherwise its errors go to stderr."""
    report = validate(directory)
    if report.ok and report.policy is not None:
        return report.policy
    for problem in report.errors:
        print(problem, file=sys.stderr)
    print(f"{report.directory}: invalid policy, {len(report.errors)} error(s)", file=sys.stderr)
    return None


def _positional_folder(args: argparse.Namespace, given: str | None) -> str | None:
    """--policy-dir, else the folder given positionally; both at once must agree."""
    if given and args.policy_dir and Path(given) != Path(args.policy_dir):
        raise SystemExit(f"authz policy: two folders given ({given} and --policy-dir {args.policy_dir})")
    return args.policy_dir or given


def cmd_validate(args: argparse.Namespace) -> int:
    folder, source = policy_dir(_positional_folder(args, args.folder))
    live: dict[str, int] | None = None
    if args.database:
        from authz.store.sql import SqlStore

        database = SqlStore.from_url(args.database)
        try:
            live = database.live_grants()
        except Exception as exc:  # a wrong URL, an unreachable server, a database without the schema
            print(f"authz policy validate: cannot read the grants of {args.database}: {exc}", file=sys.stderr)
            return 2
        finally:
            database.close()
    report = validate(folder, live_grants=live)
    strict_failure = args.strict and bool(report.warnings)
    failed = bool(report.errors) or strict_failure
    if args.json:
        print(
            json.dumps(
                {
                    "directory": str(report.directory),
                    "source": source,
                    "policy_hash": report.content_hash,
                    "ok": not failed,
                    "problems": [
                        {"file": p.file, "line": p.line, "severity": p.severity, "message": p.message}
                        for p in report.problems
                    ],
                },
                indent=2,
            )
        )
        return 1 if failed else 0
    _print_report(report)
    errors, warnings = len(report.errors), len(report.warnings)
    where = f"{report.directory} ({source})"
    if report.policy is not None and not failed:
        policy = report.policy
        managers = ", ".join(role.value for role in policy.managing_roles())
        retired = f", {len(policy.retired)} retired" if policy.retired else ""
        against = f"; checked against the grants of {args.database}" if args.database else ""
        print(
            f"{where}: valid (policy hash {report.content_hash}); {len(policy.subjects)} subjects{retired}; "
            f"managed by: {managers}; {errors} error(s), {warnings} warning(s){against}"
        )
    elif strict_failure and not report.errors:
        print(f"{where}: INVALID under --strict: {warnings} warning(s) count as errors")
    else:
        print(f"{where}: INVALID; {errors} error(s), {warnings} warning(s)")
    return 1 if failed else 0


def cmd_test(args: argparse.Namespace) -> int:
    from authz.policytools.testing import TestFileError, run_files

    # `authz policy test DIR [FILES...]`: a first argument that is a folder is the policy folder.
    positional = args.files[0] if args.files and Path(args.files[0]).is_dir() else None
    if positional is not None:
        args.files = args.files[1:]
    directory, source = policy_dir(_positional_folder(args, positional))
    print(f"policy folder: {directory} ({source})")
    policy = _checked(str(directory))
    if policy is None:
        return 2
    files = [Path(f) for f in args.files] or sorted((directory / "tests").glob("*.yaml"))
    if not files:
        print(f"no test files (looked for {directory / 'tests'}/*.yaml)", file=sys.stderr)
        return 2
    try:
        run = run_files(files, policy)
    except TestFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for result in run.failures:
        case = result.case
        why = f" [{case.why}]" if case.why else ""
        print(f"FAIL {case.file}:{case.line} {case.kind}: {case.describe()}{why}\n     {result.message}")
    passed = len(run.results) - len(run.failures)
    print(
        f"{len(run.files)} file(s), {len(run.results)} check(s): {passed} passed, {len(run.failures)} failed "
        f"(policy hash {policy.content_hash})"
    )
    if args.coverage:
        print(run.coverage.table())
    print(run.coverage.summary())
    missing = run.coverage.missing()
    if missing and not args.coverage:
        shown = ", ".join(f"{role.value}/{subject}/{right.code}" for role, subject, right in missing[:12])
        print(f"  not exercised: {shown}{' …' if len(missing) > 12 else ''}")
    if run.failures:
        return 1
    if run.coverage.percent() < args.min_coverage:
        print(f"coverage below --min-coverage {args.min_coverage:g}%", file=sys.stderr)
        return 1
    return 0


def _instant(text: str | None) -> datetime:
    if not text:
        return datetime.now(UTC)
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), time(12), MONTREAL)
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=MONTREAL)


def cmd_diff(args: argparse.Namespace) -> int:
    from authz.policytools.diff import diff_policies, load_relations

    old, new = _checked(args.old), _checked(args.new)
    if old is None or new is None:
        return 2
    try:
        at = _instant(args.at)
        data = Path(args.data) if args.data else (None if args.database else DEMO_FILE)
        relations = load_relations(data, args.database, [*old.subjects, *new.subjects])
    except ValueError as exc:
        print(f"authz policy diff: {exc}", file=sys.stderr)
        return 2
    report = diff_policies(old, new, relations, at)
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        source = args.database or str(data)
        print(
            f"policy {report.old_hash} -> {report.new_hash} on {source} at {at.isoformat(timespec='seconds')}: "
            f"{report.pairs} contact/organization pairs, {report.decisions} decisions"
        )
        if not report.groups:
            print("no decision changes")
        for group in report.groups:
            print(f"  {group.sentence()}")
        if report.changed_contacts:
            print(f"{len(report.changed_contacts)} contact(s) affected: {', '.join(report.changed_contacts)}")
        if report.changed_organizations:
            print(
                f"{len(report.changed_organizations)} organization(s) affected: "
                f"{', '.join(report.changed_organizations)}"
            )
    return 1 if args.fail_on_change and report.groups else 0
