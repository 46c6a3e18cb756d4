"""`authz bench --beside`: the check path with writes beside it, on the real server.

On a generated data set (default 100,000 relations) in SQLite, `authz serve` is driven by
`authz loadtest` processes: 32 CheckAccess calls kept in flight (closed model: capacity and
latency), first alone ("quiet"), then with a second generator sending 20 writes a second
(grants and the revocations of those grants, by the data set's managers) beside them. The two
alternate `rounds` times so that the neighbours' load lands on both. Then resident memory:
500 writes to warm up, the server's RSS, 2,000 writes more, the RSS again; and the server's
CPU time per write over those 2,000 (its /proc stat), which is what a write costs the checks.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from authz.bench.data import generate
from authz.bench.runner import _rss_kib, _start_server, _stop
from authz.commands.import_data import import_data
from authz.config import Settings
from authz.engine.policy import Policy
from authz.store.sql import open_store

__all__ = ["BesideOptions", "run_beside_bench"]

Printer = Callable[[str], None]


@dataclass
class BesideOptions:
    relations: int = 100_000
    in_flight: int = 32
    write_rate: float = 20.0
    seconds: float = 10.0  # of each quiet and each beside-writes measure
    rounds: int = 2
    warm_writes: int = 500
    measured_writes: int = 2_000
    seed: int = 1
    workdir: Path | None = None
    profile: bool = False  # py-spy on the server during one beside-writes measure (py-spy on PATH)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _loadtest(target: str, ids: Path, out: Path, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "authz.cli", "loadtest", "--target", target, "--ids-from", str(ids)]
    return subprocess.Popen(
        [*command, "--json", str(out), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(process: subprocess.Popen[str], out: Path) -> dict[str, Any]:
    _, stderr = process.communicate(timeout=600)
    if process.returncode != 0:
        raise RuntimeError(f"authz loadtest failed: {stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return figures


def _writes(target: str, ids: Path, folder: Path, count: int, rate: float) -> dict[str, Any]:
    out = folder / "writes.json"
    return _finish(
        _loadtest(target, ids, out, "--rate", str(rate), "--duration", str(count / rate), "--mix", "write=1"), out
    )


def run_beside_bench(options: BesideOptions, say: Printer = print) -> dict[str, Any]:
    policy = Policy.load()
    folder = options.workdir or Path(tempfile.mkdtemp(prefix="authz-bench-beside-"))
    folder.mkdir(parents=True, exist_ok=True)
    database = folder / f"beside-{options.relations}.db"
    ids = folder / f"beside-{options.relations}.json"
    results: dict[str, Any] = {"relations": options.relations, "in_flight": options.in_flight}
    if not database.exists():
        dataset = generate(options.relations, seed=options.seed)
        ids.write_text(json.dumps(dataset.data), encoding="utf-8")
        store = open_store(Settings(database_url=f"sqlite:///{database}"))
        try:
            import_data(store, dataset.data, policy.subjects)
        finally:
            store.close()
        del dataset
    server, target, _log, _start = _start_server(database, folder, observed=False)
    try:
        checks = ("--concurrency", str(options.in_flight), "--mix", "check=1", "--duration", str(options.seconds))
        # Warm the server (its first calls, the generator's imports) before anything is measured.
        _finish(_loadtest(target, ids, folder / "warm.json", *checks[:4], "--duration", "2"), folder / "warm.json")
        rounds: list[dict[str, Any]] = []
        for round_ in range(options.rounds):
            quiet = _finish(_loadtest(target, ids, folder / "quiet.json", *checks), folder / "quiet.json")
            cpu_before = _cpu_seconds(server.pid)
            writer = _loadtest(
                target, ids, folder / "writer.json", "--rate", str(options.write_rate),
                "--duration", str(options.seconds + 3), "--mix", "write=1",
            )  # fmt: skip
            time.sleep(2.0)  # the writer's start-up and first writes come before the checks start
            profiler = _profile(server.pid, folder, options) if options.profile and round_ == 0 else None
            beside = _finish(_loadtest(target, ids, folder / "beside.json", *checks), folder / "beside.json")
            writes = _finish(writer, folder / "writer.json")
            cpu = _cpu_seconds(server.pid) - cpu_before
            if profiler is not None:
                profiler.join()
            figures: dict[str, Any] = {
                "quiet": _read(quiet),
                "beside_writes": _read(beside),
                "writes": {"calls": writes["calls"], "per_second": writes["per_second"], "errors": writes["errors"]},
                "server_cpu_s": cpu,
            }
            figures["p99_ratio"] = figures["beside_writes"]["p99_ms"] / figures["quiet"]["p99_ms"]
            figures["capacity_ratio"] = figures["beside_writes"]["per_second"] / figures["quiet"]["per_second"]
            rounds.append(figures)
            say(
                f"[beside] round {round_ + 1}: quiet p99 {figures['quiet']['p99_ms']:.2f} ms, "
                f"{figures['quiet']['per_second']:,.0f} checks/s; with {writes['per_second']:.1f} writes/s: "
                f"p99 {figures['beside_writes']['p99_ms']:.2f} ms ({figures['p99_ratio']:.2f}x), "
                f"{figures['beside_writes']['per_second']:,.0f} checks/s ({figures['capacity_ratio']:.2f}x); "
                f"write errors {writes['errors'] or 'none'}"
            )
        results["rounds"] = rounds
        results["p99_ratio"] = statistics.median(r["p99_ratio"] for r in rounds)
        results["capacity_ratio"] = statistics.median(r["capacity_ratio"] for r in rounds)
        # Memory: warm up with writes, then 2,000 more.
        _writes(target, ids, folder, options.warm_writes, 100.0)
        rss_warm = _rss_kib(server.pid)["VmRSS"] / 1024
        cpu_before = _cpu_seconds(server.pid)
        measured = _writes(target, ids, folder, options.measured_writes, 100.0)
        cpu_per_write = (_cpu_seconds(server.pid) - cpu_before) / max(measured["calls"], 1)
        rss_after = _rss_kib(server.pid)["VmRSS"] / 1024
        results["memory"] = {
            "rss_after_warm_up_mb": rss_warm,
            "rss_after_writes_mb": rss_after,
            "growth": rss_after / rss_warm - 1,
            "writes": measured["calls"],
            "write_errors": measured["errors"],
        }
        results["server_cpu_ms_per_write"] = cpu_per_write * 1000
        say(
            f"[beside] resident memory {rss_warm:.0f} MB after {options.warm_writes} writes, "
            f"{rss_after:.0f} MB after {measured['calls']:,} more ({results['memory']['growth']:+.1%}); "
            f"server CPU per write {cpu_per_write * 1000:.2f} ms (writes alone, 100/s)"
        )
        say(
            f"[beside] median of {options.rounds} rounds: check p99 with writes / quiet {results['p99_ratio']:.2f}x "
            f"(aim <= 1.3), capacity {results['capacity_ratio']:.2f}x (aim >= 0.8), "
            f"memory {results['memory']['growth']:+.1%} (aim <= 5%)"
        )
    finally:
        _stop(server)
    return results


def _read(figures: dict[str, Any]) -> dict[str, Any]:
    return {
        "p50_ms": figures["latency_ms"]["p50"],
        "p99_ms": figures["latency_ms"]["p99"],
        "per_second": figures["per_second"],
        "errors": figures["errors"],
        "generator_limited": figures["generator"]["limited"],
    }


def _profile(pid: int, folder: Path, options: BesideOptions) -> threading.Thread:
    """py-spy on the server (all threads, idle ones excluded) while checks and writes run."""
    out = folder / "beside-profile.txt"

    def record() -> None:
        subprocess.run(
            ["py-spy", "record", "-p", str(pid), "-d", str(int(options.seconds)), "-r", "200",
             "-f", "raw", "-o", str(out), "--nonblocking"],
            capture_output=True, check=False, timeout=options.seconds + 60,
        )  # fmt: skip

    thread = threading.Thread(target=record)
    thread.start()
    return thread
