"""`authz bench --write-throughput`: writes per second through one server and two on one PostgreSQL.

A fresh PostgreSQL database (as `--replicas` makes it: the demo data plus a generated data set)
is served by one `authz serve`, then by two; 1, 8 and 32 writers (threads, each with its own
connection, spread over the servers) write as fast as they are answered, for a few seconds
each: a manager of an organization of the data set grants a subject to one of its contacts,
then revokes that grant (two writes), all over the data set. Every write takes the store's one revision row at its start and holds it
until it commits: writes of every process and host run one at a time, so the figure is bounded
by how long one write holds that row (its reads, its Python work, its statements, the commit),
not by the number of writers. The servers' CPU time per write is read from /proc beside it.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from authz.bench.data import DataSet, generate
from authz.bench.replicas import (
    ReplicaBenchOptions,
    _client,
    _cpu_seconds,
    _database,
    _load_data,
    _percentiles,
    _Server,
)
from authz.engine.policy import Policy

__all__ = ["WriteThroughputOptions", "run_write_throughput_bench"]

Printer = Callable[[str], None]


@dataclass
class WriteThroughputOptions:
    relations: int = 20_000
    writers: list[int] = field(default_factory=lambda: [1, 8, 32])
    servers: list[int] = field(default_factory=lambda: [1, 2])
    seconds: float = 6.0
    seed: int = 1


def _spread_writes(targets: list[str], writers: int, seconds: float, dataset: DataSet, seed: int) -> dict[str, float]:
    """Writers granting a subject to a contact of an organization they manage, then revoking that
    grant, over the whole data set: no key piles up relations, as in a real burst of changes."""
    from authz_client import Right, Role  # type: ignore[import-not-found, unused-ignore]

    members: dict[str, list[str]] = {}
    for contact, organization in dataset.memberships:
        members.setdefault(organization, []).append(contact)
    managers = [(m, o) for m, o in dataset.managers if members.get(o)]
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def run(index: int) -> None:
        rng = random.Random(seed * 100 + index)
        mine: list[float] = []
        failed: list[str] = []
        with _client(targets[index % len(targets)]) as client:
            while time.monotonic() < stop:
                actor, organization = rng.choice(managers)
                contact = rng.choice(members[organization])
                started = time.perf_counter()
                try:
                    granted = client.grant_relation(
                        actor, organization, contact_id=contact, role=Role.ROLE_INDIVIDU_AUTORISE,
                        subjects=[("profil", Right.RIGHT_READ)], attest=True,
                    )  # fmt: skip
                    mine.append(time.perf_counter() - started)
                    started = time.perf_counter()
                    client.revoke_relation(
                        actor, organization, contact_id=contact, relation_ids=[granted.relation_id], attest=True
                    )
                    mine.append(time.perf_counter() - started)
                except Exception as exc:  # a refusal (the manager's relation not in force): counted, not fatal
                    failed.append(type(exc).__name__)
        with lock:
            latencies.extend(mine)
            errors.extend(failed)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(writers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {"writes_per_second": len(latencies) / elapsed, "errors": len(errors), **_percentiles(latencies)}


def run_write_throughput_bench(options: WriteThroughputOptions, say: Printer = print) -> dict[str, Any]:
    policy = Policy.load()
    folder = Path(tempfile.mkdtemp(prefix="authz-bench-writes-"))
    results: dict[str, Any] = {"relations": options.relations, "runs": []}
    # PostgreSQL servers need the outbox's key from outside the database, the same on every server.
    outbox_key = Fernet.generate_key().decode()
    with _database() as url:
        _load_data(url, ReplicaBenchOptions(relations=options.relations, seed=options.seed), policy, say)
        dataset = generate(options.relations, seed=options.seed)  # the same data set: its managers and members
        for count in options.servers:
            servers = [_Server(url, folder / f"s{count}-{n}", AUTHZ_OUTBOX_KEY=outbox_key) for n in range(count)]
            try:
                targets = [server.target for server in servers]
                _spread_writes(targets, 2, 1.0, dataset, options.seed)  # warm: connections, statement caches
                for writers in options.writers:
                    pids = [pid for server in servers for pid in server.pids()]
                    cpu_before = _cpu_seconds(pids)
                    figures = _spread_writes(targets, writers, options.seconds, dataset, options.seed + writers)
                    written = figures["writes_per_second"] * options.seconds
                    figures["server_cpu_ms_per_write"] = (_cpu_seconds(pids) - cpu_before) * 1e3 / max(written, 1)
                    run = {"servers": count, "writers": writers, **figures}
                    results["runs"].append(run)
                    say(
                        f"[writes] {count} server(s), {writers:>2} writer(s): {figures['writes_per_second']:,.0f} writes/s, "
                        f"p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, "
                        f"server CPU {figures['server_cpu_ms_per_write']:.2f} ms per write"
                    )
            finally:
                for server in servers:
                    server.stop()
    rates = [run["writes_per_second"] for run in results["runs"]]
    results["median_writes_per_second"] = statistics.median(rates) if rates else 0.0
    return results


def report_lines(results: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "Write throughput (PostgreSQL, GrantRelation and RevokeRelation):",
        "servers  writers  writes/s  p50 ms  p99 ms  CPU ms/write",
    ]
    for run in results["runs"]:
        lines.append(
            f"{run['servers']:>7}  {run['writers']:>7}  {run['writes_per_second']:>8,.0f}  {run['p50_ms']:>6.1f}  "
            f"{run['p99_ms']:>6.1f}  {run['server_cpu_ms_per_write']:>12.2f}"
        )
    return lines
