"""The benchmark's own parts: the data generator, the bars, a tiny run. No timing is asserted."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

from authz.bench.data import generate
from authz.bench.runner import BenchOptions, bars, run_bench
from authz.cli import build_parser
from authz.commands.import_data import import_data
from authz.config import Settings
from authz.engine.policy import Policy
from authz.store.sql import open_store

from ..conftest import Running

TODAY = date(2026, 6, 15)
MONTREAL = ZoneInfo("America/Montreal")


def test_generated_data_has_the_shape_the_issue_asks_for() -> None:
    dataset = generate(4000, seed=3, today=TODAY)
    data = dataset.data
    assert dataset.relation_count == 4000
    assert len(data["organizations"]) == 4000 // 20
    assert 0.09 <= len(data["delegations"]) / 4000 <= 0.11
    assert data["organization_relations"], "organization-to-organization authorizations"
    per_contact = Counter(relation["contact_id"] for relation in data["relations"])
    assert set(per_contact.values()) <= {1, 2, 3} and len(set(per_contact.values())) == 3
    windows = data["relations"] + data["organization_relations"] + data["delegations"]
    future = sum(w["start_date"] > TODAY.isoformat() for w in windows) / len(windows)
    ended = sum(w["end_date"] < TODAY.isoformat() for w in windows) / len(windows)
    assert 0.05 < future < 0.2 and 0.05 < ended < 0.2
    assert dataset.managers


def test_generation_is_deterministic() -> None:
    assert generate(500, seed=9, today=TODAY).data == generate(500, seed=9, today=TODAY).data


def test_generated_data_goes_through_the_import_path_whole(tmp_path: Path, policy: Policy) -> None:
    dataset = generate(1500, seed=4, today=TODAY)
    store = open_store(Settings(database_url=f"sqlite:///{tmp_path / 'bench.db'}"))
    try:
        # At the data set's own date: what an association holds, which its delegations stay within, is dated.
        report = import_data(store, dataset.data, policy.subjects, now=datetime.combine(TODAY, time(12), MONTREAL))
        assert report.refused == []
        assert sum(1 for _ in store.load_index_rows()) == 1500
    finally:
        store.close()


def test_bars_pass_and_miss_on_the_figures() -> None:
    def size(n: int, median: float, fast_ratio: float, plain_ratio: float, mismatches: int = 0) -> dict[str, object]:
        return {
            "relations": n,
            "engine": {"median_us": median, "p99_us": median * 4},
            "fast_enforcer": {"ratio_to_engine": fast_ratio, "mismatches": mismatches},
            "enforcer": {"ratio_to_engine": plain_ratio, "mismatches": 0},
        }

    good = bars({10_000: size(10_000, 2.0, 50, 5000), 100_000: size(100_000, 2.1, 60, 20000)}, None)
    assert all(bar.passed is not False for bar in good)
    # The growth ratio is printed as a figure, never judged: the retired bar.
    assert {bar.name: bar.passed for bar in good}["median(100,000) / median(10,000)"] is None
    bad = bars({10_000: size(10_000, 2.0, 50, 5000), 100_000: size(100_000, 20.0, 2, 500, mismatches=1)}, None)
    assert {bar.name: bar.passed for bar in bad} == {
        "engine median at 100,000": False,
        "engine p99 at 100,000": False,
        "median(100,000) / median(10,000)": None,
        "vs pycasbin FastEnforcer at 100,000": False,
        "vs pycasbin Enforcer at 100,000": False,
        "decisions identical to pycasbin": False,
    }


def test_a_tiny_run_agrees_with_pycasbin_and_writes_its_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    options = BenchOptions(
        sizes=[600, 1200],
        engine_checks=2000,
        fast_checks=200,
        plain_checks={600: 20, 1200: 10},
        server=False,
        json_path=out,
        workdir=tmp_path / "work",
    )
    lines: list[str] = []
    results = run_bench(options, lines.append)
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["cpu_count"] and set(written["sizes"]) == {"600", "1200"}
    assert all(
        size[name]["mismatches"] == 0 for size in results["sizes"].values() for name in ("fast_enforcer", "enforcer")
    )
    assert any("The bar:" in line for line in lines)


def test_bench_is_a_subcommand() -> None:
    args = build_parser().parse_args(["bench", "--quick", "--sizes", "1000,5000", "--json", ""])
    assert args.sizes == [1000, 5000] and args.quick and args.func.__name__ == "cmd_bench"


def test_a_tiny_lookups_run_agrees_with_checks_and_pycasbin(tmp_path: Path) -> None:
    """`authz bench --lookups` at toy sizes: every answer equals the per-candidate checks' and pycasbin's."""
    from authz.bench.lookups import LookupBenchOptions, run_lookup_bench

    lines: list[str] = []
    options = LookupBenchOptions(
        sizes=[600, 1500],
        lookups=300,
        per_candidate=20,
        pycasbin={600: 3},
        json_path=tmp_path / "lookups.json",
        large_holders=3_000,
        large_calls=200,
        large_server=False,
    )
    results = run_lookup_bench(options, say=lines.append)
    for figures in results["sizes"].values():
        for name in ("lookup_principals", "lookup_organizations"):
            assert figures[name]["per_candidate_checks"]["mismatches"] == 0
            assert figures[name]["nonempty"] > 0
        assert figures["start_up"]["with_lookups"]["rss_mb"] > 0
    assert results["sizes"]["600"]["pycasbin_implicit_users"]["mismatches"] == 0
    assert json.loads((tmp_path / "lookups.json").read_text())["sizes"].keys() == {"600", "1500"}
    assert any(line.startswith("Lookups:") for line in lines)
    # The large organization: its rare right has one holder, and the reason index loses no answer.
    assert results["large"]["mismatches"] == 0 and results["large"]["rare_holders"] == 1
    assert results["large"]["rare_right_principals"]["answer_median"] == 1


def test_the_write_then_check_section_runs_against_a_real_server(demo: Running) -> None:
    """The section `make bench` runs on its server: grants and revokes that keep the domain's rules."""
    from types import SimpleNamespace

    from authz.bench.runner import _write_then_check

    dataset = SimpleNamespace(managers=[("C-PR", "ORG-SQC")])
    figures = _write_then_check(f"127.0.0.1:{demo.app.port}", dataset, rounds=3)  # type: ignore[arg-type]
    assert figures == {"rounds": 3, "allowed_after_grant": 3, "denied_after_revoke": 3}


def test_the_import_bench_file_keeps_the_rules_and_imports_whole(tmp_path: Path) -> None:
    """`authz bench --import` measures a file with nothing refused (its delegations within what
    the association holds, no repeated purpose); at 20k relations the file is large enough for
    the import's reader process."""
    from authz.bench.import_bench import run_import_bench

    said: list[str] = []
    (figures,) = run_import_bench([20_000], workdir=tmp_path, say=said.append)
    assert figures.refused == 0 and figures.accepted > 20_000
    assert figures.file_mib * 2**20 >= 4 * 2**20  # the reader process's threshold: this run used it
    assert "0 refused" in said[0]
