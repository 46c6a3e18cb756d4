"""`authz loadtest`: load a running deployment with a mix of calls and report its latencies.

    authz loadtest --target authz:50051 --token-file token --tls \\
        --rate 2000 --duration 60 --mix check=90,batch=5,lookup=5 \\
        --actor C-PR --organizations ORG-SQC,ORG-ASSOC --json out.json

Two models, as load tools have them: `--rate` is an open model (calls arrive on a schedule,
whatever the server's answers, as users do: latency then includes the server's queues), and
`--concurrency` a closed model (N calls in flight, each starting when one ends: it measures
capacity). The ids asked about are a sample of the deployment's own (ListContacts on the
organizations given, as `--actor`) or of an import file (`--ids-from`). One process sends at
most a few thousand calls a second (Python); `--processes N` splits the load, and the report
says when the generator, not the server, was the limit.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import queue
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from authz.loadtest import KINDS
from authz.loadtest.histogram import Histogram

if TYPE_CHECKING:  # gRPC and the parser are imported when a run starts, not by every `authz` command
    from authz.loadtest.ids import IdSample
    from authz.loadtest.worker import WorkerSpec

__all__ = ["register", "summarize"]

# The generator is the limit when one of its processes spends this share of a core or more, or
# sends its calls this late against the schedule (open model).
_CPU_LIMIT = 0.9
_LATENESS_LIMIT_MS = 5.0


def _mix(text: str) -> dict[str, int]:
    mix: dict[str, int] = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        name = name.strip()
        if name not in KINDS:
            raise argparse.ArgumentTypeError(f"{name!r} is not one of {', '.join(KINDS)}")
        try:
            mix[name] = int(weight)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r}: the weight must be a whole number") from None
        if mix[name] < 0:
            raise argparse.ArgumentTypeError(f"{part!r}: the weight must not be negative")
    if not sum(mix.values()):
        raise argparse.ArgumentTypeError("the mix must give some calls a weight")
    return mix


def _worker_main(spec: WorkerSpec, channel: Any) -> None:
    from authz.loadtest.worker import run_worker

    try:
        run_worker(spec, channel.put)
    except Exception as exc:  # the parent reports it and stops waiting for this process
        channel.put({"index": spec.index, "final": True, "crashed": f"{type(exc).__name__}: {exc}"})


def _ids(args: argparse.Namespace, base: WorkerSpec) -> IdSample:
    from authz.loadtest.ids import ApiReader, sample_from_api, sample_from_file
    from authz.loadtest.worker import metadata_of, open_channel

    if args.ids_from:
        sample = sample_from_file(Path(args.ids_from), args.sample, seed=args.seed)
        if args.subjects:
            sample.subjects = args.subjects.split(",")
        return sample
    if not args.organizations or not args.actor:
        raise SystemExit(
            "authz loadtest: give --ids-from FILE, or --organizations with --actor (ids read through the API)"
        )
    channel = open_channel(base)
    try:
        reader = ApiReader(channel, metadata_of(base.token), base.timeout)
        subjects = args.subjects.split(",") if args.subjects else _default_subjects()
        return sample_from_api(reader, args.actor, args.organizations.split(","), args.sample, subjects, seed=args.seed)
    finally:
        channel.close()


def _default_subjects() -> list[str]:
    from authz.engine.policy import Policy

    return sorted(Policy.load().subjects)


def summarize(finals: list[dict[str, Any]], args: dict[str, Any]) -> dict[str, Any]:
    """The run's figures from the processes' final reports: by kind, all together, and the generator's verdict."""
    kinds: dict[str, Any] = {}
    everything = Histogram()
    errors_by_code: dict[str, int] = {}
    wall = max((f["wall_s"] for f in finals), default=0.0) or 1e-9
    for kind in KINDS:
        merged = Histogram()
        errors: dict[str, int] = {}
        for final in finals:
            merged.merge(Histogram.from_dict(final["latency"][kind]))
            for code, count in final["errors"][kind].items():
                errors[code] = errors.get(code, 0) + count
        if not merged.count:
            continue
        everything.merge(merged)
        for code, count in errors.items():
            errors_by_code[code] = errors_by_code.get(code, 0) + count
        kinds[kind] = {
            "calls": merged.count,
            "per_second": merged.count / wall,
            "latency_ms": merged.summary_ms(),
            "errors": errors,
        }
    lateness = Histogram()
    for final in finals:
        lateness.merge(Histogram.from_dict(final["lateness"]))
    cpu = [f["cpu_s"] / max(f["wall_s"], 1e-9) for f in finals]
    sent = sum(f["sent"] for f in finals)
    dropped = sum(f["dropped"] for f in finals)
    reasons = []
    if cpu and max(cpu) >= _CPU_LIMIT:
        reasons.append(f"a generator process used {max(cpu):.0%} of a core")
    lateness_p99 = lateness.percentile(0.99) / 1000
    rate = args.get("rate") or 0
    if rate:
        if lateness_p99 > _LATENESS_LIMIT_MS:
            reasons.append(f"calls were sent up to {lateness_p99:.1f} ms late against the schedule (p99)")
        if (sent + dropped) < 0.95 * rate * args["duration"]:
            reasons.append(f"{sent + dropped:,} calls scheduled of {rate * args['duration']:,.0f}")
    generator = {
        "processes": len(finals),
        "cpu_per_process": [round(c, 3) for c in cpu],
        "lateness_p99_ms": round(lateness_p99, 3),
        "dropped_in_flight_cap": dropped,
        "limited": bool(reasons),
        "reasons": reasons,
        "load_average": list(os.getloadavg()),
    }
    return {
        "target": args["target"],
        "model": "open" if rate else "closed",
        "rate": rate,
        "concurrency": args.get("concurrency") or 0,
        "duration_s": args["duration"],
        "mix": args["mix"],
        "wall_s": wall,
        "calls": everything.count,
        "per_second": everything.count / wall,
        "latency_ms": everything.summary_ms(),
        "errors": errors_by_code,
        "kinds": kinds,
        "generator": generator,
    }


def report_text(summary: dict[str, Any]) -> list[str]:
    model = (
        f"open model, {summary['rate']:,.0f} calls/s"
        if summary["model"] == "open"
        else f"closed model, {summary['concurrency']} in flight"
    )
    mix = ",".join(f"{k}={v}" for k, v in summary["mix"].items())
    lines = [
        f"authz loadtest: {summary['target']}, {model}, {summary['duration_s']:g}s, "
        f"{summary['generator']['processes']} process(es), mix {mix}",
        "",
    ]
    header = ["calls", "calls/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "errors"]
    rows = [["kind", *header]]

    def row(name: str, figures: dict[str, Any], latency: dict[str, float], errors: dict[str, int]) -> list[str]:
        return [
            name,
            f"{figures['calls']:,}",
            f"{figures['per_second']:,.1f}",
            *(f"{latency[p]:.3f}" for p in ("p50", "p90", "p99", "p99.9", "max")),
            f"{sum(errors.values()):,}",
        ]

    for kind, figures in summary["kinds"].items():
        rows.append(row(kind, figures, figures["latency_ms"], figures["errors"]))
    rows.append(row("all", summary, summary["latency_ms"], summary["errors"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))) for r in rows
    ]
    errors = summary["errors"]
    lines.append("")
    lines.append(
        "errors by status code: "
        + (", ".join(f"{code} {count:,}" for code, count in sorted(errors.items(), key=lambda e: -e[1])) or "none")
    )
    generator = summary["generator"]
    cpu = ", ".join(f"{c:.0%}" for c in generator["cpu_per_process"])
    detail = f"CPU per process {cpu} of a core"
    if summary["model"] == "open":
        detail += f", sent late by {generator['lateness_p99_ms']:.2f} ms at p99"
    if generator["dropped_in_flight_cap"]:
        detail += (
            f", {generator['dropped_in_flight_cap']:,} arrivals dropped at the in-flight cap (the server fell behind)"
        )
    if generator["limited"]:
        lines.append(
            f"generator: THE GENERATOR WAS THE LIMIT ({'; '.join(generator['reasons'])}): {detail}. "
            "Add --processes, or run it from another host; the figures above understate the server."
        )
    else:
        lines.append(f"generator: kept up ({detail}): the figures are the server's.")
    return lines


def _progress_line(latest: dict[int, dict[str, Any]], duration: float, started: float) -> str:
    sent = sum(p["sent"] for p in latest.values())
    done = sum(p["done"] for p in latest.values())
    failed = sum(p["failed"] for p in latest.values())
    window = sum(p["window_done"] for p in latest.values())
    in_flight = sum(p["in_flight"] for p in latest.values())
    p99 = max((p["window_p99_ms"] for p in latest.values()), default=0.0)
    late = max((p["lateness_p99_ms"] for p in latest.values()), default=0.0)
    cpu = max((p["cpu"] for p in latest.values()), default=0.0)
    elapsed = min(time.monotonic() - started, duration)
    return (
        f"[{elapsed:5.1f}s/{duration:g}s] sent {sent:,} done {done:,} ({window:,}/s) errors {failed:,} "
        f"in flight {in_flight:,} p99 {p99:.2f} ms late p99 {late:.2f} ms generator CPU {cpu:.0%}"
    )


def cmd_loadtest(args: argparse.Namespace) -> int:
    from authz.loadtest.worker import WorkerSpec

    if (args.rate is None) == (args.concurrency is None):
        print("authz loadtest: give --rate (open model) or --concurrency (closed model)", file=sys.stderr)
        return 2
    token = args.token
    if args.token_file:
        token = Path(args.token_file).read_text(encoding="utf-8").strip()
    token = token or os.environ.get("AUTHZ_LOADTEST_TOKEN") or None
    processes = max(args.processes, 1)
    base = WorkerSpec(
        target=args.target, ids={}, mix=args.mix, duration=args.duration, token=token, tls=args.tls,
        ca=args.ca, cert=args.cert, key=args.key, server_name=args.server_name, timeout=args.timeout,
        batch_size=args.batch_size, seed=args.seed,
    )  # fmt: skip
    import grpc

    try:
        ids = _ids(args, base)
    except grpc.RpcError as error:  # the actor may not read an organization, the target is down...
        print(
            f"authz loadtest: the ids could not be read through the API: {error.code().name}: {error.details()}",
            file=sys.stderr,
        )
        return 2
    if args.mix.get("write") and not ids.managers:
        print(
            "authz loadtest: writes need managers (dirigeant or personne_responsable rows in --ids-from, "
            "or in the organizations read with --actor)",
            file=sys.stderr,
        )
        return 2
    if not ids.pairs:
        print("authz loadtest: the sample holds no (contact, organization) pair", file=sys.stderr)
        return 2
    print(
        f"authz loadtest: {len(ids.pairs):,} pairs, {len(ids.managers):,} managers, {len(ids.subjects)} subjects sampled",
        file=sys.stderr,
    )
    context = multiprocessing.get_context("spawn")  # no gRPC state crosses a fork
    channel: Any = context.Queue()
    start_at = time.time() + 1.5 + 0.3 * processes  # the processes' imports and warm-up come first
    workers = []
    for index in range(processes):
        spec = WorkerSpec(**{**base.__dict__, "ids": ids.as_dict(), "index": index, "start_at": start_at})
        if args.rate is not None:
            spec.rate = args.rate / processes
        else:
            spec.concurrency = max(args.concurrency // processes + (index < args.concurrency % processes), 1)
        process = context.Process(target=_worker_main, args=(spec, channel), daemon=True)
        process.start()
        workers.append(process)
    latest: dict[int, dict[str, Any]] = {}
    finals: dict[int, dict[str, Any]] = {}
    started = time.monotonic() + max(start_at - time.time(), 0)
    deadline = start_at + args.duration + args.timeout + 60
    interactive = sys.stderr.isatty()
    while len(finals) < processes and time.time() < deadline:
        try:
            message = channel.get(timeout=1.0)
        except queue.Empty:
            if not any(p.is_alive() for p in workers):
                break
            continue
        if message.get("final"):
            finals[message["index"]] = message
        else:
            latest[message["index"]] = message
            line = _progress_line(latest, args.duration, started)
            print(("\r" + line) if interactive else line, end="" if interactive else "\n", file=sys.stderr, flush=True)
    if interactive:
        print(file=sys.stderr)
    for process in workers:
        process.join(timeout=10)
    crashed = [f["crashed"] for f in finals.values() if "crashed" in f]
    if crashed or len(finals) < processes:
        print(f"authz loadtest: a generator process failed: {crashed or 'no final report'}", file=sys.stderr)
        return 1
    summary = summarize(
        [finals[i] for i in sorted(finals)],
        {
            "target": args.target,
            "rate": args.rate,
            "concurrency": args.concurrency,
            "duration": args.duration,
            "mix": args.mix,
        },
    )
    summary["sample"] = {"pairs": len(ids.pairs), "managers": len(ids.managers), "subjects": ids.subjects}
    for line in report_text(summary):
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        print(f"figures written to {args.json}")
    return 0


def register(subparsers: Any) -> None:
    """Add `authz loadtest` to the `authz` command."""
    p = subparsers.add_parser(
        "loadtest", help="load a running deployment with a mix of calls; latency histogram and errors by code"
    )
    p.add_argument("--target", required=True, help="host:port of the deployment")
    model = p.add_mutually_exclusive_group()
    model.add_argument("--rate", type=float, help="open model: calls per second, whatever the answers")
    model.add_argument("--concurrency", type=int, help="closed model: calls kept in flight")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of load (default 30)")
    p.add_argument(
        "--mix", type=_mix, default=_mix("check=90,batch=5,lookup=5,write=0"),
        help="weights of check, batch, lookup and write (default check=90,batch=5,lookup=5,write=0)",
    )  # fmt: skip
    p.add_argument("--processes", type=int, default=1, help="generator processes sharing the load (default 1)")
    p.add_argument("--ids-from", help="an import file (the format `authz import` reads): the ids are sampled from it")
    p.add_argument("--organizations", help="comma-separated organizations whose contacts are read through the API")
    p.add_argument("--actor", help="the contact reading them (ListContacts needs read on their relations)")
    p.add_argument(
        "--subjects",
        help="comma-separated subjects to ask about (default: those of the file's rows, or the packaged policy's)",
    )
    p.add_argument("--sample", type=int, default=2_000, help="pairs sampled (default 2000)")
    p.add_argument("--batch-size", type=int, default=20, help="checks per BatchCheckAccess (default 20)")
    p.add_argument("--timeout", type=float, default=5.0, help="deadline of each call, seconds (default 5)")
    p.add_argument("--token", help="bearer token (or --token-file, or AUTHZ_LOADTEST_TOKEN)")
    p.add_argument("--token-file", help="a file holding the bearer token")
    p.add_argument("--tls", action="store_true", help="TLS, the system's roots verifying the server")
    p.add_argument("--ca", help="PEM file of the CA that verifies the server (implies TLS)")
    p.add_argument("--cert", help="client certificate, PEM (mutual TLS)")
    p.add_argument("--key", help="client key, PEM (mutual TLS)")
    p.add_argument("--server-name", help="the name the server's certificate is checked against")
    p.add_argument("--json", help="write the figures as JSON to this file")
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=cmd_loadtest)
