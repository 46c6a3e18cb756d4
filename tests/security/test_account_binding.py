"""`require_account` binds reads of personal data and Watch, not only writes; Watch is given by
name, scoped to organizations, limited per caller, and refuses garbage as INVALID_ARGUMENT."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from authz_client import AuthzClient, PermissionDeniedError

from authz.calls import ACCOUNT_METADATA
from authz.server.auth import hash_token
from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc

from ..conftest import Running
from ..integration.helpers import codes_for

PORTAL, SELF, WIDE = (
    "portal-token-0123456789abcdef0123",
    "self-token-0123456789abcdef012345",
    "wide-token-0123456789abcdef01234",
)
PR, DIR1, SQC, LOCAL, ABC = "C-PR", "C-DIR1", "ORG-SQC", "LOC-SQC-MTL", "EMP-ABC"
JULIE = "acct-julie"


@pytest.fixture
def server(start_server: Callable[..., Running], tmp_path: Path) -> Running:
    path = tmp_path / "callers.json"
    path.write_text(
        json.dumps(
            {
                "callers": [
                    {"name": "portal", "token_sha256": hash_token(PORTAL), "methods": ["*", "Watch"]},
                    {
                        "name": "self-service",
                        "token_sha256": hash_token(SELF),
                        "methods": ["*", "Watch"],
                        "require_account": True,
                    },
                    {"name": "wide", "token_sha256": hash_token(WIDE), "methods": ["*"]},
                ]
            }
        )
    )
    running = start_server(callers_file=path, max_watchers=1, max_watchers_total=3, watch_checkpoint_seconds=0.2)
    portal = AuthzClient(f"127.0.0.1:{running.app.port}", token=PORTAL, timeout=10)
    portal.issue_link_code(PR, SQC, PR, attest=True)
    portal.redeem_link_code(JULIE, codes_for(running, "julie.tremblay@")[-1])
    portal.close()
    return running


@pytest.fixture
def stub(server: Running) -> Iterator[authz_pb2_grpc.AuthzServiceStub]:
    channel = grpc.insecure_channel(f"127.0.0.1:{server.app.port}")
    yield authz_pb2_grpc.AuthzServiceStub(channel)
    channel.close()


def meta(token: str, account: str | None = None) -> list[tuple[str, str]]:
    pairs = [("authorization", f"Bearer {token}")]
    return [*pairs, (ACCOUNT_METADATA, account)] if account is not None else pairs


def code_of(call: Callable[..., Any], *args: Any) -> grpc.StatusCode:
    try:
        call(*args)
    except grpc.RpcError as error:
        return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def personal_reads(actor: str, account: str) -> dict[str, Callable[[authz_pb2_grpc.AuthzServiceStub, Any], Any]]:
    return {
        "ListContacts": lambda s, m: s.ListContacts(
            pb.ListContactsRequest(actor_id=actor, organization_id=SQC), metadata=m
        ),
        "GetContact": lambda s, m: s.GetContact(
            pb.GetContactRequest(actor_id=actor, organization_id=SQC, contact_id="C-IND"), metadata=m
        ),
        "ListRequests": lambda s, m: s.ListRequests(
            pb.ListRequestsRequest(actor_id=actor, organization_id=SQC), metadata=m
        ),
        "ListAuthorizations": lambda s, m: s.ListAuthorizations(
            pb.ListAuthorizationsRequest(actor_id=actor, organization_id=SQC), metadata=m
        ),
        "ListMigrationIssues": lambda s, m: s.ListMigrationIssues(
            pb.ListMigrationIssuesRequest(actor_id=actor, organization_id=SQC), metadata=m
        ),
        "ListProfiles": lambda s, m: s.ListProfiles(pb.ListProfilesRequest(account_id=account), metadata=m),
    }


def test_reads_of_personal_data_are_bound_to_the_account(stub: authz_pb2_grpc.AuthzServiceStub) -> None:
    denied = grpc.StatusCode.PERMISSION_DENIED
    for name, read in personal_reads(PR, JULIE).items():
        assert code_of(read, stub, meta(SELF)) is denied, name  # no account named
        assert code_of(read, stub, meta(SELF, "acct-nobody")) is denied, name  # not her profile / account
        assert code_of(read, stub, meta(SELF, JULIE)) is grpc.StatusCode.OK, name  # as herself
        assert code_of(read, stub, meta(PORTAL)) is grpc.StatusCode.OK, name  # a caller not so bound
    # Julie's account reading as Marc, a manager of the same association: refused.
    for name, read in personal_reads(DIR1, "acct-marc").items():
        assert code_of(read, stub, meta(SELF, JULIE)) is denied, name
    # Checks and lookups carry no personal data: not bound.
    check = pb.CheckAccessRequest(principal_id=PR, organization_id=SQC, subject="profil", right=pb.RIGHT_READ)
    assert stub.CheckAccess(check, metadata=meta(SELF)).allowed
    lookup = pb.LookupPrincipalsRequest(organization_id=SQC, subject="relations", right=pb.RIGHT_WRITE)
    assert stub.LookupPrincipals(lookup, metadata=meta(SELF)).principal_ids


def first_change(stream: Any) -> pb.WatchResponse:
    for message in stream:
        if not message.checkpoint:
            return message  # type: ignore[no-any-return]
    raise AssertionError("the stream ended")


def test_watch_is_named_in_the_callers_file_and_bound_to_the_account(
    server: Running, stub: authz_pb2_grpc.AuthzServiceStub
) -> None:
    def opened(request: pb.WatchRequest, metadata: list[tuple[str, str]]) -> grpc.StatusCode:
        stream = stub.Watch(request, metadata=metadata, timeout=5)
        try:
            return code_of(lambda: next(stream))
        finally:
            stream.cancel()

    sqc = pb.WatchRequest(organization_ids=[SQC])
    assert opened(sqc, meta(WIDE)) is grpc.StatusCode.PERMISSION_DENIED  # "*" does not give Watch
    assert opened(sqc, meta(SELF)) is grpc.StatusCode.PERMISSION_DENIED  # no account
    assert opened(pb.WatchRequest(), meta(SELF, JULIE)) is grpc.StatusCode.PERMISSION_DENIED  # every organization
    assert opened(pb.WatchRequest(organization_ids=[ABC]), meta(SELF, JULIE)) is grpc.StatusCode.PERMISSION_DENIED
    assert opened(pb.WatchRequest(organization_ids=["bad id"]), meta(SELF, JULIE)) is grpc.StatusCode.INVALID_ARGUMENT

    # Scoped to the association: a change in the local is skipped, the association's is sent.
    portal = AuthzClient(f"127.0.0.1:{server.app.port}", token=PORTAL, timeout=10)
    start = portal.check(PR, SQC, "profil", pb.RIGHT_READ).revision
    portal.grant_relation("C-LOC-DIR", LOCAL, contact_id="C-LOC-MEM", role="individu_autorise", attest=True)
    granted = portal.grant_relation(PR, SQC, contact_id="C-IND", role="membre_du_personnel", attest=True)
    portal.close()
    stream = stub.Watch(
        pb.WatchRequest(after_revision=start, organization_ids=[SQC]), metadata=meta(SELF, JULIE), timeout=10
    )
    change = first_change(stream)
    stream.cancel()
    assert change.revision == granted.revision
    assert {r.organization_id for r in change.relations} == {SQC}


def test_one_caller_cannot_hold_every_watch_slot(server: Running, stub: authz_pb2_grpc.AuthzServiceStub) -> None:
    held = stub.Watch(pb.WatchRequest(), metadata=meta(PORTAL), timeout=10)
    first = threading.Thread(target=lambda: next(held))
    first.start()
    first.join(5)  # a checkpoint arrives: the stream holds its slot
    second = stub.Watch(pb.WatchRequest(), metadata=meta(PORTAL), timeout=5)
    with pytest.raises(grpc.RpcError) as refused:
        next(second)
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    # Another caller still gets a stream.
    other = stub.Watch(pb.WatchRequest(organization_ids=[SQC]), metadata=meta(SELF, JULIE), timeout=5)
    assert next(other).revision
    other.cancel()
    held.cancel()


def test_garbage_sent_to_watch_is_invalid_argument(demo: Running) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{demo.app.port}") as channel:
        raw = channel.unary_stream(
            "/authz.v1.AuthzService/Watch", request_serializer=lambda data: data, response_deserializer=lambda d: d
        )
        for garbage in (b"\x0a\xff\xff\xff\xff\x0f", b"\xff\xff\xff", b"\x08"):
            with pytest.raises(grpc.RpcError) as refused:
                next(raw(garbage, timeout=5))
            assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT, garbage


def test_list_profiles_for_another_account_is_refused_through_the_client(server: Running) -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{server.app.port}")
    client = AuthzClient(channel=channel, token=SELF, timeout=5)
    with pytest.raises(PermissionDeniedError):
        client.list_profiles(JULIE)  # no account named with the read
    channel.close()
