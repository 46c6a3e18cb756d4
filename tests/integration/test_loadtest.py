"""`authz loadtest` against a real server (port 0, the demo data): short runs, then the report is read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from authz.loadtest.cli import report_text, summarize
from authz.loadtest.histogram import Histogram
from tests.conftest import DEMO_FILE, Running


def _loadtest(server: Running, tmp_path: Path, *args: str) -> tuple[dict[str, Any], str, str]:
    out = tmp_path / "loadtest.json"
    done = subprocess.run(
        [sys.executable, "-m", "authz.cli", "loadtest", "--target", f"127.0.0.1:{server.app.port}",
         "--json", str(out), *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return summary, done.stdout, done.stderr


def test_open_model_from_an_import_file_reports_every_kind(demo: Running, tmp_path: Path) -> None:
    summary, stdout, stderr = _loadtest(
        demo, tmp_path, "--rate", "150", "--duration", "2", "--ids-from", str(DEMO_FILE),
        "--mix", "check=70,batch=10,lookup=10,write=10",
    )  # fmt: skip
    assert summary["model"] == "open"
    assert set(summary["kinds"]) == {"check", "batch", "lookup", "write"}
    # 300 arrivals scheduled; each one is answered (or counted as an error by its status code).
    assert 270 <= summary["calls"] <= 300
    assert sum(kind["calls"] for kind in summary["kinds"].values()) == summary["calls"]
    latency = summary["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["p99.9"] <= latency["max"]
    # Checks, batches and lookups of the demo's own ids never fail; writes grant then revoke.
    assert not summary["kinds"]["check"]["errors"] and not summary["kinds"]["lookup"]["errors"]
    assert summary["kinds"]["write"]["calls"] > 10 and not summary["kinds"]["write"]["errors"]
    assert demo.client.check("C-PR", "ORG-SQC", "relations", 2).allowed  # the data is still usable
    assert "kept up" in stdout or "THE GENERATOR WAS THE LIMIT" in stdout
    assert "errors by status code:" in stdout and "p99.9 ms" in stdout
    assert "sent" in stderr and "generator CPU" in stderr  # the progress line


def test_closed_model_with_ids_read_through_the_api_in_two_processes(demo: Running, tmp_path: Path) -> None:
    summary, _, _ = _loadtest(
        demo, tmp_path, "--concurrency", "4", "--duration", "1.5", "--processes", "2",
        "--actor", "C-PR", "--organizations", "ORG-SQC", "--mix", "check=1",
    )  # fmt: skip
    assert summary["model"] == "closed" and summary["generator"]["processes"] == 2
    assert set(summary["kinds"]) == {"check"} and summary["calls"] > 50
    assert summary["sample"]["pairs"] >= 4  # ORG-SQC's contacts, read by ListContacts
    assert not summary["errors"]


def test_refused_calls_are_counted_by_status_code(demo: Running, tmp_path: Path) -> None:
    """Calls the server refuses (here: a subject outside its catalogue) show up as errors by code."""
    summary, stdout, _ = _loadtest(
        demo, tmp_path, "--rate", "50", "--duration", "1", "--ids-from", str(DEMO_FILE), "--subjects", "no_such_subject",
        "--mix", "check=1",
    )  # fmt: skip
    assert summary["errors"] == {"INVALID_ARGUMENT": summary["calls"]}
    assert f"INVALID_ARGUMENT {summary['calls']:,}" in stdout


def test_the_histogram_reads_percentiles_within_a_percent() -> None:
    histogram = Histogram()
    for micros in range(1, 10_001):
        histogram.record(float(micros))
    assert histogram.percentile(0.5) == pytest.approx(5_000, rel=0.011)
    assert histogram.percentile(0.99) == pytest.approx(9_900, rel=0.011)
    assert histogram.max_us == 10_000
    other = Histogram.from_dict(json.loads(json.dumps(histogram.as_dict())))
    other.merge(histogram)
    assert other.count == 20_000 and other.percentile(0.5) == pytest.approx(5_000, rel=0.011)


def _final(lateness_ms: float, cpu: float, sent: int) -> dict[str, Any]:
    late = Histogram()
    late.record(lateness_ms * 1000)
    latency = {kind: Histogram().as_dict() for kind in ("check", "batch", "lookup", "write")}
    one = Histogram()
    one.record(500)
    latency["check"] = one.as_dict()
    return {
        "latency": latency,
        "errors": {kind: {} for kind in latency},
        "lateness": late.as_dict(),
        "wall_s": 10.0,
        "cpu_s": cpu * 10.0,
        "sent": sent,
        "dropped": 0,
    }


def test_the_report_says_when_the_generator_is_the_limit() -> None:
    args = {"target": "x:1", "rate": 1000, "concurrency": None, "duration": 10, "mix": {"check": 1}}
    kept = summarize([_final(0.2, 0.3, 10_000)], args)
    assert not kept["generator"]["limited"]
    late = summarize([_final(40, 0.5, 10_000)], args)
    busy = summarize([_final(0.2, 0.97, 10_000)], args)
    short = summarize([_final(0.2, 0.5, 6_000)], args)
    for summary in (late, busy, short):
        assert summary["generator"]["limited"]
        assert any("THE GENERATOR WAS THE LIMIT" in line for line in report_text(summary))


def test_an_actor_who_may_not_read_the_organization_gets_a_message_not_a_trace(demo: Running) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "authz.cli", "loadtest", "--target", f"127.0.0.1:{demo.app.port}", "--rate", "10",
         "--duration", "1", "--actor", "C-PR", "--organizations", "LOC-SQC-MTL"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "could not be read through the API: PERMISSION_DENIED" in done.stderr and "Traceback" not in done.stderr
