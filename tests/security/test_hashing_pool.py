"""Password hashing cannot stall the service: a burst of legacy sign-ins is bounded, the excess
refused at once, and checks and health keep answering meanwhile."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import grpc
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc

from ..conftest import Running

BURST = 24


def test_a_burst_of_legacy_sign_ins_leaves_checks_and_health_answering(
    start_server: Callable[..., Running],
) -> None:
    server = start_server(max_concurrent_hashing=1)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.app.port}")
    stub = authz_pb2_grpc.AuthzServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    barrier = threading.Barrier(BURST + 1)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def sign_in(n: int) -> None:
        # A fresh account and login each: no throttle applies, every call would run PBKDF2.
        request = pb.LinkLegacyAccessRequest(
            account_id=f"acct-burst-{n}", legacy_username=f"nobody-{n}", legacy_password="wrong password"
        )
        barrier.wait(timeout=10)
        try:
            stub.LinkLegacyAccess(request, timeout=60)
            outcome = "OK"
        except grpc.RpcError as error:
            outcome = error.code().name
            status = rpc_status.from_call(error)  # type: ignore[arg-type]
            info = error_details_pb2.ErrorInfo()
            if status is not None and status.details and status.details[0].Unpack(info):
                outcome += f":{info.reason}"
        with lock:
            outcomes[outcome] += 1

    threads = [threading.Thread(target=sign_in, args=(n,)) for n in range(BURST)]
    for thread in threads:
        thread.start()
    barrier.wait(timeout=10)
    # While the burst runs: a check and a health probe answer (generous bounds: this is not a timing test).
    check = pb.CheckAccessRequest(principal_id="C-PR", organization_id="ORG-SQC", subject="profil", right=1)
    for _ in range(5):
        assert stub.CheckAccess(check, timeout=5).allowed
        assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status == 1
    for thread in threads:
        thread.join(60)
    assert sum(outcomes.values()) == BURST, outcomes
    # Some were refused at once, asking to try again; the others were weighed (a wrong password).
    assert outcomes["RESOURCE_EXHAUSTED:HASHING_BUSY"] >= 1, outcomes
    assert outcomes["INVALID_ARGUMENT"] >= 1, outcomes
    assert set(outcomes) <= {"RESOURCE_EXHAUSTED:HASHING_BUSY", "INVALID_ARGUMENT"}, outcomes
    channel.close()


def test_the_server_bounds_calls_in_progress(start_server: Callable[..., Running]) -> None:
    """Past `max_concurrent_rpcs` calls in progress, gRPC refuses the next at once."""
    server = start_server(max_concurrent_rpcs=2, watch_checkpoint_seconds=0.2)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.app.port}")
    stub = authz_pb2_grpc.AuthzServiceStub(channel)
    streams = [stub.Watch(pb.WatchRequest(), timeout=10) for _ in range(2)]
    for stream in streams:
        next(stream)  # each holds a call in progress
    check = pb.CheckAccessRequest(principal_id="C-PR", organization_id="ORG-SQC", subject="profil", right=1)
    try:
        stub.CheckAccess(check, timeout=5)
        refused = None
    except grpc.RpcError as error:
        refused = error.code()
    assert refused is grpc.StatusCode.RESOURCE_EXHAUSTED
    for stream in streams:
        stream.cancel()
    channel.close()
