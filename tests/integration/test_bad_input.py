"""Each kind of bad input gets its status code, a clear message, field paths, and changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from authz_client import AuthzClient, AuthzClientError, NewContact, Right, Role, check_request

from authz.v1 import authz_pb2 as pb

from ..conftest import Running
from .helpers import row_counts

SQC, ABC = "ORG-SQC", "EMP-ABC"
PR = "C-PR"
W, R = Right.RIGHT_WRITE, Right.RIGHT_READ
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def grant(**overrides: Any) -> Callable[[AuthzClient], object]:
    arguments: dict[str, Any] = dict(contact_id="C-REP", role=Role.ROLE_INDIVIDU_AUTORISE, attest=True)
    arguments.update(overrides)
    actor = arguments.pop("actor", PR)
    organization = arguments.pop("organization", SQC)
    return lambda client: client.grant_relation(actor, organization, **arguments)


# (case, call, expected code, expected field paths (for INVALID_ARGUMENT), message fragment)
CASES: list[tuple[str, Callable[[AuthzClient], object], grpc.StatusCode, set[str], str]] = [
    ("malformed actor id", grant(actor="C PR"), INVALID, {"actor_id"}, "letters, digits"),
    ("control character in id", grant(contact_id="C-\x07REP"), INVALID, {"contact_id"}, "ASCII"),
    ("empty required id", grant(actor=""), INVALID, {"actor_id"}, "must not be empty"),
    ("oversized id", grant(organization="O" * 129), INVALID, {"organization_id"}, "at most 128"),
    (
        "oversized name",
        grant(contact_id=None, new_contact=NewContact(first_name="x" * 1001, last_name="Y", email="x@example.org")),
        INVALID,
        {"new_contact.first_name"},
        "at most",
    ),
    (
        "bad email",
        grant(contact_id=None, new_contact=NewContact(first_name="X", last_name="Y", email="nope")),
        INVALID,
        {"new_contact.email"},
        "email",
    ),
    ("unknown subject", grant(subjects=[("cafeteria", R)]), INVALID, {"subjects[0].subject"}, "unknown subject"),
    (
        "unspecified right",
        grant(subjects=[("profil", Right.RIGHT_UNSPECIFIED)]),
        INVALID,
        {"subjects[0].right"},
        "RIGHT_READ",
    ),
    ("subject twice", grant(subjects=[("profil", R), ("profil", W)]), INVALID, {"subjects[1].subject"}, "twice"),
    ("bad date", grant(start_date="2026-02-30"), INVALID, {"start_date"}, "YYYY-MM-DD"),
    ("inverted dates", grant(start_date="2099-05-02", end_date="2099-05-01"), INVALID, {"end_date"}, "before"),
    ("start date in the past", grant(start_date="2020-01-01"), INVALID, {"start_date"}, "before today"),
    ("missing role", grant(role=Role.ROLE_UNSPECIFIED), INVALID, {"role"}, "role"),
    ("unknown role value", grant(role=42), INVALID, {"role"}, "unknown role"),
    (
        "missing attestation",
        grant(attest=False),
        INVALID,
        {"attestation.authorizes_acting", "attestation.changes_accurate"},
        "attestations",
    ),
    (
        "no revocation scope",
        lambda c: c._call(
            c._stub.RevokeRelation,
            pb.RevokeRelationRequest(
                actor_id=PR,
                organization_id=SQC,
                contact_id="C-REP",
                attestation=pb.Attestation(authorizes_acting=True, changes_accurate=True),
            ),
        ),
        INVALID,
        {"scope"},
        "scope",
    ),
    ("check with unknown subject", lambda c: c.check(PR, SQC, "nope", R), INVALID, {"subject"}, "unknown subject"),
    (
        "check without right",
        lambda c: c.check(PR, SQC, "profil", Right.RIGHT_UNSPECIFIED),
        INVALID,
        {"right"},
        "RIGHT_READ",
    ),
    (
        "batch too long",
        lambda c: c.batch_check([check_request(PR, SQC, "profil", R)] * 1001),
        INVALID,
        {"checks"},
        "at most 1000",
    ),
    (
        "bad item in a batch",
        lambda c: c.batch_check([check_request(PR, SQC, "profil", R), check_request("bad id", SQC, "profil", R)]),
        INVALID,
        {"checks[1].principal_id"},
        "checks[1]",
    ),
    ("page too large", lambda c: c.list_contacts(PR, SQC, page_size=5000), INVALID, {"page_size"}, "at most"),
    ("forged page token", lambda c: c.list_contacts(PR, SQC, page_token="bm9wZQ"), INVALID, {"page_token"}, "token"),
    ("empty link code", lambda c: c.redeem_link_code("acct-1", ""), INVALID, {"code"}, "empty"),
    ("unknown organization", grant(organization="ORG-NONE"), grpc.StatusCode.NOT_FOUND, set(), "ORG-NONE"),
    ("unknown contact", grant(contact_id="C-NONE"), grpc.StatusCode.NOT_FOUND, set(), "C-NONE"),
    (
        "unknown relation",
        lambda c: c.revoke_relation(PR, SQC, contact_id="C-REP", relation_ids=["R-NONE"], attest=True),
        grpc.StatusCode.NOT_FOUND,
        set(),
        "R-NONE",
    ),
    (
        "actor may not manage",
        grant(actor="C-REP", contact_id="C-IND"),
        grpc.StatusCode.PERMISSION_DENIED,
        set(),
        "may not manage",
    ),
    (
        "delegating more than held",
        grant(
            target_organization_id=ABC,
            contact_id="C-IND",
            role=Role.ROLE_UNSPECIFIED,  # a delegation carries no role
            subjects=[("paiements_et_releves", W), ("scrutin_syndical", R)],
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        set(),
        "holds nothing on scrutin_syndical",
    ),
    (
        "inactive contact",
        lambda c: c.issue_link_code(PR, "LOC-SQC-MTL", "C-REP", attest=True),
        grpc.StatusCode.PERMISSION_DENIED,  # the association's person responsible does not manage the local
        set(),
        "may not manage",
    ),
]


@pytest.mark.parametrize(("case", "call", "code", "fields", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_its_code_and_changes_nothing(
    demo: Running,
    case: str,
    call: Callable[[AuthzClient], object],
    code: grpc.StatusCode,
    fields: set[str],
    fragment: str,
) -> None:
    before = row_counts(demo)
    with pytest.raises(AuthzClientError) as raised:
        call(demo.client)
    error = raised.value
    assert error.code == code, f"{case}: {error.code} {error.message}"
    assert fragment in error.message, error.message
    assert {path for path, _ in error.field_violations} == fields
    assert row_counts(demo) == before


def test_inactive_contact_is_a_failed_precondition(demo: Running) -> None:
    client = demo.client
    mh = client.grant_relation(
        PR,
        SQC,
        new_contact=NewContact(first_name="A", last_name="B", email="ab@example.org"),
        role=Role.ROLE_MEMBRE_DU_PERSONNEL,
        attest=True,
    ).contact_id
    client.revoke_relation(PR, SQC, contact_id=mh, all_relations=True, attest=True)
    before = row_counts(demo)
    with pytest.raises(AuthzClientError) as raised:
        client.grant_relation(
            PR, SQC, contact_id=mh, target_organization_id=ABC, subjects=[("rapport_mensuel", R)], attest=True
        )
    assert raised.value.code == grpc.StatusCode.FAILED_PRECONDITION and "not active" in raised.value.message
    with pytest.raises(AuthzClientError) as issued:
        client.issue_link_code(PR, SQC, mh, attest=True)
    assert issued.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert row_counts(demo) == before


def test_internal_causes_never_reach_the_caller_and_nothing_is_half_written(demo: Running) -> None:
    """A fault in the middle of a write: no SQL or stack in the answer, and the relation is not kept."""
    from sqlalchemy import func, select, text

    from authz.store import tables

    def relations() -> int:
        with demo.store.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(tables.relations)).scalar_one())

    before = relations()
    with demo.store.engine.begin() as connection:  # the audit insert, last step of the write, will fail
        connection.execute(text("ALTER TABLE audit_log RENAME TO audit_log_moved"))
    with pytest.raises(AuthzClientError) as raised:
        demo.client.grant_relation(PR, SQC, contact_id="C-REP", role=Role.ROLE_DIRIGEANT, attest=True)
    message = raised.value.message.lower()
    assert raised.value.code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE)
    for leak in ("audit_log", "insert", "sqlite", "traceback", "select"):
        assert leak not in message, raised.value.message
    assert relations() == before
    assert not demo.client.allowed("C-REP", SQC, "paiements_et_releves", W)
