"""Finding 1: a write with no deadline is served, bounded by the server's own wait.

gRPC's default (and grpcurl's, and the project's client with `timeout=None`) is no
deadline; gRPC reports it as a huge "time remaining", which used to overflow `time_t`
when waiting for the write lock: every write answered INTERNAL.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
from authz_client import AuthzClient
from authz_client import _requests as rq

from authz.domain.secrets import make_django_pbkdf2
from authz.store.interface import LegacyAccount
from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc

from ..conftest import Running
from ..integration.helpers import codes_for

PR, SQC = "C-PR", "ORG-SQC"


def add_legacy_login(server: Running, username: str, password: str, contact_id: str) -> None:
    with server.store.transaction() as tx:
        tx.add_legacy_account(LegacyAccount(username, make_django_pbkdf2(password, "nodeadline"), (contact_id,)))


def every_write(server: Running, call: Callable[[str, object], object], tag: str) -> None:
    """Each write RPC once, successfully, through `call(method_name, request)`."""
    grant = call(
        "GrantRelation",
        rq.grant_relation_request(
            PR, SQC, contact_id="C-REP", new_contact=None, grantee_organization_id=None, target_organization_id="",
            role="membre_du_personnel", start_date=None, end_date=None, subjects=[("profil", "read")], attest=True,
            request_id=f"grant-{tag}",
        ),
    )  # fmt: skip
    assert isinstance(grant, pb.GrantRelationResponse) and grant.relation_id
    revoke = call(
        "RevokeRelation",
        rq.revoke_relation_request(
            PR, SQC, contact_id="C-REP", grantee_organization_id=None, all_relations=False,
            relation_ids=[grant.relation_id], relation_id=None, subjects=None, attest=True, request_id="",
        ),
    )  # fmt: skip
    assert isinstance(revoke, pb.RevokeRelationResponse) and revoke.relations_ended == 1
    issued = call(
        "IssueLinkCode",
        pb.IssueLinkCodeRequest(
            actor_id=PR, organization_id=SQC, contact_id="C-IND", attestation=pb.Attestation(changes_accurate=True)
        ),
    )
    assert isinstance(issued, pb.IssueLinkCodeResponse)
    code = codes_for(server, "luc.cote@")[-1]
    redeemed = call("RedeemLinkCode", pb.RedeemLinkCodeRequest(account_id=f"acct-luc-{tag}", code=code))
    assert isinstance(redeemed, pb.RedeemLinkCodeResponse)
    add_legacy_login(server, f"legacy-{tag}", "s3cret-password", "C-DIR1")
    linked = call(
        "LinkLegacyAccess",
        pb.LinkLegacyAccessRequest(
            account_id=f"acct-marc-{tag}", legacy_username=f"legacy-{tag}", legacy_password="s3cret-password"
        ),
    )
    assert isinstance(linked, pb.LinkLegacyAccessResponse) and list(linked.contact_ids) == ["C-DIR1"]


def test_every_write_through_the_client_with_no_timeout(demo: Running) -> None:
    with AuthzClient(f"127.0.0.1:{demo.app.port}", timeout=None) as client:
        grant = client.grant_relation(
            PR, SQC, contact_id="C-REP", role="membre_du_personnel", subjects=[("profil", "read")], attest=True,
            request_id="grant-client",
        )  # fmt: skip
        assert grant.relation_id
        assert (
            client.revoke_relation(
                PR, SQC, contact_id="C-REP", relation_ids=[grant.relation_id], attest=True
            ).relations_ended
            == 1
        )
        client.issue_link_code(PR, SQC, "C-IND", attest=True)
        client.redeem_link_code("acct-luc-client", codes_for(demo, "luc.cote@")[-1])
        add_legacy_login(demo, "legacy-client", "s3cret-password", "C-DIR1")
        linked = client.link_legacy_access("acct-marc-client", "legacy-client", "s3cret-password")
        assert list(linked.contact_ids) == ["C-DIR1"]
        assert {p.contact_id for p in client.list_profiles("acct-luc-client").profiles} == {"C-IND"}


def test_every_write_through_a_raw_stub_with_no_timeout(demo: Running) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{demo.app.port}") as channel:
        stub = authz_pb2_grpc.AuthzServiceStub(channel)
        every_write(demo, lambda method, request: getattr(stub, method)(request), "stub")
