"""`authz bench --replicas`: the figures of following one PostgreSQL from several servers.

Real `authz serve` processes on a fresh PostgreSQL database (AUTHZ_BENCH_POSTGRES_URL, else
AUTHZ_TEST_POSTGRES_URL, else postgres@127.0.0.1:5432), holding the demo data plus a
generated data set:

- propagation lag: from a write's answer on server A to server B's index answering the new
  state, without a token (B polled with CheckAccess); on the NOTIFY path and with polling alone;
- `at_least_as_fresh`: CheckAccess latency with a token the process already holds, and with
  one it does not (a follower paused: each read catches up itself);
- writes per second through one server and through two (the revision row serializes commits
  across processes), and the same through the code before the change log (`--compare-with`);
- CheckAccess calls per second with 1 and 2 worker processes, with the servers' CPU time per
  check, and the workers' memory as PSS/USS (shared pages counted once).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from authz.bench.data import check_cases, generate
from authz.engine.policy import Policy

__all__ = ["ReplicaBenchOptions", "run_replicas_bench"]

Printer = Callable[[str], None]
_SERVING = re.compile(r"authz serving on ([\d.]+:\d+)")
DEMO_FILE = Path(__file__).resolve().parents[1] / "demo" / "demo.json"
MANAGER, ORG = "C-PR", "ORG-SQC"


@dataclass
class ReplicaBenchOptions:
    relations: int = 20_000
    lag_rounds: int = 400
    poll_lag_rounds: int = 10
    fresh_checks: int = 2_000
    behind_rounds: int = 50
    write_seconds: float = 5.0
    writers: int = 4
    check_seconds: float = 6.0
    load_processes: int = 2
    channels_per_process: int = 4
    in_flight_per_channel: int = 8
    compare_with: Path | None = None  # a checkout of the code before the change log, for its write rate
    seed: int = 1


def _admin_url() -> str:
    return os.environ.get(
        "AUTHZ_BENCH_POSTGRES_URL",
        os.environ.get("AUTHZ_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
    )


def _database() -> AbstractContextManager[str]:
    from authz.store.scratch import scratch_database

    return scratch_database(_admin_url(), "authz_bench")


_KEYS: list[str] = []


def _outbox_key() -> str:
    """The run's outbox key, made once."""
    if not _KEYS:
        from cryptography.fernet import Fernet

        _KEYS.append(Fernet.generate_key().decode())
    return _KEYS[0]


class _Server:
    """`authz serve` in its own process group (its workers too), stopped with SIGTERM."""

    def __init__(self, url: str, folder: Path, code: Path | None = None, demo: bool = False, **env: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        environment = dict(os.environ)
        environment.update(
            {
                "AUTHZ_DATABASE_URL": url,
                "AUTHZ_LISTEN": "127.0.0.1:0",
                "AUTHZ_MAIL_URL": f"file://{folder / 'outbox'}",
                "AUTHZ_LOG_LEVEL": "WARNING",
                "AUTHZ_GRACE_SECONDS": "1",
                # PostgreSQL servers need one, the same on every server of the run.
                "AUTHZ_OUTBOX_KEY": _outbox_key(),
                **env,
            }
        )
        if code is not None:
            environment["PYTHONPATH"] = str(code)
        self.log = open(folder / "server.log", "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "authz.cli", "serve", *(["--demo"] if demo else [])],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            cwd=folder,
        )
        assert self.process.stdout is not None
        found = None
        for _ in range(5):  # `--demo` reports its import first
            line = self.process.stdout.readline()
            found = _SERVING.search(line)
            if found is not None or not line:
                break
        if found is None:
            self.stop()
            raise RuntimeError(f"server did not start: {line!r}; see {folder / 'server.log'}")
        self.target = found.group(1)

    def pids(self) -> list[int]:
        """The server process and its workers."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        workers = [int(pid) for pid in children.read_text().split()] if children.exists() else []
        return [self.process.pid, *workers]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def _cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def _memory_kib(pid: int) -> dict[str, int]:
    """PSS and USS from smaps_rollup: shared copy-on-write pages counted once, not in every process."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        values[key] = int(rest.split()[0])
    return {
        "rss": values.get("Rss", 0),
        "pss": values.get("Pss", 0),
        "uss": values.get("Private_Clean", 0) + values.get("Private_Dirty", 0),
    }


def _percentiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {
        "n": len(values),
        "p50_ms": statistics.median(values) * 1e3,
        "p99_ms": values[min(len(values) - 1, int(len(values) * 0.99))] * 1e3,
    }


def _client(target: str) -> Any:
    from authz_client import AuthzClient  # type: ignore[import-not-found, unused-ignore]

    return AuthzClient(target, timeout=10)


def _flip(client: Any, subject: str, want: bool, limit: float = 10.0) -> float:
    """Poll CheckAccess until it answers `want`; when it did (perf_counter)."""
    deadline = time.perf_counter() + limit
    while True:
        allowed = client.check("C-IND", ORG, subject, 2).allowed
        now = time.perf_counter()
        if allowed is want or now > deadline:
            return now


# The one relation the propagation rounds keep open for C-IND (a second relation of one role is
# refused): a grant ends the previous one first.
_OPEN: dict[str, tuple[Any, str]] = {}


def _grant(client: Any, subject: str) -> tuple[str, str, float]:
    from authz_client import Right, Role  # type: ignore[import-not-found, unused-ignore]

    if "C-IND" in _OPEN:
        previous_client, previous = _OPEN["C-IND"]
        _revoke(previous_client, previous)
    answer = client.grant_relation(
        MANAGER, ORG, contact_id="C-IND", role=Role.ROLE_MEMBRE_DU_PERSONNEL,
        subjects=[(subject, Right.RIGHT_WRITE)], attest=True,
    )  # fmt: skip
    _OPEN["C-IND"] = (client, answer.relation_id)
    return answer.relation_id, answer.revision, time.perf_counter()


def _revoke(client: Any, relation_id: str) -> tuple[str, float]:
    if _OPEN.get("C-IND", (None, ""))[1] == relation_id:
        del _OPEN["C-IND"]
    answer = client.revoke_relation(MANAGER, ORG, contact_id="C-IND", relation_ids=[relation_id], attest=True)
    return answer.revision, time.perf_counter()


def _lag(writer: Any, reader: Any, rounds: int, subject: str, jitter: float = 0.0) -> dict[str, float]:
    """From the write's answer on one server to the other's index answering the new state.

    `jitter`: a random pause before each write, so that writes do not fall in step with a poll.
    """
    rng = random.Random(1)
    lags = []
    for _ in range(max(1, rounds // 2)):
        time.sleep(rng.uniform(0, jitter))
        relation_id, _token, done = _grant(writer, subject)
        lags.append(_flip(reader, subject, True) - done)
        time.sleep(rng.uniform(0, jitter))
        _token, done = _revoke(writer, relation_id)
        lags.append(_flip(reader, subject, False) - done)
    return _percentiles(lags)


def _check_latency(client: Any, count: int, consistency: str | None) -> dict[str, float]:
    latencies = []
    for i in range(count):
        started = time.perf_counter()
        client.check(MANAGER, ORG, "relations" if i % 2 else "profil", 1, consistency=consistency)
        latencies.append(time.perf_counter() - started)
    return _percentiles(latencies)


def _writes(targets: list[str], writers: int, seconds: float) -> dict[str, float]:
    """Grant and revoke pairs as fast as `writers` threads (spread over the targets) get them acknowledged."""
    subjects = ("profil", "rapport_mensuel")
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def run(index: int) -> None:
        from authz_client import NewContact, Right, Role  # type: ignore[import-not-found, unused-ignore]

        with _client(targets[index % len(targets)]) as client:
            mine = []
            # A contact of its own, so that grant and revoke pairs never meet another writer's.
            staff = client.grant_relation(
                MANAGER, ORG, role=Role.ROLE_INDIVIDU_AUTORISE, attest=True,
                new_contact=NewContact(first_name="Bench", last_name=f"W{index}", email=f"bench-w{index}@example.org"),
            ).contact_id  # fmt: skip
            while time.monotonic() < stop:
                started = time.perf_counter()
                granted = client.grant_relation(
                    MANAGER, ORG, contact_id=staff, role=Role.ROLE_MEMBRE_DU_PERSONNEL,
                    subjects=[(subjects[index % 2], Right.RIGHT_READ)], attest=True,
                )  # fmt: skip
                mine.append(time.perf_counter() - started)
                started = time.perf_counter()
                client.revoke_relation(MANAGER, ORG, contact_id=staff, relation_ids=[granted.relation_id], attest=True)
                mine.append(time.perf_counter() - started)
            with lock:
                latencies.extend(mine)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(writers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {"writes_per_second": len(latencies) / elapsed, **_percentiles(latencies)}


_LOAD = r"""
import json, sys, threading, time
import grpc
from authz.v1 import authz_pb2 as pb, authz_pb2_grpc
spec = json.loads(open(sys.argv[1], encoding="utf-8").read())
checks = [pb.CheckAccessRequest(principal_id=c, organization_id=o, subject=s, right=r) for c, o, s, r in spec["checks"]]
stubs = []
for _ in range(spec["channels"]):
    # One connection per channel (no subchannel sharing): SO_REUSEPORT spreads connections over workers.
    channel = grpc.insecure_channel(spec["target"], options=[("grpc.use_local_subchannel_pool", 1)])
    grpc.channel_ready_future(channel).result(timeout=30)
    stubs.append(authz_pb2_grpc.AuthzServiceStub(channel))
for stub in stubs:  # warm
    for i in range(50):
        stub.CheckAccess(checks[i % len(checks)], timeout=30)
done = [0]
lock = threading.Lock()
start_at = spec["start_at"]
while time.time() < start_at:
    time.sleep(0.001)
stop_at = start_at + spec["seconds"]
def drive(stub, offset):
    n = 0
    while time.time() < stop_at:
        stub.CheckAccess(checks[(offset + n) % len(checks)], timeout=30)
        n += 1
    with lock:
        done[0] += n
threads = [threading.Thread(target=drive, args=(stubs[i % len(stubs)], i * 997)) for i in range(spec["threads"])]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({"calls": done[0]}))
"""


def _check_throughput(
    server: _Server, checks: list[tuple[str, str, str, int]], options: ReplicaBenchOptions, folder: Path
) -> dict[str, Any]:
    """CheckAccess from separate client processes, each with several connections, all at once."""
    spec: dict[str, Any] = {
        "target": server.target,
        "checks": checks,
        "channels": options.channels_per_process,
        "threads": options.channels_per_process * options.in_flight_per_channel,
        "seconds": options.check_seconds,
        "start_at": time.time() + 3.0,
    }
    spec_path = folder / "load-spec.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    loads = [
        subprocess.Popen([sys.executable, "-c", _LOAD, str(spec_path)], stdout=subprocess.PIPE, text=True)
        for _ in range(options.load_processes)
    ]
    time.sleep(max(0.0, spec["start_at"] - time.time()))
    cpu_before = _cpu_seconds(server.pids())
    calls = 0
    for load in loads:
        out, _ = load.communicate(timeout=120)
        calls += json.loads(out)["calls"]
    cpu = _cpu_seconds(server.pids()) - cpu_before
    return {
        "calls": calls,
        "calls_per_second": calls / options.check_seconds,
        "server_cpu_ms_per_check": cpu * 1e3 / max(calls, 1),
        "workers": len(server.pids()) - (1 if len(server.pids()) > 1 else 0),
        "memory_kib": {str(pid): _memory_kib(pid) for pid in server.pids()},
    }


def _load_demo(url: str, policy: Policy) -> None:
    from authz.commands.import_data import import_file
    from authz.store import migrate
    from authz.store.sql import SqlStore, make_engine

    engine = make_engine(url)
    migrate.upgrade(engine)
    store = SqlStore(engine)
    try:
        import_file(store, DEMO_FILE, policy.subjects)
    finally:
        store.close()


def _load_data(url: str, options: ReplicaBenchOptions, policy: Policy, say: Printer) -> list[tuple[str, str, str, int]]:
    from authz.commands.import_data import import_data, import_file
    from authz.config import Settings
    from authz.store import migrate
    from authz.store.sql import make_engine, open_store

    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    store = open_store(Settings(database_url=url))
    try:
        import_file(store, DEMO_FILE, policy.subjects)
        dataset = generate(options.relations, seed=options.seed)
        started = time.perf_counter()
        import_data(store, dataset.data, policy.subjects)
        say(
            f"replicas: {dataset.relation_count:,} relations + the demo imported in {time.perf_counter() - started:.1f}s"
        )
        cases = check_cases(dataset, 20_000, seed=options.seed + 1)
    finally:
        store.close()
    return [(c.contact_id, c.organization_id, c.subject, c.right) for c in cases]


def run_replicas_bench(options: ReplicaBenchOptions, say: Printer = print) -> dict[str, Any]:
    policy = Policy.load()
    folder = Path(tempfile.mkdtemp(prefix="authz-bench-replicas-"))
    results: dict[str, Any] = {"relations": options.relations}
    servers: list[_Server] = []

    def serve(url: str, name: str, code: Path | None = None, demo: bool = False, **env: str) -> _Server:
        server = _Server(url, folder / name, code, demo, **env)
        servers.append(server)
        return server

    def stop_all() -> None:
        while servers:
            servers.pop().stop()

    try:
        with _database() as url:
            checks = _load_data(url, options, policy, say)
            a = serve(url, "a")
            b = serve(url, "b")
            paused = serve(url, "paused", AUTHZ_FOLLOW_NOTIFY="0", AUTHZ_FOLLOW_POLL_SECONDS="3600")
            polling = serve(url, "polling", AUTHZ_FOLLOW_NOTIFY="0", AUTHZ_FOLLOW_POLL_SECONDS="0.5")
            with (
                _client(a.target) as writer,
                _client(b.target) as reader,
                _client(paused.target) as behind,
                _client(polling.target) as poller,
            ):
                results["lag_notify"] = _lag(writer, reader, options.lag_rounds, "rapport_mensuel")
                say(_line("propagation lag, NOTIFY", results["lag_notify"]))
                results["lag_poll_only"] = _lag(writer, poller, options.poll_lag_rounds, "profil", jitter=0.5)
                say(_line("propagation lag, polling alone (0.5 s)", results["lag_poll_only"]))
                _relation, fresh_token, _done = _grant(writer, "scrutin_syndical")
                reader.check(MANAGER, ORG, "profil", 1, consistency=fresh_token)  # surely applied from here on
                results["check_plain"] = _check_latency(reader, options.fresh_checks, None)
                results["check_token_fresh"] = _check_latency(reader, options.fresh_checks, fresh_token)
                say(_line("CheckAccess, no consistency", results["check_plain"]))
                say(_line("CheckAccess, at_least_as_fresh (held)", results["check_token_fresh"]))
                behind_latencies = []
                for _ in range(options.behind_rounds):
                    _relation, token, _done = _grant(writer, "profil")
                    started = time.perf_counter()
                    assert behind.check("C-IND", ORG, "profil", 2, consistency=token).allowed
                    behind_latencies.append(time.perf_counter() - started)
                results["check_token_behind"] = _percentiles(behind_latencies)
                say(_line("CheckAccess, at_least_as_fresh (behind: catch-up)", results["check_token_behind"]))
            stop_all()
            for processes in (1, 2):
                server = serve(url, f"p{processes}", AUTHZ_PROCESSES=str(processes), AUTHZ_FOLLOW_POLL_SECONDS="1")
                figures = _check_throughput(server, checks, options, folder)
                results[f"checks_{processes}_process"] = figures
                memory = figures["memory_kib"]
                say(
                    f"CheckAccess with {processes} process(es): {figures['calls_per_second']:,.0f} calls/s, "
                    f"{figures['server_cpu_ms_per_check']:.3f} ms server CPU per check; memory (MB) "
                    + ", ".join(
                        f"{pid}: RSS {m['rss'] / 1024:.0f} PSS {m['pss'] / 1024:.0f} USS {m['uss'] / 1024:.0f}"
                        for pid, m in memory.items()
                    )
                )
                stop_all()
        # Write rates: each on a fresh database holding the demo only (grants pile relations on one
        # contact, so every figure starts from the same state), with no other server running (each
        # running follower reads the log on every write, on the same cores).
        with _database() as one_url:
            _load_demo(one_url, policy)
            a = serve(one_url, "writes-1")
            results["writes_one_server"] = _writes([a.target], options.writers, options.write_seconds)
            say(_write_line("writes, change log, 1 server", results["writes_one_server"]))
            stop_all()
        with _database() as two_url:
            _load_demo(two_url, policy)
            targets = [serve(two_url, "writes-2a").target, serve(two_url, "writes-2b").target]
            results["writes_two_servers"] = _writes(targets, options.writers, options.write_seconds)
            say(_write_line("writes, change log, 2 servers", results["writes_two_servers"]))
            stop_all()
        if options.compare_with is not None:
            with _database() as before_url:
                subprocess.run(
                    [sys.executable, "-m", "authz.cli", "migrate", "--database-url", before_url],
                    env={**os.environ, "PYTHONPATH": str(options.compare_with)},
                    check=True,
                    capture_output=True,
                    cwd=folder,
                )
                # That code's own schema and its own import of the demo data.
                before = serve(before_url, "before", options.compare_with, demo=True)
                results["writes_before_change_log"] = _writes([before.target], options.writers, options.write_seconds)
                say(_write_line("writes, before the change log, 1 server", results["writes_before_change_log"]))
                stop_all()
    finally:
        stop_all()
        shutil.rmtree(folder, ignore_errors=True)
    return results


def _line(name: str, figures: dict[str, float]) -> str:
    return f"{name}: p50 {figures['p50_ms']:.2f} ms, p99 {figures['p99_ms']:.2f} ms ({figures['n']} samples)"


def _write_line(name: str, figures: dict[str, float]) -> str:
    return (
        f"{name}: {figures['writes_per_second']:.0f} writes/s, p50 {figures['p50_ms']:.1f} ms, "
        f"p99 {figures['p99_ms']:.1f} ms"
    )
