"""`authz bench`: the figures of the check path, in one run.

For each size: generate a data set, load it through the import path into a SQLite
file, build the engine from the store as the server does, then time the engine and
pycasbin (`Enforcer`, `FastEnforcer`) on the same checks and compare their answers.
At the largest size, start the real server (`authz serve`) on that database, time its
start-up and read its resident memory, and drive it from a separate client process; then
next to a second server with observability on (/metrics served and scraped, JSON logs),
the client interleaving its calls to both, so that the cost of metrics and logs on the
check path is read side by side.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from authz.bench.data import CheckCase, DataSet, check_cases, generate
from authz.bench.oracles import build_fast_enforcer, build_plain_enforcer
from authz.commands.import_data import import_data
from authz.config import Settings
from authz.domain.model import Right
from authz.engine.index import DecisionEngine
from authz.engine.policy import Policy
from authz.store.sql import open_store

__all__ = ["BenchOptions", "run_bench"]

Printer = Callable[[str], None]


@dataclass
class BenchOptions:
    sizes: Sequence[int] = (10_000, 100_000, 1_000_000)
    engine_checks: int = 50_000
    fast_checks: int = 2_000
    # Plain Enforcer scans every rule: ~0.6-1 s a check at 1M. A few checks are enough.
    plain_checks: dict[int, int] = field(default_factory=lambda: {10_000: 300, 100_000: 40, 1_000_000: 8})
    server: bool = True
    sequential_calls: int = 4_000
    concurrent_calls: int = 8_000
    batch_calls: int = 300
    batch_size: int = 100
    grant_rounds: int = 50
    workdir: Path | None = None
    json_path: Path | None = Path("bench-results.json")
    seed: int = 1
    observability: bool = True  # measure the server a second time with metrics and JSON logs on


def _median_p99(values_ns: list[int]) -> tuple[float, float]:
    values_ns.sort()
    return statistics.median(values_ns) / 1e3, values_ns[min(len(values_ns) - 1, int(len(values_ns) * 0.99))] / 1e3


def _time_checks(decide: Callable[[CheckCase], bool], cases: Sequence[CheckCase]) -> tuple[list[bool], float, float]:
    clock = time.perf_counter_ns
    answers: list[bool] = []
    latencies: list[int] = []
    for case in cases:
        started = clock()
        answer = decide(case)
        latencies.append(clock() - started)
        answers.append(answer)
    median, p99 = _median_p99(latencies)
    return answers, median, p99


def _rss_kib(pid: int | str = "self") -> dict[str, int]:
    fields = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split(":", 1)
                fields[name] = int(value.split()[0])
    return fields


def measure_size(size: int, options: BenchOptions, policy: Policy, folder: Path, say: Printer) -> dict[str, Any]:
    result: dict[str, Any] = {"relations": size}
    started = time.perf_counter()
    dataset = generate(size, seed=options.seed)
    result["generate_s"] = time.perf_counter() - started
    database = folder / f"bench-{size}.db"
    store = open_store(Settings(database_url=f"sqlite:///{database}"))
    started = time.perf_counter()
    report = import_data(store, dataset.data, policy.subjects)
    result["import_s"] = time.perf_counter() - started
    result["refused"] = len(report.refused)
    result["organizations"] = len(dataset.organization_ids)
    result["contacts"] = len(dataset.contact_ids)
    say(
        f"[{size:>9,}] generated in {result['generate_s']:.1f}s, imported in {result['import_s']:.1f}s "
        f"({dataset.relation_count:,} relations, {len(dataset.organization_ids):,} organizations, "
        f"{len(dataset.contact_ids):,} contacts, {len(report.refused)} refused)"
    )
    dataset.data.clear()  # the import document is the largest thing held: drop it now
    cases = check_cases(dataset, options.engine_checks, seed=options.seed + 1)

    engine = DecisionEngine(policy)
    started = time.perf_counter()
    engine.load_rows(store.load_index_rows(), store.revision())
    result["engine_load_s"] = time.perf_counter() - started
    now = datetime.now(UTC)
    ts = now.timestamp()
    check = engine.check
    # Warm the code path and the caches once, as a running server is.
    for case in cases[:2000]:
        check(case.contact_id, case.organization_id, case.subject, case.right, ts)
    answers, median, p99 = _time_checks(lambda c: check(c.contact_id, c.organization_id, c.subject, c.right, ts), cases)
    result["engine"] = {"checks": len(cases), "median_us": median, "p99_us": p99, "allowed": sum(answers)}
    say(
        f"[{size:>9,}] engine: loaded in {result['engine_load_s']:.2f}s; decision median {median:.2f} µs, "
        f"p99 {p99:.2f} µs over {len(cases):,} checks ({sum(answers):,} allowed)"
    )

    relations = list(store.load_relations())
    store.close()
    for name, build, count in (
        ("fast_enforcer", build_fast_enforcer, options.fast_checks),
        ("enforcer", build_plain_enforcer, options.plain_checks.get(size, 20)),
    ):
        if count <= 0:
            continue
        started = time.perf_counter()
        enforcer = build(policy, relations, now)
        built = time.perf_counter() - started
        subset = cases[:count]
        theirs, their_median, their_p99 = _time_enforcer(enforcer, subset)
        mismatches = sum(1 for a, b in zip(theirs, answers[:count], strict=True) if a != b)
        result[name] = {
            "checks": count,
            "build_s": built,
            "median_us": their_median,
            "p99_us": their_p99,
            "allowed": sum(theirs),
            "mismatches": mismatches,
            "ratio_to_engine": their_median / median,
        }
        say(
            f"[{size:>9,}] pycasbin {'FastEnforcer' if name == 'fast_enforcer' else 'Enforcer'}: built in {built:.1f}s; "
            f"median {their_median:,.1f} µs, p99 {their_p99:,.1f} µs over {count:,} checks; "
            f"{their_median / median:,.0f}x the engine; {mismatches} different decisions"
        )
        del enforcer
        gc.collect()
    del relations
    result["database"] = str(database)
    result["_dataset"] = dataset
    result["_cases"] = cases
    return result


def _time_enforcer(enforcer: Any, cases: Sequence[CheckCase]) -> tuple[list[bool], float, float]:
    codes = {1: Right.READ.code, 2: Right.WRITE.code}
    return _time_checks(
        lambda c: bool(enforcer.enforce(c.contact_id, c.organization_id, c.subject, codes[c.right])), cases
    )


_SERVING = re.compile(r"authz serving on ([^\s\"]+)")  # text line, or the message of a JSON one
_BUILT = re.compile(r"indexes built in ([0-9.]+)s")
_METRICS = re.compile(r"metrics on http://([0-9.]+:[0-9]+)/metrics")


def _scrape_checks(log_path: Path) -> float:
    """CheckAccess calls the server counted, read from its /metrics: proof that metrics were on."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    found = _METRICS.search(log_path.read_text(encoding="utf-8"))
    if found is None:
        raise RuntimeError(f"the server did not log its metrics address; see {log_path}")
    with urlopen(f"http://{found.group(1)}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "grpc_server_handled_total" and sample.labels.get("grpc_method") == "CheckAccess"
    )


def _start_server(database: Path, folder: Path, observed: bool) -> tuple[subprocess.Popen[str], str, Path, float]:
    """`authz serve` on the database: the process, its target, its log, seconds until it served."""
    env = dict(os.environ)
    env.update(
        {
            "AUTHZ_DATABASE_URL": f"sqlite:///{database}",
            "AUTHZ_LISTEN": "127.0.0.1:0",
            "AUTHZ_MAIL_URL": f"file://{folder / 'outbox'}",
            "AUTHZ_LOG_LEVEL": "INFO",
            "AUTHZ_METRICS_LISTEN": "127.0.0.1:0" if observed else "",
            "AUTHZ_LOG_FORMAT": "json" if observed else "text",
        }
    )
    log_path = folder / ("server-observed.log" if observed else "server.log")
    authz = [sys.executable, "-m", "authz.cli", "serve"]
    started = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        server = subprocess.Popen(authz, env=env, stdout=subprocess.PIPE, stderr=log, text=True, cwd=folder)
    assert server.stdout is not None
    line = server.stdout.readline()
    match = _SERVING.search(line)
    if match is None:
        _stop(server)
        raise RuntimeError(f"server did not start: {line!r}; see {log_path}")
    return server, match.group(1), log_path, time.perf_counter() - started


def _stop(server: subprocess.Popen[str]) -> None:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def measure_server(
    database: Path, dataset: DataSet, cases: list[CheckCase], options: BenchOptions, folder: Path, say: Printer
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The real server on the largest database, driven from a separate client process.

    With `options.observability`, a second server on the same database serves /metrics
    (scraped at the end) and writes JSON logs, as in production. Both run at once and the
    client interleaves its calls to the two, so that the load of a shared machine lands on
    both alike: the figures of the two servers are read side by side.
    """
    result: dict[str, Any] = {"observability": "off"}
    servers: list[subprocess.Popen[str]] = []
    try:
        server, target, log_path, result["start_s"] = _start_server(database, folder, observed=False)
        servers.append(server)
        built = _BUILT.search(log_path.read_text(encoding="utf-8"))
        result["index_build_s"] = float(built.group(1)) if built else None
        result["rss_after_start_mb"] = _rss_kib(server.pid)["VmRSS"] / 1024
        say(
            f"server: serving on {target} after {result['start_s']:.1f}s "
            f"(indexes built in {result['index_build_s']}s), resident {result['rss_after_start_mb']:.0f} MB"
        )
        targets = [["", target]]
        observed: dict[str, Any] | None = None
        if options.observability:
            watched, observed_target, observed_log, observed_start = _start_server(database, folder, observed=True)
            servers.append(watched)
            observed = {"observability": "metrics + JSON logs", "start_s": observed_start}
            targets.append(["observed", observed_target])
            say(f"server (metrics + JSON logs): serving on {observed_target} after {observed_start:.1f}s")
        spec = {
            "targets": targets,
            "checks": [(c.contact_id, c.organization_id, c.subject, c.right) for c in cases[:20_000]],
            "sequential_calls": options.sequential_calls,
            "concurrent_calls": options.concurrent_calls,
            "windows": [8, 32],
            "batch_size": options.batch_size,
            "batch_calls": options.batch_calls,
            "time_limit": 90 * len(targets),
        }
        spec_path = folder / "client-spec.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        client = subprocess.run(
            [sys.executable, "-m", "authz.bench.client", str(spec_path)],
            capture_output=True,
            text=True,
            timeout=900 * len(targets),
            check=False,
        )
        if client.returncode != 0:
            raise RuntimeError(f"bench client failed: {client.stderr[-2000:]}")
        figures = json.loads(client.stdout)
        result["grpc"] = _figures_of(figures, "")
        if observed is not None:
            observed["grpc"] = _figures_of(figures, "observed")
            observed["checks_counted_by_metrics"] = _scrape_checks(observed_log)
        result["write_then_check"] = _write_then_check(target, dataset, options.grant_rounds)
        memory = _rss_kib(server.pid)
        result["rss_after_load_mb"] = memory["VmRSS"] / 1024
        result["rss_peak_mb"] = memory["VmHWM"] / 1024
    finally:
        for running in servers:
            _stop(running)
    return result, observed


def _figures_of(figures: dict[str, Any], label: str) -> dict[str, Any]:
    """The client's figures for one target: its kinds of call named `kind@label` become `kind`."""
    out: dict[str, Any] = {}
    for key, value in figures.items():
        if isinstance(value, dict) and ("baseline" in value or f"baseline@{label}" in value):
            if label:
                out[key] = {n.removesuffix(f"@{label}"): v for n, v in value.items() if n.endswith(f"@{label}")}
            else:
                out[key] = {n: v for n, v in value.items() if "@" not in n}
        elif not label:
            out[key] = value  # batches and the rest: measured on the first target only
    return out


def _write_then_check(target: str, dataset: DataSet, rounds: int) -> dict[str, Any]:
    """Grant, then check at once on the same server; revoke, then check at once."""
    import grpc

    from authz.v1 import authz_pb2 as pb
    from authz.v1 import authz_pb2_grpc

    actor, organization = dataset.managers[0]
    attested = pb.Attestation(authorizes_acting=True, changes_accurate=True)
    staff_role = pb.ROLE_MEMBRE_DU_PERSONNEL
    allowed_after_grant = denied_after_revoke = 0
    with grpc.insecure_channel(target) as channel:
        stub = authz_pb2_grpc.AuthzServiceStub(channel)
        staff = stub.GrantRelation(
            pb.GrantRelationRequest(
                actor_id=actor,
                organization_id=organization,
                new_contact=pb.NewContact(first_name="Bench", last_name="Écriture", email="bench@example.org"),
                # Another role than the rounds': a second relation of one role is refused (one per purpose).
                role=pb.ROLE_INDIVIDU_AUTORISE,
                attestation=attested,
            ),
            timeout=30,
        ).contact_id
        for _ in range(rounds):
            granted = stub.GrantRelation(
                pb.GrantRelationRequest(
                    actor_id=actor,
                    organization_id=organization,
                    contact_id=staff,
                    role=staff_role,
                    subjects=[pb.SubjectRight(subject="rapport_mensuel", right=pb.RIGHT_WRITE)],
                    attestation=attested,
                ),
                timeout=30,
            )
            check = pb.CheckAccessRequest(
                principal_id=staff, organization_id=organization, subject="rapport_mensuel", right=pb.RIGHT_WRITE
            )
            allowed_after_grant += stub.CheckAccess(check, timeout=30).allowed
            stub.RevokeRelation(
                pb.RevokeRelationRequest(
                    actor_id=actor,
                    organization_id=organization,
                    contact_id=staff,
                    relations=pb.RelationIds(relation_ids=[granted.relation_id]),
                    attestation=attested,
                ),
                timeout=30,
            )
            denied_after_revoke += not stub.CheckAccess(check, timeout=30).allowed
    return {"rounds": rounds, "allowed_after_grant": allowed_after_grant, "denied_after_revoke": denied_after_revoke}


@dataclass(frozen=True)
class Bar:
    name: str
    figure: str
    target: str
    passed: bool | None  # None: a figure printed beside the bars, not judged


def _check_path_bars(grpc: dict[str, Any], suffix: str) -> list[Bar]:
    sequential = grpc["sequential"]
    ratio = sequential["check"]["p50_ms"] / sequential["baseline"]["p50_ms"]
    found = [Bar(f"CheckAccess p50 / empty RPC p50{suffix}", f"{ratio:.3f}", "≤ 1.15", ratio <= 1.15)]
    at32 = grpc["in_flight_32"]
    ratio = at32["check"]["per_second"] / at32["baseline"]["per_second"]
    found.append(
        Bar(f"CheckAccess / empty RPC calls/s at 32 in flight{suffix}", f"{ratio:.3f}", "≥ 0.85", ratio >= 0.85)
    )
    return found


def bars(
    sizes: dict[int, dict[str, Any]], server: dict[str, Any] | None, observed: dict[str, Any] | None = None
) -> list[Bar]:
    found: list[Bar] = []
    largest = max(sizes)
    smallest = min(sizes)
    top = sizes[largest]["engine"]
    found.append(Bar(f"engine median at {largest:,}", f"{top['median_us']:.2f} µs", "≤ 15 µs", top["median_us"] <= 15))
    found.append(Bar(f"engine p99 at {largest:,}", f"{top['p99_us']:.2f} µs", "≤ 60 µs", top["p99_us"] <= 60))
    flat = top["median_us"] / sizes[smallest]["engine"]["median_us"]
    # A figure, no longer a bar: at 1M a check is memory latency, not a scan (docs/PERFORMANCE.md).
    found.append(Bar(f"median({largest:,}) / median({smallest:,})", f"{flat:.2f}", "figure only (retired bar)", None))
    middle = sizes.get(100_000) or sizes[sorted(sizes)[len(sizes) // 2]]
    label = f"{middle['relations']:,}"
    for name, title, floor in (("fast_enforcer", "FastEnforcer", 3.0), ("enforcer", "Enforcer", 1000.0)):
        if name in middle:
            ratio = middle[name]["ratio_to_engine"]
            found.append(Bar(f"vs pycasbin {title} at {label}", f"{ratio:,.1f}x", f"≥ {floor:,.0f}x", ratio >= floor))
    mismatches = sum(
        size[name]["mismatches"] for size in sizes.values() for name in ("fast_enforcer", "enforcer") if name in size
    )
    found.append(Bar("decisions identical to pycasbin", f"{mismatches} different", "0", mismatches == 0))
    if server is None:
        return found
    found += _check_path_bars(server["grpc"], "")
    if observed is not None:
        found += _check_path_bars(observed["grpc"], " (metrics + JSON logs on)")
    grpc = server["grpc"]
    batch = max(value["checks_per_second"] for key, value in grpc.items() if key.startswith("batch_"))
    found.append(Bar("BatchCheckAccess checks/s (batches of 100)", f"{batch:,.0f}", "≥ 40,000", batch >= 40_000))
    build = server["index_build_s"]
    found.append(
        Bar(f"server load + index at {largest:,}", f"{build:.2f} s", "≤ 10 s", build is not None and build <= 10)
    )
    rss = server["rss_after_load_mb"]
    found.append(Bar(f"server resident memory at {largest:,}", f"{rss:.0f} MB", "≤ 700 MB", rss <= 700))
    writes = server["write_then_check"]
    found.append(
        Bar(
            "grant then check at once: allowed",
            f"{writes['allowed_after_grant']}/{writes['rounds']} (revoke then check denied: "
            f"{writes['denied_after_revoke']}/{writes['rounds']})",
            "every time",
            writes["allowed_after_grant"] == writes["rounds"] == writes["denied_after_revoke"],
        )
    )
    return found


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


def report_lines(results: dict[str, Any]) -> list[str]:
    sizes: dict[int, dict[str, Any]] = {int(k): v for k, v in results["sizes"].items()}
    lines = ["", f"authz bench — {results['cpu_count']} cores, Python {results['python']}, {results['started_at']}", ""]
    rows = [
        ["relations", "engine median", "engine p99", "FastEnforcer median", "ratio", "Enforcer median", "ratio", "diff"]
    ]
    for size, figures in sorted(sizes.items()):
        fast, plain = figures.get("fast_enforcer"), figures.get("enforcer")
        rows.append(
            [
                f"{size:,}",
                f"{figures['engine']['median_us']:.2f} µs",
                f"{figures['engine']['p99_us']:.2f} µs",
                f"{fast['median_us']:,.1f} µs" if fast else "-",
                f"{fast['ratio_to_engine']:,.1f}x" if fast else "-",
                f"{plain['median_us'] / 1000:,.2f} ms ({plain['checks']} checks)" if plain else "-",
                f"{plain['ratio_to_engine']:,.0f}x" if plain else "-",
                str(sum(x["mismatches"] for x in (fast, plain) if x)),
            ]
        )
    lines += _table(rows)
    server = results.get("server")
    if server:
        grpc = server["grpc"]
        lines += ["", f"gRPC, client in a separate process; baseline = {grpc['baseline']}:"]
        rows = [["", "observability", "p50", "p99", "calls/s at 8 in flight", "calls/s at 32 in flight"]]
        runs = [("off", grpc)]
        if results.get("server_observed"):
            runs.append(("metrics + JSON logs", results["server_observed"]["grpc"]))
        for label, figures in runs:
            seq = figures["sequential"]
            for name, title in (("baseline", "empty RPC (health Check)"), ("check", "CheckAccess")):
                rows.append(
                    [
                        title,
                        label,
                        f"{seq[name]['p50_ms']:.3f} ms",
                        f"{seq[name]['p99_ms']:.3f} ms",
                        f"{figures['in_flight_8'][name]['per_second']:,.0f}",
                        f"{figures['in_flight_32'][name]['per_second']:,.0f}",
                    ]
                )
        lines += _table(rows)
        if results.get("server_observed"):
            counted = results["server_observed"].get("checks_counted_by_metrics")
            lines.append(f"CheckAccess calls counted by the observed server's /metrics: {counted:,.0f}")
        for key, value in grpc.items():
            if key.startswith("batch_"):
                lines.append(
                    f"BatchCheckAccess {key.removeprefix('batch_')}: {value['checks_per_second']:,.0f} checks/s"
                )
        lines.append(
            f"server start {server['start_s']:.1f} s (indexes built in {server['index_build_s']} s); resident "
            f"{server['rss_after_start_mb']:.0f} MB after start, {server['rss_after_load_mb']:.0f} MB after load "
            f"(peak {server['rss_peak_mb']:.0f} MB)"
        )
    lines += ["", "The bar:"]
    rows = [["", "measured", "target", ""]]
    for bar in results["bars"]:
        verdict = "figure" if bar["passed"] is None else ("PASS" if bar["passed"] else "MISS")
        rows.append([bar["name"], bar["figure"], bar["target"], verdict])
    lines += _table(rows)
    return lines


def run_bench(options: BenchOptions, say: Printer = print) -> dict[str, Any]:
    policy = Policy.load()
    folder = options.workdir or Path(tempfile.mkdtemp(prefix="authz-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sizes": {},
    }
    try:
        measured: dict[int, dict[str, Any]] = {}
        for size in sorted(options.sizes):
            figures = measure_size(size, options, policy, folder, say)
            dataset, cases = figures.pop("_dataset"), figures.pop("_cases")
            measured[size] = figures
            results["sizes"][str(size)] = figures
            if size == max(options.sizes) and options.server:
                server, observed = measure_server(Path(figures["database"]), dataset, cases, options, folder, say)
                results["server"] = server
                if observed is not None:
                    results["server_observed"] = observed
            del dataset, cases
            gc.collect()
        results["bars"] = [
            bar.__dict__ for bar in bars(measured, results.get("server"), results.get("server_observed"))
        ]
    finally:
        if options.workdir is None:
            shutil.rmtree(folder, ignore_errors=True)
    for line in report_lines(results):
        say(line)
    if options.json_path is not None:
        options.json_path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        say(f"\nfigures written to {options.json_path}")
    return results
