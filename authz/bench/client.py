"""The load side of `authz bench`: run in its own process, against a server in another.

    python -m authz.bench.client SPEC.json   ->   results as JSON on stdout

The spec names the target, the checks to send and how many calls each measure makes.
Every loop is bounded by a call count and by a time limit. The baseline is the standard
`grpc.health.v1.Health/Check`, served by the same server process on the same port: a
unary call that does one dictionary read, i.e. the cost of the transport and the
server's dispatch with no work behind it.
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc

__all__ = ["main", "run"]

Call = Callable[[int], Any]


def _percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))]


def sequential(calls: dict[str, Call], count: int, block: int, time_limit: float) -> dict[str, dict[str, float]]:
    """One call at a time; the kinds alternate by small blocks, in alternating order, so
    that noise and any first-after-switch cost hit them alike."""
    latencies: dict[str, list[float]] = {name: [] for name in calls}
    deadline = time.monotonic() + time_limit
    done = 0
    rounds = 0
    while done < count and time.monotonic() < deadline:
        order = list(calls.items()) if rounds % 2 == 0 else list(reversed(calls.items()))
        for name, call in order:
            sink = latencies[name]
            for i in range(block):
                started = time.perf_counter()
                call(done + i)
                sink.append(time.perf_counter() - started)
        done += block
        rounds += 1
    result = {}
    for name, values in latencies.items():
        values.sort()
        result[name] = {
            "calls": len(values),
            "p50_ms": statistics.median(values) * 1e3,
            "p99_ms": _percentile(values, 0.99) * 1e3,
        }
    return result


def in_flight(start: Callable[[int], grpc.Future], window: int, count: int, time_limit: float) -> dict[str, float]:
    """Keep `window` calls in flight until `count` are done (or time is up): calls per second."""
    slots = threading.Semaphore(window)
    finished = threading.Event()
    lock = threading.Lock()
    state = {"done": 0, "errors": 0}

    def on_done(future: grpc.Future) -> None:
        with lock:
            state["done"] += 1
            if future.exception() is not None:
                state["errors"] += 1
            if state["done"] >= count:
                finished.set()
        slots.release()

    deadline = time.monotonic() + time_limit
    started = time.perf_counter()
    sent = 0
    while sent < count and time.monotonic() < deadline:
        slots.acquire()
        start(sent).add_done_callback(on_done)
        sent += 1
    while True:
        with lock:
            if state["done"] >= sent:
                break
        finished.wait(0.01)
        if time.monotonic() > deadline + 10:
            break
    elapsed = time.perf_counter() - started
    return {
        "calls": state["done"],
        "errors": state["errors"],
        "seconds": elapsed,
        "per_second": state["done"] / elapsed,
    }


def _kind(method: Any, request: Callable[[int], Any], timeout: float) -> tuple[Call, Callable[[int], grpc.Future]]:
    """One kind of call: blocking, and started as a future."""

    def call(i: int) -> Any:
        return method(request(i), timeout=timeout)

    def start(i: int) -> grpc.Future:
        return method.future(request(i), timeout=timeout)

    return call, start


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure every target of the spec (`targets`: [label, host:port] pairs, or one `target`).

    Kinds of call of a labelled target are named `baseline@label` and `check@label`; all
    kinds alternate in the same loops, so a burst of load from elsewhere lands on each.
    Batches go to the first target only.
    """
    targets = spec.get("targets") or [["", spec["target"]]]
    timeout = 30.0
    checks = [
        pb.CheckAccessRequest(principal_id=c, organization_id=o, subject=s, right=r) for c, o, s, r in spec["checks"]
    ]
    probe = health_pb2.HealthCheckRequest(service="")
    n = len(checks)
    channels = []
    calls: dict[str, Call] = {}
    starts: dict[str, Callable[[int], grpc.Future]] = {}
    for label, target in targets:
        channel = grpc.insecure_channel(target)
        grpc.channel_ready_future(channel).result(timeout=30)
        channels.append(channel)
        stub = authz_pb2_grpc.AuthzServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        suffix = f"@{label}" if label else ""
        calls[f"baseline{suffix}"], starts[f"baseline{suffix}"] = _kind(health.Check, lambda i: probe, timeout)
        calls[f"check{suffix}"], starts[f"check{suffix}"] = _kind(stub.CheckAccess, lambda i: checks[i % n], timeout)
    stub = authz_pb2_grpc.AuthzServiceStub(channels[0])

    limit = float(spec.get("time_limit", 60))
    out: dict[str, Any] = {"baseline": "grpc.health.v1.Health/Check on the same server"}
    sequential(calls, spec.get("warmup", 300), 100, limit)  # warm every path and connection
    out["sequential"] = sequential(calls, spec["sequential_calls"], spec.get("block", 50), limit)
    out["allowed"] = sum(stub.CheckAccess(checks[i], timeout=timeout).allowed for i in range(min(n, 2000)))
    for window in spec["windows"]:
        # Alternating rounds of each kind, summed: a burst of noise lands on every kind.
        # Finer rounds with more kinds to alternate: each kind's share of a burst stays small.
        rounds = max(1, spec.get("rounds", 4 * len(targets)))
        totals = {name: {"calls": 0.0, "errors": 0.0, "seconds": 0.0} for name in starts}
        for round_number in range(rounds):
            order = list(starts) if round_number % 2 == 0 else list(reversed(starts))
            for name in order:
                measured = in_flight(starts[name], window, spec["concurrent_calls"] // rounds, limit / rounds)
                for key in totals[name]:
                    totals[name][key] += measured[key]
        out[f"in_flight_{window}"] = {
            name: {**figures, "per_second": figures["calls"] / figures["seconds"]} for name, figures in totals.items()
        }
    size = spec["batch_size"]
    batches = [pb.BatchCheckAccessRequest(checks=checks[i : i + size]) for i in range(0, n - size + 1, size)]
    for window in (1, 4):
        result = in_flight(
            lambda i: stub.BatchCheckAccess.future(batches[i % len(batches)], timeout=timeout),
            window,
            spec["batch_calls"],
            limit,
        )
        result["checks_per_second"] = result["per_second"] * size
        out[f"batch_{size}_in_flight_{window}"] = result
    for channel in channels:
        channel.close()
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    with open(args[0], encoding="utf-8") as handle:
        spec = json.load(handle)
    json.dump(run(spec), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
