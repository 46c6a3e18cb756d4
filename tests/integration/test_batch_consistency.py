"""BatchCheckAccess catches up once per batch, to the freshest level any item asks for."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc

from ..conftest import Running

PR, SQC = "C-PR", "ORG-SQC"


def counting_catch_ups(server: Running, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record every catch-up the follower is asked for (its target)."""
    follower = server.app.follower
    calls: list[Any] = []
    original = follower.catch_up

    def counted(target: int | None = None, timeout: float | None = None, field_path: str = "") -> None:
        calls.append(target)
        original(target, timeout, field_path)

    monkeypatch.setattr(follower, "catch_up", counted)
    return calls


def item(consistency: pb.Consistency | None = None) -> pb.CheckAccessRequest:
    request = pb.CheckAccessRequest(principal_id=PR, organization_id=SQC, subject="profil", right=pb.RIGHT_READ)
    if consistency is not None:
        request.consistency.CopyFrom(consistency)
    return request


def test_a_batch_of_fully_consistent_items_catches_up_once(demo: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = authz_pb2_grpc.AuthzServiceStub(grpc.insecure_channel(f"127.0.0.1:{demo.app.port}"))
    calls = counting_catch_ups(demo, monkeypatch)
    batch = pb.BatchCheckAccessRequest(checks=[item(pb.Consistency(fully_consistent=True)) for _ in range(1000)])
    response = raw.BatchCheckAccess(batch, timeout=30)
    assert len(response.results) == 1000 and all(r.allowed for r in response.results)
    assert calls == [None]  # one pass to the store's newest, not a thousand


def test_the_freshest_item_sets_the_level(
    start_server: Callable[..., Running], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tokens of several revisions, one fully_consistent item among them: one catch-up, to the newest."""
    writer = start_server()
    reader = start_server(writer.app.settings.database_url, demo=False, follow_poll_seconds=3600.0)
    tokens = [
        writer.client.update_contact(PR, SQC, "C-IND", phone=f"+1 514 555-01{n:02d}", attest=True).revision
        for n in range(3)
    ]
    raw = authz_pb2_grpc.AuthzServiceStub(grpc.insecure_channel(f"127.0.0.1:{reader.app.port}"))
    calls = counting_catch_ups(reader, monkeypatch)
    tokened = [item(pb.Consistency(at_least_as_fresh=token)) for token in tokens * 100]
    raw.BatchCheckAccess(pb.BatchCheckAccessRequest(checks=tokened), timeout=30)
    newest = reader.app.tokens.parse(tokens[-1], "token")
    assert calls == [newest] and reader.app.engine.revision >= newest
    calls.clear()
    tokened.append(item(pb.Consistency(fully_consistent=True)))
    raw.BatchCheckAccess(pb.BatchCheckAccessRequest(checks=tokened, consistency=pb.Consistency()), timeout=30)
    assert calls == [None]


def test_a_bad_token_in_any_item_is_reported_with_its_path(demo: Running) -> None:
    raw = authz_pb2_grpc.AuthzServiceStub(grpc.insecure_channel(f"127.0.0.1:{demo.app.port}"))
    batch = pb.BatchCheckAccessRequest(checks=[item(), item(pb.Consistency(at_least_as_fresh="garbage"))])
    with pytest.raises(grpc.RpcError) as refused:
        raw.BatchCheckAccess(batch, timeout=10)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(refused.value)  # type: ignore[arg-type]
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    assert [v.field for v in bad.field_violations] == ["checks[1].consistency.at_least_as_fresh"]


def test_a_token_beyond_the_store_is_refused_beside_a_fully_consistent_item(demo: Running) -> None:
    raw = authz_pb2_grpc.AuthzServiceStub(grpc.insecure_channel(f"127.0.0.1:{demo.app.port}"))
    revision, store_id = demo.client.check(PR, SQC, "profil", 1).revision.split(".")
    ahead = f"{int(revision) + 1000}.{store_id}"
    batch = pb.BatchCheckAccessRequest(
        checks=[item(pb.Consistency(fully_consistent=True)), item(pb.Consistency(at_least_as_fresh=ahead))]
    )
    with pytest.raises(grpc.RpcError) as refused:
        raw.BatchCheckAccess(batch, timeout=10)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(refused.value)  # type: ignore[arg-type]
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    assert [v.field for v in bad.field_violations] == ["checks[1].consistency.at_least_as_fresh"]
