"""Who a request is and whether it is one: duplicated credentials, request ids, undecodable requests.

(A start date in the past through the API is refused: tests/integration/test_bad_input.py,
case "start date in the past".)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from authz_client import AuthzClient, FailedPreconditionError

from authz.server.auth import hash_token
from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc

from ..conftest import Running
from ..integration.helpers import row_counts

PORTAL_TOKEN = "portal-3c5e0f6b1d9a4c7e8f2a0b4d6e8f1a3c"
ADMIN_TOKEN = "admin-console-7d6c5b4a39281706f5e4d3c2b1a09f8e"
PR, DIR1, SQC = "C-PR", "C-DIR1", "ORG-SQC"


@pytest.fixture
def guarded(start_server: Callable[..., Running], tmp_path: Path) -> Running:
    path = tmp_path / "callers.json"
    path.write_text(
        json.dumps(
            {
                "callers": [
                    {"name": "portal", "token_sha256": hash_token(PORTAL_TOKEN), "methods": ["*"]},
                    {"name": "admin-console", "token_sha256": hash_token(ADMIN_TOKEN), "methods": ["*"]},
                ]
            }
        )
    )
    return start_server(callers_file=path)


def test_two_authorization_headers_are_refused(guarded: Running) -> None:
    request = pb.CheckAccessRequest(principal_id=PR, organization_id=SQC, subject="profil", right=pb.RIGHT_READ)
    with grpc.insecure_channel(f"127.0.0.1:{guarded.app.port}") as channel:
        stub = authz_pb2_grpc.AuthzServiceStub(channel)
        assert stub.CheckAccess(request, timeout=5, metadata=[("authorization", f"Bearer {PORTAL_TOKEN}")]).allowed
        for headers in (
            [("authorization", f"Bearer {PORTAL_TOKEN}"), ("authorization", f"Bearer {PORTAL_TOKEN}")],
            [("authorization", f"Bearer {PORTAL_TOKEN}"), ("authorization", "Bearer not-a-token")],
            [("authorization", "Bearer not-a-token"), ("authorization", f"Bearer {ADMIN_TOKEN}")],
        ):
            with pytest.raises(grpc.RpcError) as refused:
                stub.CheckAccess(request, timeout=5, metadata=headers)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def grant(
    client: AuthzClient, actor: str, subjects: list[tuple[str, str]], request_id: str, role: str = "membre_du_personnel"
) -> str:
    return client.grant_relation(
        actor, SQC, contact_id="C-IND", role=role, subjects=subjects, attest=True,
        request_id=request_id,
    ).relation_id  # fmt: skip


def test_a_request_id_is_scoped_by_caller_and_actor(guarded: Running) -> None:
    target = f"127.0.0.1:{guarded.app.port}"
    with AuthzClient(target, token=PORTAL_TOKEN) as portal, AuthzClient(target, token=ADMIN_TOKEN) as console:
        first = grant(portal, PR, [("profil", "read")], "req-1")
        # Another actor, or another calling service, reusing the id: a different request, not a conflict.
        # (Each with a role of its own: a second relation with the same role would repeat the first.)
        by_another_actor = grant(portal, DIR1, [("rapport_mensuel", "read")], "req-1", role="representant")
        by_another_caller = grant(console, PR, [("scrutin_syndical", "read")], "req-1", role="dirigeant")
        assert len({first, by_another_actor, by_another_caller}) == 3
        # The same caller and actor: a retry answers the first result; a different request is a conflict.
        assert grant(portal, PR, [("profil", "read")], "req-1") == first
        before = row_counts(guarded)
        with pytest.raises(FailedPreconditionError):
            grant(portal, PR, [("paiements_et_releves", "read")], "req-1")
        assert row_counts(guarded) == before


def test_the_same_subjects_in_another_order_are_the_same_request(demo: Running) -> None:
    subjects = [("profil", "read"), ("rapport_mensuel", "write"), ("scrutin_syndical", "read")]
    first = grant(demo.client, PR, subjects, "req-order")
    before = row_counts(demo)
    assert grant(demo.client, PR, list(reversed(subjects)), "req-order") == first
    assert row_counts(demo) == before


@pytest.mark.parametrize(
    "method", ["GrantRelation", "RevokeRelation", "CheckAccess", "BatchCheckAccess", "ListContacts"]
)
def test_a_request_that_cannot_be_deserialized_is_invalid_argument(demo: Running, method: str) -> None:
    before = row_counts(demo)
    with grpc.insecure_channel(f"127.0.0.1:{demo.app.port}") as channel:
        raw = channel.unary_unary(
            f"/authz.v1.AuthzService/{method}",
            request_serializer=lambda data: data,
            response_deserializer=lambda data: data,
        )
        for garbage in (b"\x0a\xff\xff\xff\xff\x0f", b"\xff\xff\xff", b"\x08"):
            with pytest.raises(grpc.RpcError) as refused:
                raw(garbage, timeout=5)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, garbage)
    assert row_counts(demo) == before
