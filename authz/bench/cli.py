"""The `authz bench` subcommand."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of sizes") from None
    if not sizes or min(sizes) < 100:
        raise argparse.ArgumentTypeError("sizes must be at least 100 relations")
    return sizes


def _replicas(args: argparse.Namespace) -> dict[str, Any] | None:
    """The replicas section (PostgreSQL): run alone with --replicas, skipped with --no-replicas."""
    from authz.bench.replicas import ReplicaBenchOptions, run_replicas_bench

    options = ReplicaBenchOptions(compare_with=Path(args.compare_with) if args.compare_with else None)
    if args.replica_size:
        options.relations = args.replica_size
    if args.quick:
        options.relations = 2_000
        options.lag_rounds = 20
        options.poll_lag_rounds = 4
        options.fresh_checks = 300
        options.behind_rounds = 10
        options.write_seconds = 1.0
        options.check_seconds = 2.0
    print("\nreplicas (PostgreSQL, real server processes):")
    try:
        return run_replicas_bench(options)
    except Exception as exc:  # no PostgreSQL here: the rest of the bench still counts
        print(f"replicas: not measured ({type(exc).__name__}: {exc})")
        return None


def cmd_bench(args: argparse.Namespace) -> int:
    logging.basicConfig(level="WARNING")
    if args.import_only:
        return _import_bench(args)
    from authz.bench.runner import BenchOptions, run_bench

    if args.lookups or args.large_lookups:
        return _lookups(args)
    if args.writes:
        _writes(args)
        return 0
    if args.beside:
        return _beside(args)
    if args.write_throughput:
        return _write_throughput(args)
    if args.replicas:
        replicas = _replicas(args)
        if replicas is not None and args.json:
            Path(args.json).write_text(json.dumps({"replicas": replicas}, indent=2) + "\n", encoding="utf-8")
        return 0 if replicas is not None else 1
    options = BenchOptions(
        json_path=Path(args.json) if args.json else None,
        seed=args.seed,
        server=not args.no_server,
        observability=not args.no_observability,
    )
    if args.quick:
        # A few seconds' worth: to see that everything runs, not to read figures.
        options.sizes = [2_000, 20_000]
        options.engine_checks = 10_000
        options.fast_checks = 500
        options.plain_checks = {2_000: 50, 20_000: 10}
        options.sequential_calls = 500
        options.concurrent_calls = 1_000
        options.batch_calls = 40
        options.grant_rounds = 5
    if args.sizes:
        options.sizes = args.sizes
    if args.workdir:
        options.workdir = Path(args.workdir)
    results: dict[str, Any] = run_bench(options)
    if not args.no_lookups:
        _lookups(args)
    if not args.no_writes:
        results["writes"] = _writes(args)
    if not args.no_replicas:
        results["replicas"] = _replicas(args)
        if options.json_path is not None:
            options.json_path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0 if all(bar["passed"] is not False for bar in results["bars"]) else 1


def _import_bench(args: argparse.Namespace) -> int:
    from authz.bench.import_bench import IMPORT_AIMS, run_import_bench

    sizes = args.sizes or ([2_000, 20_000] if args.quick else [200_000, 1_000_000])
    figures = run_import_bench(sizes, workdir=Path(args.workdir) if args.workdir else None, seed=args.seed)
    return 0 if all(f.meets(IMPORT_AIMS[f.relations]) for f in figures if f.relations in IMPORT_AIMS) else 1


def _writes(args: argparse.Namespace) -> dict[str, Any]:
    """The server's CPU per write, fresh and after a long history of the same key."""
    from authz.bench.writes import WriteBenchOptions, run_write_bench

    options = WriteBenchOptions(workdir=Path(args.workdir) / "writes" if args.workdir else None)
    if args.quick:
        options.history = 300
        options.measured = 50
    print("\nwrites (a real server process):")
    return run_write_bench(options)


def _write_throughput(args: argparse.Namespace) -> int:
    from authz.bench.write_throughput import WriteThroughputOptions, report_lines, run_write_throughput_bench

    options = WriteThroughputOptions(seed=args.seed)
    if args.quick:
        options.relations, options.seconds, options.writers = 2_000, 1.5, [1, 8]
    if args.replica_size:
        options.relations = args.replica_size
    try:
        results = run_write_throughput_bench(options)
    except Exception as exc:  # no PostgreSQL here
        print(f"write throughput: not measured ({type(exc).__name__}: {exc})")
        return 1
    for line in report_lines(results):
        print(line)
    if args.json:
        Path(args.json).with_name(Path(args.json).stem + "-writes.json").write_text(
            json.dumps(results, indent=2) + "\n", encoding="utf-8"
        )
    return 0


def _beside(args: argparse.Namespace) -> int:
    from authz.bench.beside import BesideOptions, run_beside_bench

    options = BesideOptions(seed=args.seed, profile=args.profile)
    if args.quick:
        options.relations, options.seconds, options.rounds = 5_000, 3.0, 1
        options.warm_writes, options.measured_writes = 50, 200
    if args.sizes:
        options.relations = args.sizes[0]
    if args.workdir:
        options.workdir = Path(args.workdir)
    results = run_beside_bench(options)
    if args.json:
        Path(args.json).with_name(Path(args.json).stem + "-beside.json").write_text(
            json.dumps(results, indent=2) + "\n", encoding="utf-8"
        )
    return 0


def _lookups(args: argparse.Namespace) -> int:
    from authz.bench.lookups import LookupBenchOptions, run_lookup_bench

    options = LookupBenchOptions(seed=args.seed)
    if args.json:
        options.json_path = Path(args.json).with_name(Path(args.json).stem + "-lookups.json")
    else:
        options.json_path = None
    if args.quick:
        options.sizes = [2_000, 20_000]
        options.lookups = 2_000
        options.per_candidate = 5
        options.pycasbin = {2_000: 2, 20_000: 1}
        options.large_holders, options.large_calls, options.large_server = 5_000, 200, False
    if args.sizes:
        options.sizes = args.sizes
    if args.workdir:
        options.workdir = Path(args.workdir)
    if args.large_lookups:  # the large organization alone
        options.sizes = []
    run_lookup_bench(options)
    return 0


def register(subparsers: Any) -> None:
    """Add `authz bench` to the `authz` command."""
    bench = subparsers.add_parser(
        "bench",
        help="generate data sets, then measure the check path (engine, pycasbin, gRPC) against the bar",
    )
    bench.add_argument("--sizes", type=_sizes, help="relations per data set (default 10000,100000,1000000)")
    bench.add_argument("--quick", action="store_true", help="small sizes and few calls: a smoke run")
    bench.add_argument("--json", default="bench-results.json", help="where to write the figures ('' for nowhere)")
    bench.add_argument("--no-server", action="store_true", help="engine and pycasbin only, no gRPC server")
    bench.add_argument(
        "--no-observability",
        action="store_true",
        help="measure the server once, without the second run with metrics and JSON logs on",
    )
    bench.add_argument("--workdir", help="keep the databases and server log in this folder")
    bench.add_argument("--seed", type=int, default=1, help="data generator seed")
    bench.add_argument("--replicas", action="store_true", help="only the replicas section (PostgreSQL)")
    bench.add_argument("--no-replicas", action="store_true", help="skip the replicas section")
    bench.add_argument("--replica-size", type=int, help="generated relations for the replicas section (default 20000)")
    bench.add_argument(
        "--compare-with", help="a checkout of the code before the change log: its write rate is measured too"
    )
    bench.add_argument(
        "--import",
        dest="import_only",
        action="store_true",
        help="measure `authz import` instead (time and peak memory of a child process; sizes default 200000,1000000)",
    )
    writes = bench.add_mutually_exclusive_group()
    writes.add_argument(
        "--writes",
        action="store_true",
        help="only the server's CPU per write, fresh and after 2,000 grant/revoke pairs on one key",
    )
    writes.add_argument("--no-writes", action="store_true", help="skip the write-cost section")
    bench.add_argument(
        "--beside",
        action="store_true",
        help="checks with writes beside them on the real server (100k relations, 32 in flight, 20 writes/s) and memory",
    )
    bench.add_argument(
        "--write-throughput",
        action="store_true",
        help="writes/s through one server and two on one PostgreSQL, 1, 8 and 32 writers",
    )
    bench.add_argument("--profile", action="store_true", help="with --beside: py-spy the server during one round")
    lookups = bench.add_mutually_exclusive_group()
    lookups.add_argument(
        "--lookups", action="store_true", help="the lookups' figures alone (LookupPrincipals, LookupOrganizations)"
    )
    lookups.add_argument("--no-lookups", action="store_true", help="the check path's figures alone")
    lookups.add_argument(
        "--large-lookups",
        action="store_true",
        help="lookups with small answers on an organization of 60,000 holders and a contact of 6,000 organizations",
    )
    bench.set_defaults(func=cmd_bench)
