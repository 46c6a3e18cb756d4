"""The sync client against the in-process fake servicer."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import grpc
import pytest
from authz_client import (
    AlreadyExistsError,
    AuthzClient,
    AuthzClientError,
    FailedPreconditionError,
    InvalidArgumentError,
    NewContact,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    Right,
    Role,
    SubjectRight,
    UnauthenticatedError,
    UnavailableError,
    check_request,
)
from authz_client.v1 import authz_pb2
from fake_authz import FakeAuthz

TOKEN = "s3cr3t-service-token"


@pytest.fixture()
def client(target: str) -> Iterator[AuthzClient]:
    with AuthzClient(target, token=TOKEN, timeout=5.0) as client:
        yield client


# -- metadata and request mapping ------------------------------------------------------------


def test_check_sends_bearer_token_and_maps_fields(client: AuthzClient, fake: FakeAuthz) -> None:
    at = dt.datetime(2024, 5, 1, 8, 30, tzinfo=dt.timezone(dt.timedelta(hours=-4)))
    response = client.check("C-1", "ORG-SQC", "rapport_mensuel", Right.RIGHT_WRITE, at=at, explain=True)

    assert response.allowed is True
    assert response.reason == "personne responsable"
    assert list(response.path) == ["R-1"]
    call = fake.last("CheckAccess")
    assert call.metadata["authorization"] == f"Bearer {TOKEN}"
    request = call.request
    assert (request.principal_id, request.organization_id, request.subject) == ("C-1", "ORG-SQC", "rapport_mensuel")
    assert request.right == Right.RIGHT_WRITE
    assert request.explain is True
    assert request.HasField("at")
    assert request.at.ToDatetime(tzinfo=dt.UTC) == at


def test_check_without_at_leaves_it_unset(client: AuthzClient, fake: FakeAuthz) -> None:
    client.check("C-1", "ORG-SQC", "rapport_mensuel", "read")
    request = fake.last("CheckAccess").request
    assert not request.HasField("at")
    assert request.right == Right.RIGHT_READ
    assert request.explain is False


def test_no_token_sends_no_authorization(target: str, fake: FakeAuthz) -> None:
    with AuthzClient(target) as client:
        client.list_profiles("A-1")
    assert "authorization" not in fake.last("ListProfiles").metadata


def test_allowed_is_a_bool_and_a_denial_is_not_an_error(client: AuthzClient, fake: FakeAuthz) -> None:
    assert client.allowed("C-1", "ORG-SQC", "rapport_mensuel", "write") is True
    assert client.allowed("C-1", "ORG-SQC", "paiements_et_releves", Right.RIGHT_READ) is False
    assert fake.last("CheckAccess").request.explain is False


def test_batch_check_keeps_order(client: AuthzClient, fake: FakeAuthz) -> None:
    checks = [
        check_request("C-1", "ORG-SQC", "paiements_et_releves", "read"),
        check_request("C-1", "ORG-SQC", "rapport_mensuel", Right.RIGHT_WRITE, explain=True),
        check_request("C-2", "EMP-100", "relations", "read"),
    ]
    results = client.batch_check(checks)
    assert [result.allowed for result in results] == [False, True, False]
    assert list(fake.last("BatchCheckAccess").request.checks) == checks


def test_grant_relation_maps_every_field(client: AuthzClient, fake: FakeAuthz) -> None:
    response = client.grant_relation(
        "C-1",
        "ORG-SQC",
        contact_id="C-2",
        target_organization_id="EMP-100",
        role="personne_responsable",
        start_date=dt.date(2025, 1, 15),
        end_date="2025-12-31",
        subjects=[("rapport_mensuel", "write"), SubjectRight(subject="paiements_et_releves", right=Right.RIGHT_READ)],
        attest=True,
        request_id="req-1",
    )
    assert response.relation_id == "R-9"
    request = fake.last("GrantRelation").request
    assert (request.actor_id, request.organization_id) == ("C-1", "ORG-SQC")
    assert request.WhichOneof("grantee") == "contact_id"
    assert request.contact_id == "C-2"
    assert request.target_organization_id == "EMP-100"
    assert request.role == Role.ROLE_PERSONNE_RESPONSABLE
    assert (request.start_date, request.end_date) == ("2025-01-15", "2025-12-31")
    assert [(s.subject, s.right) for s in request.subjects] == [
        ("rapport_mensuel", Right.RIGHT_WRITE),
        ("paiements_et_releves", Right.RIGHT_READ),
    ]
    assert request.attestation.authorizes_acting and request.attestation.changes_accurate
    assert request.request_id == "req-1"


def test_grant_relation_defaults_leave_dates_and_target_empty(client: AuthzClient, fake: FakeAuthz) -> None:
    client.grant_relation("C-1", "ORG-SQC", grantee_organization_id="EMP-100", role=Role.ROLE_REPRESENTANT, attest=True)
    request = fake.last("GrantRelation").request
    assert request.WhichOneof("grantee") == "grantee_organization_id"
    assert request.grantee_organization_id == "EMP-100"
    assert (request.start_date, request.end_date, request.target_organization_id) == ("", "", "")
    assert list(request.subjects) == []


def test_grant_relation_to_a_new_contact(client: AuthzClient, fake: FakeAuthz) -> None:
    contact = NewContact(first_name="Jean", last_name="Tremblay", email="jt@example.org", language="en")
    response = client.grant_relation(
        "C-1", "ORG-SQC", new_contact=contact, role=Role.ROLE_MEMBRE_DU_PERSONNEL, attest=True
    )
    assert response.link_code_sent is True
    request = fake.last("GrantRelation").request
    assert request.WhichOneof("grantee") == "new_contact"
    assert request.new_contact == contact


def test_grant_relation_without_attest_sends_an_empty_attestation(client: AuthzClient, fake: FakeAuthz) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        client.grant_relation("C-1", "ORG-SQC", contact_id="C-2", role="dirigeant")
    request = fake.last("GrantRelation").request
    assert request.HasField("attestation")
    assert not request.attestation.authorizes_acting
    assert not request.attestation.changes_accurate
    assert caught.value.field_violations == [
        ("attestation.authorizes_acting", "must be true"),
        ("attestation.changes_accurate", "must be true"),
    ]


@pytest.mark.parametrize(
    "grantees",
    [
        {},
        {"contact_id": "C-2", "grantee_organization_id": "EMP-100"},
        {"contact_id": "C-2", "new_contact": NewContact(first_name="A")},
    ],
)
def test_grant_relation_needs_exactly_one_grantee(
    client: AuthzClient, fake: FakeAuthz, grantees: dict[str, object]
) -> None:
    with pytest.raises(ValueError, match="exactly one grantee"):
        client.grant_relation("C-1", "ORG-SQC", attest=True, **grantees)  # type: ignore[arg-type]
    assert fake.requests("GrantRelation") == []


@pytest.mark.parametrize(
    "bad",
    [
        {"role": "boss"},
        {"subjects": [("rapport_mensuel", "admin")]},
        {"subjects": "rapport_mensuel"},
        {"start_date": dt.datetime(2025, 1, 1, tzinfo=dt.UTC)},
    ],
)
def test_grant_relation_refuses_misuse_before_calling(
    client: AuthzClient, fake: FakeAuthz, bad: dict[str, object]
) -> None:
    with pytest.raises(ValueError):
        client.grant_relation("C-1", "ORG-SQC", contact_id="C-2", attest=True, **bad)  # type: ignore[arg-type]
    assert fake.requests("GrantRelation") == []


@pytest.mark.parametrize(
    ("scope", "which"),
    [
        ({"all_relations": True}, "all_relations"),
        ({"relation_ids": ["R-1", "R-2"]}, "relations"),
        ({"relation_ids": []}, "relations"),
        ({"relation_id": "R-1", "subjects": ["rapport_mensuel"]}, "subjects"),
    ],
)
def test_revoke_relation_scopes(client: AuthzClient, fake: FakeAuthz, scope: dict[str, object], which: str) -> None:
    response = client.revoke_relation(
        "C-1",
        "ORG-SQC",
        contact_id="C-2",
        attest=True,
        request_id="req-2",
        **scope,  # type: ignore[arg-type]
    )
    assert (response.relations_ended, response.subjects_removed) == (1, 2)
    request = fake.last("RevokeRelation").request
    assert request.WhichOneof("scope") == which
    assert request.WhichOneof("grantee") == "contact_id"
    assert request.attestation.authorizes_acting and request.attestation.changes_accurate
    assert request.request_id == "req-2"
    if which == "relations":
        assert list(request.relations.relation_ids) == scope["relation_ids"]
    if which == "subjects":
        assert request.subjects.relation_id == "R-1"
        assert list(request.subjects.subjects) == ["rapport_mensuel"]


def test_revoke_relation_without_attest_sends_an_empty_attestation(client: AuthzClient, fake: FakeAuthz) -> None:
    client.revoke_relation("C-1", "ORG-SQC", grantee_organization_id="EMP-100", all_relations=True)
    request = fake.last("RevokeRelation").request
    assert request.WhichOneof("grantee") == "grantee_organization_id"
    assert request.HasField("attestation")
    assert request.attestation == type(request.attestation)()


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"all_relations": False},
        {"all_relations": True, "relation_ids": ["R-1"]},
        {"relation_id": "R-1"},
        {"subjects": ["rapport_mensuel"]},
        {"relation_ids": "R-1"},
        {"all_relations": True, "grantee_organization_id": "EMP-100"},
    ],
)
def test_revoke_relation_refuses_misuse_before_calling(
    client: AuthzClient, fake: FakeAuthz, bad: dict[str, object]
) -> None:
    with pytest.raises(ValueError):
        client.revoke_relation("C-1", "ORG-SQC", contact_id="C-2", attest=True, **bad)  # type: ignore[arg-type]
    assert fake.requests("RevokeRelation") == []


def test_link_codes_legacy_access_and_profiles(client: AuthzClient, fake: FakeAuthz) -> None:
    issued = client.issue_link_code("C-1", "ORG-SQC", "C-2", request_id="req-3", attest=True)
    assert issued.expires_at.seconds == 1_800_000_000
    assert fake.last("IssueLinkCode").request == type(fake.last("IssueLinkCode").request)(
        actor_id="C-1",
        organization_id="ORG-SQC",
        contact_id="C-2",
        request_id="req-3",
        attestation=authz_pb2.Attestation(changes_accurate=True),
    )

    redeemed = client.redeem_link_code("A-1", "abcd-efgh-ijkl-mnop")
    assert (redeemed.contact_id, redeemed.organization_id) == ("C-1", "ORG-SQC")
    request = fake.last("RedeemLinkCode").request
    assert (request.account_id, request.code) == ("A-1", "abcd-efgh-ijkl-mnop")

    linked = client.link_legacy_access("A-1", "sqc-admin", "hunter2")
    assert list(linked.contact_ids) == ["C-1", "C-2"]
    request = fake.last("LinkLegacyAccess").request
    assert (request.account_id, request.legacy_username, request.legacy_password) == ("A-1", "sqc-admin", "hunter2")

    profiles = client.list_profiles("A-1")
    assert [(p.contact_id, p.role) for p in profiles.profiles] == [("C-1", Role.ROLE_DIRIGEANT)]
    assert fake.last("ListProfiles").request.account_id == "A-1"
    assert all(call.metadata["authorization"] == f"Bearer {TOKEN}" for call in fake.calls)


# -- paging ------------------------------------------------------------------------------------


def test_list_contacts_returns_one_page(client: AuthzClient, fake: FakeAuthz) -> None:
    first = client.list_contacts("C-1", "ORG-SQC", page_size=3)
    assert [row.contact_id for row in first.contacts] == ["C-1", "C-2", "C-3"]
    assert first.next_page_token == "p3"
    second = client.list_contacts("C-1", "ORG-SQC", page_size=3, page_token=first.next_page_token)
    assert [row.contact_id for row in second.contacts] == ["C-4", "C-5"]
    assert second.next_page_token == ""
    assert [r.page_token for r in fake.requests("ListContacts")] == ["", "p3"]


def test_iter_contacts_follows_page_tokens(client: AuthzClient, fake: FakeAuthz) -> None:
    rows = list(client.iter_contacts("C-1", "ORG-SQC"))
    assert [row.contact_id for row in rows] == ["C-1", "C-2", "C-3", "C-4", "C-5"]
    requests = fake.requests("ListContacts")
    assert [r.page_token for r in requests] == ["", "p2", "p4"]
    assert all((r.actor_id, r.organization_id, r.page_size) == ("C-1", "ORG-SQC", 0) for r in requests)


def test_iter_authorizations_follows_page_tokens_with_its_filter(client: AuthzClient, fake: FakeAuthz) -> None:
    rows = list(client.iter_authorizations("C-1", "ORG-SQC", contact_id="C-1", page_size=4))
    assert [row.subject for row in rows] == [f"sujet_{i}" for i in range(1, 6)]
    requests = fake.requests("ListAuthorizations")
    assert [r.page_token for r in requests] == ["", "p4"]
    assert all((r.contact_id, r.page_size) == ("C-1", 4) for r in requests)


def test_iter_is_lazy(client: AuthzClient, fake: FakeAuthz) -> None:
    rows = client.iter_contacts("C-1", "ORG-SQC")
    assert fake.requests("ListContacts") == []
    assert next(rows).contact_id == "C-1"
    assert len(fake.requests("ListContacts")) == 1


def test_list_authorizations_one_page(client: AuthzClient, fake: FakeAuthz) -> None:
    page = client.list_authorizations("C-1", "ORG-SQC")
    assert len(page.authorizations) == 2
    assert page.next_page_token == "p2"
    assert fake.last("ListAuthorizations").request.contact_id == ""


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgumentError),
        (grpc.StatusCode.NOT_FOUND, NotFoundError),
        (grpc.StatusCode.PERMISSION_DENIED, PermissionDeniedError),
        (grpc.StatusCode.FAILED_PRECONDITION, FailedPreconditionError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, ResourceExhaustedError),
        (grpc.StatusCode.UNAUTHENTICATED, UnauthenticatedError),
        (grpc.StatusCode.UNAVAILABLE, UnavailableError),
        (grpc.StatusCode.ALREADY_EXISTS, AlreadyExistsError),
        (grpc.StatusCode.INTERNAL, AuthzClientError),
        (grpc.StatusCode.ABORTED, AuthzClientError),
    ],
)
def test_status_codes_map_to_exception_classes(
    client: AuthzClient, fake: FakeAuthz, code: grpc.StatusCode, error_class: type[AuthzClientError]
) -> None:
    fake.fail("ListProfiles", code, "nope")
    with pytest.raises(AuthzClientError) as caught:
        client.list_profiles("A-1")
    assert type(caught.value) is error_class
    assert caught.value.code == code
    assert caught.value.message == "nope"
    assert caught.value.field_violations == []
    assert isinstance(caught.value.__cause__, grpc.RpcError)


def test_bad_request_details_become_field_violations(client: AuthzClient, fake: FakeAuthz) -> None:
    fake.fail(
        "GrantRelation",
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid request",
        [("start_date", "not a date: 2025-13-01"), ("subjects[0].subject", "unknown subject")],
    )
    with pytest.raises(InvalidArgumentError) as caught:
        client.grant_relation("C-1", "ORG-SQC", contact_id="C-2", start_date="2025-13-01", attest=True)
    error = caught.value
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.message == "invalid request"
    assert error.field_violations == [
        ("start_date", "not a date: 2025-13-01"),
        ("subjects[0].subject", "unknown subject"),
    ]
    assert "start_date: not a date" in str(error)


def test_undecodable_details_still_give_a_typed_error(client: AuthzClient, fake: FakeAuthz) -> None:
    fake.fail("RedeemLinkCode", grpc.StatusCode.INVALID_ARGUMENT, "wrong code", raw_details=b"\xff\xfe not a status")
    with pytest.raises(InvalidArgumentError) as caught:
        client.redeem_link_code("A-1", "0000-0000-0000-0000")
    assert caught.value.message == "wrong code"
    assert caught.value.field_violations == []


def test_unreachable_server_is_unavailable() -> None:
    with AuthzClient("127.0.0.1:1", timeout=2.0) as client, pytest.raises(UnavailableError):
        client.list_profiles("A-1")


# -- deadlines ---------------------------------------------------------------------------------


def test_timeout_is_sent_as_the_deadline(target: str, fake: FakeAuthz) -> None:
    with AuthzClient(target, timeout=3.0) as client:
        client.check("C-1", "ORG-SQC", "rapport_mensuel", "read")
    remaining = fake.last("CheckAccess").time_remaining
    assert remaining is not None
    assert 2.0 < remaining <= 3.1  # the deadline travels as grpc-timeout, rounded up a little


def test_deadline_exceeded(target: str, fake: FakeAuthz) -> None:
    fake.delays["CheckAccess"] = 1.5
    started = time.monotonic()
    with AuthzClient(target, timeout=0.2) as client, pytest.raises(AuthzClientError) as caught:
        client.check("C-1", "ORG-SQC", "rapport_mensuel", "read")
    assert time.monotonic() - started < 1.2
    assert type(caught.value) is AuthzClientError
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


def test_no_timeout_means_no_deadline(target: str, fake: FakeAuthz) -> None:
    with AuthzClient(target, timeout=None) as client:
        client.list_profiles("A-1")
    remaining = fake.last("ListProfiles").time_remaining
    assert remaining is None or remaining > 3600


# -- construction ------------------------------------------------------------------------------


def test_given_channel_is_left_open(target: str, fake: FakeAuthz) -> None:
    with grpc.insecure_channel(target) as channel:
        client = AuthzClient(channel=channel, token=TOKEN)
        client.close()
        assert AuthzClient(channel=channel).allowed("C-1", "ORG-SQC", "rapport_mensuel", "read") is True


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((), {}),
        (("127.0.0.1:1",), {"channel": object()}),
        (("127.0.0.1:1",), {"timeout": 0}),
        (("127.0.0.1:1",), {"token": ""}),
    ],
)
def test_constructor_refuses_misuse(args: tuple[str, ...], kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        AuthzClient(*args, **kwargs)  # type: ignore[arg-type]


def test_naive_datetime_is_refused(client: AuthzClient, fake: FakeAuthz) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        client.check("C-1", "ORG-SQC", "rapport_mensuel", "read", at=dt.datetime(2025, 1, 1))
    assert fake.requests("CheckAccess") == []
