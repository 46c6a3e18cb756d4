"""What the server interceptor costs a unary call, in process: `python -m authz.bench.interceptors`.

Prints microseconds a call above a bare pass-through for the service's own interceptor
(metrics on, logging decided, the decision counter of checks) and, when the package is
installed, for py-grpc-prometheus's `PromServerInterceptor`, which binds its label children
on every call; then what the sibling-revision guard of worker processes costs a call when
the process is not behind.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable
from typing import Any

import grpc
from prometheus_client import CollectorRegistry

from authz.replication.siblings import SiblingRevision
from authz.server.observability import Metrics, ObservabilityInterceptor

CALLS = 100_000


class _Details:
    method = "/authz.v1.AuthzService/CheckAccess"
    invocation_metadata = ()


class _State:
    client = None
    code = None


class _Context:
    _state = _State()

    def code(self) -> None:
        return None

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    def time_remaining(self) -> None:
        return None

    def set_code(self, _code: Any) -> None:
        pass

    def set_details(self, _details: Any) -> None:
        pass

    def is_active(self) -> bool:
        return True


class _Answer:
    allowed = True


def _continuation(_details: Any) -> Any:
    return grpc.unary_unary_rpc_method_handler(lambda _request, _context: _Answer())


def per_call(interceptor: Any, calls: int = CALLS) -> float:
    """Seconds a call through `interceptor`, the handler made per call as gRPC does."""
    context, details = _Context(), _Details()

    def one() -> None:
        interceptor.intercept_service(_continuation, details).unary_unary(None, context)

    one()
    return timeit.timeit(one, number=calls) / calls


class _Bare:
    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        return continuation(details)


def main() -> None:
    bare = per_call(_Bare())
    ours = per_call(ObservabilityInterceptor(Metrics(CollectorRegistry())))
    print(f"bare pass-through: {bare * 1e6:.2f} µs a call")
    print(f"authz interceptor (metrics on): +{(ours - bare) * 1e6:.2f} µs a call")
    try:
        from py_grpc_prometheus.prometheus_server_interceptor import PromServerInterceptor  # type: ignore[import-not-found]
    except ImportError:
        print("py-grpc-prometheus: not installed (pip install py-grpc-prometheus to compare)")
    else:
        theirs = per_call(PromServerInterceptor(enable_handling_time_histogram=True))
        print(f"py-grpc-prometheus PromServerInterceptor: +{(theirs - bare) * 1e6:.2f} µs a call")
    siblings = SiblingRevision()
    siblings.publish(5)
    guard = siblings.reader(lambda: 5, lambda _target, _timeout: None)
    noop: Callable[[float], None] = lambda _timeout: None  # noqa: E731
    guarded = timeit.timeit(lambda: guard(2.0), number=10 * CALLS) / (10 * CALLS)
    empty = timeit.timeit(lambda: noop(2.0), number=10 * CALLS) / (10 * CALLS)
    print(f"sibling revision guard, not behind: +{(guarded - empty) * 1e9:.0f} ns a call")


if __name__ == "__main__":
    main()
