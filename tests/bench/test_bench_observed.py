"""The side-by-side server run of `authz bench`: figures split per server, bars for each. No timing is asserted."""

from __future__ import annotations

from typing import Any

from authz.bench.runner import _check_path_bars, _figures_of


def figures(p50: float, per_second: float) -> dict[str, Any]:
    return {"p50_ms": p50, "p99_ms": p50 * 2, "per_second": per_second}


CLIENT_OUTPUT: dict[str, Any] = {
    "baseline": "grpc.health.v1.Health/Check on the same server",
    "sequential": {
        "baseline": figures(0.30, 0),
        "check": figures(0.32, 0),
        "baseline@observed": figures(0.31, 0),
        "check@observed": figures(0.40, 0),
    },
    "allowed": 1234,
    "in_flight_32": {
        "baseline": figures(0, 5000),
        "check": figures(0, 4900),
        "baseline@observed": figures(0, 5000),
        "check@observed": figures(0, 4000),
    },
    "batch_100_in_flight_4": {"calls": 300, "checks_per_second": 150_000.0},
}


def test_client_figures_are_split_per_server() -> None:
    plain, observed = _figures_of(CLIENT_OUTPUT, ""), _figures_of(CLIENT_OUTPUT, "observed")
    assert set(plain["sequential"]) == set(observed["sequential"]) == {"baseline", "check"}
    assert plain["sequential"]["check"]["p50_ms"] == 0.32 and observed["sequential"]["check"]["p50_ms"] == 0.40
    assert observed["in_flight_32"]["check"]["per_second"] == 4000
    assert "batch_100_in_flight_4" in plain and "batch_100_in_flight_4" not in observed  # batches: first server only


def test_each_server_gets_its_own_check_path_bars() -> None:
    plain = _check_path_bars(_figures_of(CLIENT_OUTPUT, ""), "")
    observed = _check_path_bars(_figures_of(CLIENT_OUTPUT, "observed"), " (metrics + JSON logs on)")
    assert [bar.passed for bar in plain] == [True, True]
    # 0.40 / 0.31 = 1.29 > 1.15 and 4000 / 5000 = 0.8 < 0.85: both missed, and named as the observed server's.
    assert [bar.passed for bar in observed] == [False, False]
    assert all(bar.name.endswith("(metrics + JSON logs on)") for bar in observed)
