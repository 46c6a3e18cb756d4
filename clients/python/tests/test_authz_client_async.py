"""The async client against the same in-process fake servicer (asyncio.run, no plugin)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
import grpc.aio
import pytest
from authz_client import (
    AsyncAuthzClient,
    AuthzClientError,
    FailedPreconditionError,
    InvalidArgumentError,
    NewContact,
    NotFoundError,
    PermissionDeniedError,
    Right,
    Role,
    UnauthenticatedError,
    UnavailableError,
    check_request,
)
from fake_authz import FakeAuthz

TOKEN = "async-service-token"

T = TypeVar("T")


def run_with_client(target: str, body: Callable[[AsyncAuthzClient], Awaitable[T]], **options: object) -> T:
    """Open a client inside a fresh event loop (aio channels belong to one loop), run ``body``, close."""
    options.setdefault("token", TOKEN)

    async def main() -> T:
        async with AsyncAuthzClient(target, **options) as client:  # type: ignore[arg-type]
            return await body(client)

    return asyncio.run(main())


def test_check_sends_bearer_token_and_maps_fields(target: str, fake: FakeAuthz) -> None:
    at = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)

    async def body(client: AsyncAuthzClient) -> bool:
        response = await client.check("C-1", "ORG-SQC", "rapport_mensuel", "write", at=at, explain=True)
        assert response.reason == "personne responsable"
        return await client.allowed("C-1", "ORG-SQC", "paiements_et_releves", Right.RIGHT_READ)

    assert run_with_client(target, body) is False
    first, second = fake.requests("CheckAccess")
    assert (first.principal_id, first.organization_id, first.subject) == ("C-1", "ORG-SQC", "rapport_mensuel")
    assert first.right == Right.RIGHT_WRITE
    assert first.explain is True
    assert first.at.ToDatetime(tzinfo=dt.UTC) == at
    assert not second.HasField("at")
    assert all(call.metadata["authorization"] == f"Bearer {TOKEN}" for call in fake.calls)


def test_no_token_sends_no_authorization(target: str, fake: FakeAuthz) -> None:
    run_with_client(target, lambda client: client.list_profiles("A-1"), token=None)
    assert "authorization" not in fake.last("ListProfiles").metadata


def test_batch_check_keeps_order(target: str, fake: FakeAuthz) -> None:
    checks = [
        check_request("C-1", "ORG-SQC", "rapport_mensuel", "read"),
        check_request("C-1", "ORG-SQC", "relations", "write"),
    ]
    results = run_with_client(target, lambda client: client.batch_check(checks))
    assert [r.allowed for r in results] == [True, False]
    assert list(fake.last("BatchCheckAccess").request.checks) == checks


def test_grant_and_revoke_map_fields(target: str, fake: FakeAuthz) -> None:
    contact = NewContact(first_name="Jean", last_name="Tremblay", email="jt@example.org")

    async def body(client: AsyncAuthzClient) -> None:
        granted = await client.grant_relation(
            "C-1",
            "ORG-SQC",
            new_contact=contact,
            role=Role.ROLE_INDIVIDU_AUTORISE,
            start_date=dt.date(2025, 2, 1),
            subjects=[("rapport_mensuel", Right.RIGHT_READ)],
            attest=True,
            request_id="req-a",
        )
        assert granted.link_code_sent is True
        revoked = await client.revoke_relation(
            "C-1", "ORG-SQC", contact_id="C-NEW", relation_id="R-9", subjects=["rapport_mensuel"], attest=True
        )
        assert revoked.subjects_removed == 2

    run_with_client(target, body)
    grant = fake.last("GrantRelation").request
    assert grant.WhichOneof("grantee") == "new_contact"
    assert grant.new_contact == contact
    assert grant.role == Role.ROLE_INDIVIDU_AUTORISE
    assert grant.start_date == "2025-02-01"
    assert [(s.subject, s.right) for s in grant.subjects] == [("rapport_mensuel", Right.RIGHT_READ)]
    assert grant.request_id == "req-a"
    revoke = fake.last("RevokeRelation").request
    assert revoke.WhichOneof("scope") == "subjects"
    assert (revoke.subjects.relation_id, list(revoke.subjects.subjects)) == ("R-9", ["rapport_mensuel"])


def test_grant_without_attest_is_refused_with_field_violations(target: str, fake: FakeAuthz) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        run_with_client(target, lambda client: client.grant_relation("C-1", "ORG-SQC", contact_id="C-2"))
    request = fake.last("GrantRelation").request
    assert request.HasField("attestation")
    assert not (request.attestation.authorizes_acting or request.attestation.changes_accurate)
    assert [field for field, _ in caught.value.field_violations] == [
        "attestation.authorizes_acting",
        "attestation.changes_accurate",
    ]


def test_misuse_raises_value_error_before_calling(target: str, fake: FakeAuthz) -> None:
    with pytest.raises(ValueError, match="exactly one grantee"):
        run_with_client(
            target,
            lambda client: client.grant_relation(
                "C-1", "ORG-SQC", contact_id="C-2", grantee_organization_id="EMP-100", attest=True
            ),
        )
    with pytest.raises(ValueError, match="exactly one scope"):
        run_with_client(target, lambda client: client.revoke_relation("C-1", "ORG-SQC", contact_id="C-2"))
    assert fake.calls == []


def test_other_rpcs_map_fields(target: str, fake: FakeAuthz) -> None:
    async def body(client: AsyncAuthzClient) -> None:
        issued = await client.issue_link_code("C-1", "ORG-SQC", "C-2", request_id="req-b")
        assert issued.expires_at.seconds == 1_800_000_000
        redeemed = await client.redeem_link_code("A-1", "ABCDEFGHIJKLMNOP")
        assert redeemed.contact_id == "C-1"
        linked = await client.link_legacy_access("A-1", "sqc-admin", "hunter2")
        assert list(linked.contact_ids) == ["C-1", "C-2"]
        profiles = await client.list_profiles("A-1")
        assert profiles.profiles[0].role == Role.ROLE_DIRIGEANT

    run_with_client(target, body)
    issue = fake.last("IssueLinkCode").request
    assert (issue.actor_id, issue.organization_id, issue.contact_id, issue.request_id) == (
        "C-1",
        "ORG-SQC",
        "C-2",
        "req-b",
    )
    assert fake.last("RedeemLinkCode").request.code == "ABCDEFGHIJKLMNOP"
    assert fake.last("LinkLegacyAccess").request.legacy_username == "sqc-admin"
    assert fake.last("ListProfiles").request.account_id == "A-1"


def test_iterators_follow_page_tokens(target: str, fake: FakeAuthz) -> None:
    async def body(client: AsyncAuthzClient) -> tuple[list[str], list[str], str]:
        contacts = [row.contact_id async for row in client.iter_contacts("C-1", "ORG-SQC")]
        subjects = [row.subject async for row in client.iter_authorizations("C-1", "ORG-SQC", contact_id="C-1")]
        page = await client.list_contacts("C-1", "ORG-SQC", page_size=4)
        return contacts, subjects, page.next_page_token

    contacts, subjects, token = run_with_client(target, body)
    assert contacts == ["C-1", "C-2", "C-3", "C-4", "C-5"]
    assert subjects == [f"sujet_{i}" for i in range(1, 6)]
    assert token == "p4"
    assert [r.page_token for r in fake.requests("ListContacts")] == ["", "p2", "p4", ""]
    authorizations = fake.requests("ListAuthorizations")
    assert [r.page_token for r in authorizations] == ["", "p2", "p4"]
    assert all(r.contact_id == "C-1" for r in authorizations)


@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        (grpc.StatusCode.NOT_FOUND, NotFoundError),
        (grpc.StatusCode.PERMISSION_DENIED, PermissionDeniedError),
        (grpc.StatusCode.FAILED_PRECONDITION, FailedPreconditionError),
        (grpc.StatusCode.UNAUTHENTICATED, UnauthenticatedError),
        (grpc.StatusCode.UNAVAILABLE, UnavailableError),
        (grpc.StatusCode.INTERNAL, AuthzClientError),
    ],
)
def test_status_codes_map_to_exception_classes(
    target: str, fake: FakeAuthz, code: grpc.StatusCode, error_class: type[AuthzClientError]
) -> None:
    fake.fail("ListContacts", code, "refused")
    with pytest.raises(AuthzClientError) as caught:
        run_with_client(target, lambda client: client.list_contacts("C-1", "ORG-SQC"))
    assert type(caught.value) is error_class
    assert (caught.value.code, caught.value.message, caught.value.field_violations) == (code, "refused", [])
    assert isinstance(caught.value.__cause__, grpc.aio.AioRpcError)


def test_bad_request_details_come_from_trailing_metadata(target: str, fake: FakeAuthz) -> None:
    fake.fail("CheckAccess", grpc.StatusCode.INVALID_ARGUMENT, "invalid", [("subject", "unknown subject: nope")])
    with pytest.raises(InvalidArgumentError) as caught:
        run_with_client(target, lambda client: client.check("C-1", "ORG-SQC", "nope", "read"))
    assert caught.value.field_violations == [("subject", "unknown subject: nope")]
    assert caught.value.message == "invalid"


def test_undecodable_details_still_give_a_typed_error(target: str, fake: FakeAuthz) -> None:
    fake.fail("RedeemLinkCode", grpc.StatusCode.INVALID_ARGUMENT, "wrong code", raw_details=b"\xff\xfe garbage")
    with pytest.raises(InvalidArgumentError) as caught:
        run_with_client(target, lambda client: client.redeem_link_code("A-1", "x"))
    assert caught.value.field_violations == []


def test_timeout_is_sent_as_the_deadline(target: str, fake: FakeAuthz) -> None:
    run_with_client(target, lambda client: client.list_profiles("A-1"), timeout=3.0)
    remaining = fake.last("ListProfiles").time_remaining
    assert remaining is not None
    assert 2.0 < remaining <= 3.1  # the deadline travels as grpc-timeout, rounded up a little


def test_deadline_exceeded(target: str, fake: FakeAuthz) -> None:
    fake.delays["CheckAccess"] = 1.5
    started = time.monotonic()
    with pytest.raises(AuthzClientError) as caught:
        run_with_client(target, lambda client: client.check("C-1", "ORG-SQC", "rapport_mensuel", "read"), timeout=0.2)
    assert time.monotonic() - started < 1.2
    assert type(caught.value) is AuthzClientError
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


def test_unreachable_server_is_unavailable() -> None:
    with pytest.raises(UnavailableError):
        run_with_client("127.0.0.1:1", lambda client: client.list_profiles("A-1"), timeout=2.0)


def test_given_channel_is_left_open(target: str, fake: FakeAuthz) -> None:
    async def main() -> bool:
        async with grpc.aio.insecure_channel(target) as channel:
            async with AsyncAuthzClient(channel=channel) as client:
                await client.list_profiles("A-1")
            return await AsyncAuthzClient(channel=channel).allowed("C-1", "ORG-SQC", "rapport_mensuel", "read")

    assert asyncio.run(main()) is True


def test_constructor_refuses_misuse() -> None:
    with pytest.raises(ValueError):
        AsyncAuthzClient()
    with pytest.raises(ValueError):
        AsyncAuthzClient("127.0.0.1:1", timeout=-1)
