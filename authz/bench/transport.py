"""The server-configuration experiment behind docs/PERFORMANCE.md: sync vs grpc.aio.

    python -m authz.bench.transport --database-url URL --mode sync --workers 16
    python -m authz.bench.transport --database-url URL --mode aio

Serves the standard health Check (the baseline) and CheckAccess / BatchCheckAccess
answered by the real servicer over an engine built as the server builds it, with
either a sync `grpc.server` on a thread pool or a `grpc.aio` server (the handlers then
run on the event loop: the check path never blocks, so it needs no thread). Prints
"serving on HOST:PORT" and runs until terminated. Run `authz.bench.client` against it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from authz.config import Settings
from authz.server.app import AuthzApp
from authz.server.servicer import AuthzServicer
from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc

__all__ = ["main"]

_OPTIONS = [("grpc.so_reuseport", 0)]


def _aio_checks(servicer: AuthzServicer) -> grpc.GenericRpcHandler:
    """The same check handlers, called from coroutines (valid requests only: this is a bench)."""

    async def check(request: pb.CheckAccessRequest, context: Any) -> pb.CheckAccessResponse:
        return servicer.CheckAccess(request, context)

    async def batch(request: pb.BatchCheckAccessRequest, context: Any) -> pb.BatchCheckAccessResponse:
        return servicer.BatchCheckAccess(request, context)

    return grpc.method_handlers_generic_handler(
        "authz.v1.AuthzService",
        {
            "CheckAccess": grpc.unary_unary_rpc_method_handler(
                check,
                request_deserializer=pb.CheckAccessRequest.FromString,
                response_serializer=pb.CheckAccessResponse.SerializeToString,
            ),
            "BatchCheckAccess": grpc.unary_unary_rpc_method_handler(
                batch,
                request_deserializer=pb.BatchCheckAccessRequest.FromString,
                response_serializer=pb.BatchCheckAccessResponse.SerializeToString,
            ),
        },
    )


def _sync(servicer: AuthzServicer, workers: int) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=_OPTIONS)
    authz_pb2_grpc.add_AuthzServiceServicer_to_server(servicer, server)
    checker = health.HealthServicer()
    checker.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"serving on 127.0.0.1:{port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop(0)


async def _aio(servicer: AuthzServicer) -> None:
    server = grpc.aio.server(options=_OPTIONS)
    server.add_generic_rpc_handlers((_aio_checks(servicer),))
    checker = health_aio.HealthServicer()
    await checker.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"serving on 127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m authz.bench.transport")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--mode", choices=("sync", "aio"), default="sync")
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args(argv)
    # The real assembly builds the engine; its own gRPC server is never started.
    app = AuthzApp(Settings(database_url=args.database_url, listen="127.0.0.1:0"))
    servicer = AuthzServicer(app.deps)
    if args.mode == "sync":
        _sync(servicer, args.workers)
    else:
        asyncio.run(_aio(servicer))
    app.store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
