"""Finding 4: an instant out of range in `at` is INVALID_ARGUMENT, and no call logs more than a bounded amount.

Before the fix, `at` past year 9999, before year 1 or with `nanos` out of range answered
OK/denied and logged a traceback per item: a batch of 1,000 wrote 576 KB of ERROR log.
"""

from __future__ import annotations

import logging

import grpc
import pytest
from authz_client import check_request
from google.protobuf import timestamp_pb2

from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc

from ..conftest import Running

PR, SQC = "C-PR", "ORG-SQC"
YEAR_10000 = 253402300800 + 400 * 86400
BEFORE_YEAR_1 = -62135596800 - 86400
OUT_OF_RANGE = [
    timestamp_pb2.Timestamp(seconds=YEAR_10000),
    timestamp_pb2.Timestamp(seconds=BEFORE_YEAR_1),
    timestamp_pb2.Timestamp(seconds=2**62),
    timestamp_pb2.Timestamp(seconds=1_700_000_000, nanos=-1),
    timestamp_pb2.Timestamp(seconds=1_700_000_000, nanos=1_000_000_000),
]


def ask(stub: authz_pb2_grpc.AuthzServiceStub, at: timestamp_pb2.Timestamp, *, explain: bool = False) -> grpc.RpcError:
    request = pb.CheckAccessRequest(
        principal_id=PR, organization_id=SQC, subject="profil", right=pb.RIGHT_READ, at=at, explain=explain
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub.CheckAccess(request, timeout=5)
    return caught.value


def test_an_instant_out_of_range_is_invalid_argument(demo: Running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with grpc.insecure_channel(f"127.0.0.1:{demo.app.port}") as channel:
        stub = authz_pb2_grpc.AuthzServiceStub(channel)
        for at in OUT_OF_RANGE:
            for explain in (False, True):
                error = ask(stub, at, explain=explain)
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (at, explain)
                assert "at" in (error.details() or "")
        batch = pb.BatchCheckAccessRequest(
            checks=[
                pb.CheckAccessRequest(principal_id=PR, organization_id=SQC, subject="profil", right=pb.RIGHT_READ),
                *(
                    pb.CheckAccessRequest(
                        principal_id=PR, organization_id=SQC, subject="profil", right=pb.RIGHT_READ, at=at
                    )
                    for at in OUT_OF_RANGE
                ),
            ]
        )
        with pytest.raises(grpc.RpcError) as caught:
            stub.BatchCheckAccess(batch, timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "checks[1].at" in (caught.value.details() or "")
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


def test_a_batch_of_failing_decisions_logs_a_bounded_amount(
    demo: Running, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> bool:
        raise RuntimeError("a fault inside the decision " + "x" * 500)

    monkeypatch.setattr(demo.app.engine, "check", broken)
    caplog.set_level(logging.DEBUG)
    answers = demo.client.batch_check([check_request(PR, SQC, "profil", "read") for _ in range(1000)])
    assert len(answers) == 1000 and not any(answer.allowed for answer in answers)
    # One traceback for the whole batch and a count of the others: a few KB, not one traceback per item.
    assert len([record for record in caplog.records if record.exc_info]) == 1
    assert len(caplog.records) <= 5 and len(caplog.text) < 20_000, caplog.text[:2000]
