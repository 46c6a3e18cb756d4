"""The `authz bench` subcommand."""

from __future__ import annotations

import argparse
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


def cmd_bench(args: argparse.Namespace) -> int:
    from authz.bench.runner import BenchOptions, run_bench

    logging.basicConfig(level="WARNING")
    if args.lookups:
        return _lookups(args)
    options = BenchOptions(json_path=Path(args.json) if args.json else None, seed=args.seed, server=not args.no_server)
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
    return 0 if all(bar["passed"] for bar in results["bars"]) else 1


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
    if args.sizes:
        options.sizes = args.sizes
    if args.workdir:
        options.workdir = Path(args.workdir)
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
    bench.add_argument("--workdir", help="keep the databases and server log in this folder")
    bench.add_argument("--seed", type=int, default=1, help="data generator seed")
    lookups = bench.add_mutually_exclusive_group()
    lookups.add_argument(
        "--lookups", action="store_true", help="the lookups' figures alone (LookupPrincipals, LookupOrganizations)"
    )
    lookups.add_argument("--no-lookups", action="store_true", help="the check path's figures alone")
    bench.set_defaults(func=cmd_bench)
