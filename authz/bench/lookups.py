"""`authz bench --lookups`: the figures of LookupPrincipals and LookupOrganizations.

For each size: generate a data set, import it into SQLite, build the engine from the store
as the server does, then time, on the same questions:
- the engine's lookups (a typical organization: tens of holders; a typical contact: 1-3
  relations), median and p99;
- the same answer from one engine check per candidate, the candidates being every contact
  (or organization) of the data set: what a caller without lookups has to do;
- pycasbin's `get_implicit_users_for_permission` (on a FastEnforcer, the faster of the two;
  it enforces once per subject of every rule) at the sizes where it finishes in seconds.
Answers are compared; start-up time and resident memory are read from fresh processes
loading the same database with and without the lookups' indexes.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import random
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

from authz.bench.data import SUBJECTS, generate
from authz.bench.oracles import build_fast_enforcer
from authz.commands.import_data import import_data
from authz.config import Settings
from authz.domain.model import Right
from authz.engine.index import DecisionEngine, IndexRow
from authz.engine.policy import Policy
from authz.store.sql import open_store

__all__ = ["LookupBenchOptions", "run_lookup_bench"]

Printer = Callable[[str], None]
Question = tuple[str, str, int]  # (organization or contact, subject, right)


LARGE_HOLDERS = 60_000  # contacts holding a relation on the one large organization


@dataclass
class LookupBenchOptions:
    sizes: Sequence[int] = (10_000, 100_000, 1_000_000)
    lookups: int = 20_000  # engine lookups timed per kind and size
    per_candidate: int = 30  # answers rebuilt from one check per candidate
    # get_implicit_users_for_permission enforces once per rule subject: over a second a call at
    # 10k, minutes at 100k (one call there), hours at 1M (not run).
    pycasbin: dict[int, int] = field(default_factory=lambda: {10_000: 10, 100_000: 1})
    page_size: int = 100
    seed: int = 1
    json_path: Path | None = Path("bench-lookups.json")
    large: bool = True  # the large organization's section (60,000 holders, built in memory)
    large_calls: int = 2_000
    large_holders: int = LARGE_HOLDERS
    large_server: bool = True  # the same organization through the real server (authz loadtest)
    workdir: Path | None = None


def _median_p99(values_ns: list[int]) -> tuple[float, float]:
    values_ns.sort()
    return statistics.median(values_ns) / 1e3, values_ns[min(len(values_ns) - 1, int(len(values_ns) * 0.99))] / 1e3


def _timed(run: Callable[[Question], list[str]], questions: Sequence[Question]) -> tuple[list[list[str]], float, float]:
    clock = time.perf_counter_ns
    answers, latencies = [], []
    for question in questions:
        started = clock()
        answer = run(question)
        latencies.append(clock() - started)
        answers.append(answer)
    median, p99 = _median_p99(latencies)
    return answers, median, p99


def probe(database: Path, lookups: bool) -> dict[str, float]:
    """Load the engine from a database in this (fresh) process: start-up time and resident memory."""
    policy = Policy.load()
    store = open_store(Settings(database_url=f"sqlite:///{database}"))
    before = _rss_mb()
    started, cpu = time.perf_counter(), time.process_time()
    engine = DecisionEngine(policy)
    engine.load_rows(store.load_index_rows(), store.revision(), lookups=lookups)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    store.close()
    gc.collect()
    # CPU time beside wall time: on a shared machine the wall time mostly measures the neighbours.
    return {"load_s": elapsed, "load_cpu_s": cpu, "rss_mb": _rss_mb(), "rss_added_mb": _rss_mb() - before}


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _probe_in_process(database: Path, lookups: bool) -> dict[str, float]:
    command = [sys.executable, "-m", "authz.bench.lookups", "probe", str(database)]
    if not lookups:
        command.append("--no-lookups")
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=True)
    figures: dict[str, float] = json.loads(done.stdout)
    return figures


def measure_lookups(
    size: int, options: LookupBenchOptions, policy: Policy, folder: Path, say: Printer
) -> dict[str, Any]:
    database = folder / f"lookups-{size}.db"
    result = _measure_engine(size, database, options, policy, say)
    gc.collect()  # the engine and the data set are gone: the probes get the machine's memory
    with_indexes = _probe_in_process(database, lookups=True)
    without = _probe_in_process(database, lookups=False)
    result["start_up"] = {"with_lookups": with_indexes, "without_lookups": without}
    say(
        f"[{size:>9,}] start-up in a fresh process: {with_indexes['load_s']:.2f}s ({with_indexes['load_cpu_s']:.2f}s CPU) "
        f"and {with_indexes['rss_mb']:.0f} MB resident with the lookups' indexes, {without['load_s']:.2f}s "
        f"({without['load_cpu_s']:.2f}s CPU) and {without['rss_mb']:.0f} MB without "
        f"(+{with_indexes['load_cpu_s'] - without['load_cpu_s']:.2f}s CPU, "
        f"+{with_indexes['rss_mb'] - without['rss_mb']:.0f} MB)"
    )
    return result


def _measure_engine(
    size: int, database: Path, options: LookupBenchOptions, policy: Policy, say: Printer
) -> dict[str, Any]:
    result: dict[str, Any] = {"relations": size}
    dataset = generate(size, seed=options.seed)
    store = open_store(Settings(database_url=f"sqlite:///{database}"))
    started = time.perf_counter()
    report = import_data(store, dataset.data, policy.subjects)
    say(f"[{size:>9,}] imported in {time.perf_counter() - started:.1f}s ({len(report.refused)} refused)")
    contacts, organizations = dataset.contact_ids, dataset.organization_ids
    dataset.data.clear()
    engine = DecisionEngine(policy)
    engine.load_rows(store.load_index_rows(), store.revision())
    ts = datetime.now(UTC).timestamp()
    rng = random.Random(options.seed + 7)

    # Typical questions: an organization of the data set (tens of holders), a contact (1-3 relations).
    def questions(ids: Sequence[str], count: int) -> list[Question]:
        return [(rng.choice(ids), rng.choice(SUBJECTS), rng.choice((1, 2))) for _ in range(count)]

    on_organizations = questions(organizations, options.lookups)
    on_contacts = questions(contacts, options.lookups)
    candidates = sorted(len(engine.holders(o)) for o, _, _ in on_organizations[:2000])
    result["holders_per_organization"] = {
        "median": statistics.median(candidates),
        "p99": candidates[int(len(candidates) * 0.99)],
    }
    say(
        f"[{size:>9,}] organizations asked about hold relations with {statistics.median(candidates):.0f} contacts "
        f"(median; p99 {candidates[int(len(candidates) * 0.99)]}); contacts hold 1-3 relations"
    )

    def principals(question: Question) -> list[str]:
        return engine.lookup_principals(question[0], question[1], question[2], ts, limit=options.page_size)[0]

    def organizations_of(question: Question) -> list[str]:
        return engine.lookup_organizations(question[0], question[1], question[2], ts, limit=options.page_size)[0]

    check = engine.check

    def principals_by_checks(question: Question) -> list[str]:
        organization, subject, right = question
        return sorted(c for c in contacts if check(c, organization, subject, right, ts))[: options.page_size]

    def organizations_by_checks(question: Question) -> list[str]:
        contact, subject, right = question
        return sorted(o for o in organizations if check(contact, o, subject, right, ts))[: options.page_size]

    for name, lookup, by_checks, asked, candidates_count in (
        ("lookup_principals", principals, principals_by_checks, on_organizations, len(contacts)),
        ("lookup_organizations", organizations_of, organizations_by_checks, on_contacts, len(organizations)),
    ):
        for question in asked[:2000]:  # warm, as a running server is
            lookup(question)
        answers, median, p99 = _timed(lookup, asked)
        figures: dict[str, Any] = {
            "lookups": len(asked),
            "median_us": median,
            "p99_us": p99,
            "nonempty": sum(bool(a) for a in answers),
        }
        subset = asked[: options.per_candidate]
        theirs, their_median, their_p99 = _timed(by_checks, subset)
        figures["per_candidate_checks"] = {
            "candidates": candidates_count,
            "lookups": len(subset),
            "median_us": their_median,
            "p99_us": their_p99,
            "ratio_to_lookup": their_median / median,
            "mismatches": sum(a != b for a, b in zip(theirs, answers, strict=False)),
        }
        result[name] = figures
        say(
            f"[{size:>9,}] {name}: median {median:.1f} µs, p99 {p99:.1f} µs over {len(asked):,}; "
            f"one check per candidate ({candidates_count:,}): median {their_median:,.0f} µs "
            f"({their_median / median:,.0f}x), {figures['per_candidate_checks']['mismatches']} different answers"
        )

    calls = options.pycasbin.get(size, 0)
    store_relations = list(store.load_relations()) if calls else []
    store.close()
    if calls:
        started = time.perf_counter()
        enforcer = build_fast_enforcer(policy, store_relations, datetime.fromtimestamp(ts, UTC))
        built = time.perf_counter() - started
        del store_relations
        contact_set = set(contacts)
        subset = on_organizations[:calls]

        def implicit_users(question: Question) -> list[str]:
            organization, subject, right = question
            users = enforcer.get_implicit_users_for_permission(organization, subject, Right(right).code)
            # Its answer also names grantee organizations (they are rule subjects): keep the contacts.
            return sorted(u for u in users if u in contact_set)

        theirs, their_median, their_p99 = _timed(implicit_users, subset)
        ours = [engine.lookup_principals(o, s, r, ts, limit=10**6)[0] for o, s, r in subset]
        result["pycasbin_implicit_users"] = {
            "enforcer": "FastEnforcer",
            "build_s": built,
            "calls": calls,
            "median_us": their_median,
            "p99_us": their_p99,
            "ratio_to_lookup": their_median / result["lookup_principals"]["median_us"],
            "mismatches": sum(a != b for a, b in zip(theirs, ours, strict=True)),
        }
        say(
            f"[{size:>9,}] pycasbin get_implicit_users_for_permission (FastEnforcer, built in {built:.1f}s): "
            f"median {their_median / 1000:,.1f} ms over {calls} calls "
            f"({their_median / result['lookup_principals']['median_us']:,.0f}x), "
            f"{result['pycasbin_implicit_users']['mismatches']} different answers"
        )
    return result


_COMMON_GRANTS = (
    (("profil", 1),),
    (("profil", 1), ("rapport_mensuel", 2)),
    (("acces_aux_donnees", 1),),
    (("paiements_et_releves", 1), ("profil", 2)),
    (),
)


def _large_rows(holders: int, seed: int) -> list[IndexRow]:
    """One organization with `holders` contacts (staff and representatives holding a few common
    grants, some windows over), one contact granted scrutin_syndical write there: the rare right;
    and one contact (an accountant) holding a relation on `holders // 10` organizations."""
    rng = random.Random(seed)
    today = datetime.now(UTC).date().toordinal()
    roles = ("membre_du_personnel", "representant", "individu_autorise")
    rows: list[IndexRow] = []
    rare = rng.randrange(holders)
    for n in range(holders):
        grants: tuple[tuple[str, int], ...] = rng.choice(_COMMON_GRANTS)
        if n == rare:
            grants = (("scrutin_syndical", 2),)
        end = today - rng.randint(1, 300) if rng.random() < 0.1 and n != rare else 3_652_059
        rows.append(
            ("contact", f"LR{n}", f"LC{n:06}", "LARGE", None, rng.choice(roles), today - 400, end, math.inf, grants)
        )
    for n in range(holders // 10):
        grants = (("scrutin_syndical", 2),) if n == rare % (holders // 10) else rng.choice(_COMMON_GRANTS)
        rows.append(
            (
                "contact",
                f"LA{n}",
                "ACCOUNTANT",
                f"LO{n:06}",
                None,
                "membre_du_personnel",
                today - 400,
                3_652_059,
                math.inf,
                grants,
            )
        )
    return rows


def measure_large_lookups(
    policy: Policy, seed: int, calls: int, say: Printer, holders_count: int = LARGE_HOLDERS
) -> dict[str, Any]:
    """Lookups whose answer is small on an anchor with many keys: the one holder of a rare right
    among 60,000, and a page of 10 of a common right at a random place (a token's)."""
    engine = DecisionEngine(policy)
    engine.load_rows(_large_rows(holders_count, seed), 1)
    ts = datetime.now(UTC).timestamp()
    rng = random.Random(seed + 3)
    holders = engine.holders("LARGE")
    results: dict[str, Any] = {"holders": len(holders)}
    # The answers, against one check per holder: the index must never lose one.
    expected = [c for c in holders if engine.check(c, "LARGE", "scrutin_syndical", 2, ts)]
    found, _ = engine.lookup_principals("LARGE", "scrutin_syndical", 2, ts, limit=len(holders) + 1)
    common = [c for c in holders if engine.check(c, "LARGE", "profil", 1, ts)]
    all_common, _ = engine.lookup_principals("LARGE", "profil", 1, ts, limit=len(holders) + 1)
    results["mismatches"] = int(found != expected) + int(all_common != common)
    results["rare_holders"] = len(expected)

    def timed(name: str, run: Callable[[int], tuple[list[str], bool]], count: int) -> None:
        # CPU time of the calls: on a shared machine wall time measures the neighbours too.
        latencies, answers = [], []
        for i in range(count):
            started = time.thread_time_ns()
            found, _ = run(i)
            latencies.append(time.thread_time_ns() - started)
            answers.append(len(found))
        median, p99 = _median_p99(latencies)
        results[name] = {
            "calls": count,
            "median_us": median,
            "p99_us": p99,
            "answer_median": statistics.median(answers),
        }
        say(
            f"[large] {name}: median {median:,.1f} µs, p99 {p99:,.1f} µs CPU over {count:,} calls (answers of {statistics.median(answers):.0f})"
        )

    cursors = [rng.choice(holders) for _ in range(calls)]  # a page token's last id
    say(
        f"[large] one organization with {len(holders):,} holders ({len(expected)} with the rare right, "
        f"{len(common):,} with profil read); a contact with {holders_count // 10:,} organizations; "
        f"{results['mismatches']} answers different from one check per holder"
    )
    timed(
        "rare_right_principals",
        lambda i: engine.lookup_principals("LARGE", "scrutin_syndical", 2, ts, limit=10),
        max(calls // 50, 5),
    )
    timed(
        "common_page_principals",
        lambda i: engine.lookup_principals("LARGE", "profil", 1, ts, after=cursors[i], limit=10),
        calls,
    )
    timed(
        "rare_right_organizations",
        lambda i: engine.lookup_organizations("ACCOUNTANT", "scrutin_syndical", 2, ts, limit=10),
        max(calls // 50, 5),
    )
    timed(
        "common_page_organizations",
        lambda i: engine.lookup_organizations("ACCOUNTANT", "profil", 1, ts, limit=10),
        calls,
    )
    return results


def _large_import(holders: int, seed: int) -> dict[str, Any]:
    """An import document: one organization of `holders` contacts, one of them granted scrutin_syndical write."""
    rng = random.Random(seed)
    roles = ("membre_du_personnel", "representant", "individu_autorise")
    common: tuple[list[dict[str, str]], ...] = (
        [{"subject": "profil", "right": "read"}],
        [{"subject": "profil", "right": "read"}, {"subject": "rapport_mensuel", "right": "write"}],
        [{"subject": "acces_aux_donnees", "right": "read"}],
        [],
    )
    rare = rng.randrange(holders)
    return {
        "organizations": [{"id": "LARGE", "name": "Grande organisation", "kind": "employer"}],
        "contacts": [
            {"id": f"LC{n:06}", "first_name": "Pat", "last_name": f"Nom{n}", "email": f"p{n}@example.org"}
            for n in range(holders)
        ],
        "relations": [
            {
                "id": f"LR{n}",
                "contact_id": f"LC{n:06}",
                "organization_id": "LARGE",
                "role": rng.choice(roles),
                "start_date": "2020-01-01",
                "end_date": "9999-12-31",
                "subjects": [{"subject": "scrutin_syndical", "right": "write"}] if n == rare else rng.choice(common),
            }
            for n in range(holders)
        ],
    }


def measure_large_lookups_server(policy: Policy, seed: int, folder: Path, say: Printer) -> dict[str, Any]:
    """The real server on one organization of 60,000 holders: CheckAccess at 200 calls/s alone, then
    beside 4 callers looping lookups of the rare right (driven by `authz loadtest` processes)."""
    from authz.bench.beside import _finish, _loadtest
    from authz.bench.runner import _start_server, _stop

    document = _large_import(LARGE_HOLDERS, seed)
    ids = folder / "large-lookups.json"
    ids.write_text(json.dumps(document), encoding="utf-8")
    database = folder / "large-lookups.db"
    for stale in folder.glob("large-lookups.db*"):
        stale.unlink()
    store = open_store(Settings(database_url=f"sqlite:///{database}"))
    try:
        import_data(store, document, policy.subjects)
    finally:
        store.close()
    server, target, _log, _started = _start_server(database, folder, observed=False)
    try:
        checks = ("--rate", "200", "--mix", "check=1", "--duration")
        _finish(_loadtest(target, ids, folder / "warm.json", *checks, "3"), folder / "warm.json")
        alone = _finish(_loadtest(target, ids, folder / "alone.json", *checks, "8"), folder / "alone.json")
        lookups = _loadtest(
            target, ids, folder / "loop.json", "--concurrency", "4", "--duration", "11",
            "--mix", "lookup=1", "--subjects", "scrutin_syndical",
        )  # fmt: skip
        time.sleep(2.0)
        beside = _finish(_loadtest(target, ids, folder / "beside.json", *checks, "8"), folder / "beside.json")
        looped = _finish(lookups, folder / "loop.json")
    finally:
        _stop(server)
    figures = {
        "check_alone_ms": alone["latency_ms"],
        "check_beside_lookups_ms": beside["latency_ms"],
        "lookups_per_second": looped["per_second"],
        "lookup_ms": looped["latency_ms"],
    }
    say(
        f"[large, server] CheckAccess at 200/s: p50 {alone['latency_ms']['p50']:.2f} ms, p99 {alone['latency_ms']['p99']:.2f} ms "
        f"alone; p50 {beside['latency_ms']['p50']:.2f} ms, p99 {beside['latency_ms']['p99']:.2f} ms beside 4 callers "
        f"looping lookups of the rare right ({looped['per_second']:,.0f} lookups/s, p50 {looped['latency_ms']['p50']:.2f} ms)"
    )
    return figures


def report_lines(results: dict[str, Any]) -> list[str]:
    rows = [
        [
            "relations",
            "lookup",
            "median",
            "p99",
            "one check per candidate",
            "ratio",
            "pycasbin implicit users",
            "ratio",
            "start-up with / without",
            "RSS with / without",
        ]
    ]
    for size, figures in sorted((int(k), v) for k, v in results["sizes"].items()):
        start = figures["start_up"]
        for name in ("lookup_principals", "lookup_organizations"):
            lookup = figures[name]
            per = lookup["per_candidate_checks"]
            casbin = figures.get("pycasbin_implicit_users") if name == "lookup_principals" else None
            rows.append(
                [
                    f"{size:,}",
                    name,
                    f"{lookup['median_us']:.1f} µs",
                    f"{lookup['p99_us']:.1f} µs",
                    f"{per['median_us']:,.0f} µs ({per['candidates']:,})",
                    f"{per['ratio_to_lookup']:,.0f}x",
                    f"{casbin['median_us'] / 1000:,.1f} ms" if casbin else "-",
                    f"{casbin['ratio_to_lookup']:,.0f}x" if casbin else "-",
                    f"{start['with_lookups']['load_s']:.2f} / {start['without_lookups']['load_s']:.2f} s",
                    f"{start['with_lookups']['rss_mb']:.0f} / {start['without_lookups']['rss_mb']:.0f} MB",
                ]
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["", "Lookups:"] + [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def run_lookup_bench(options: LookupBenchOptions, say: Printer = print) -> dict[str, Any]:
    policy = Policy.load()
    folder = options.workdir or Path(tempfile.mkdtemp(prefix="authz-bench-lookups-"))
    folder.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"started_at": datetime.now(UTC).isoformat(timespec="seconds"), "sizes": {}}
    try:
        for size in sorted(options.sizes):
            results["sizes"][str(size)] = measure_lookups(size, options, policy, folder, say)
            gc.collect()
        if results["sizes"]:
            for line in report_lines(results):
                say(line)
        if options.large:
            results["large"] = measure_large_lookups(
                policy, options.seed, options.large_calls, say, options.large_holders
            )
            if options.large_server:
                results["large"]["server"] = measure_large_lookups_server(policy, options.seed, folder, say)
    finally:
        if options.workdir is None:
            shutil.rmtree(folder, ignore_errors=True)
    if options.json_path is not None:
        options.json_path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        say(f"\nfigures written to {options.json_path}")
    return results


def _main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="authz.bench.lookups")
    sub = parser.add_subparsers(dest="command", required=True)
    probe_parser = sub.add_parser("probe", help="load one database's engine and print its figures as JSON")
    probe_parser.add_argument("database", type=Path)
    probe_parser.add_argument("--no-lookups", action="store_true")
    args = parser.parse_args(argv)
    print(json.dumps(probe(args.database, lookups=not args.no_lookups)))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
