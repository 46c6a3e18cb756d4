"""Rule 15 through the server: one person, several organizations.

A manager changes a person only while that person is active in the manager's own
organization by a relation of its own; never the email of a person who linked an account;
the email of an unlinked person only if they are active nowhere else. A new code moves the
link and tells the person.
"""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc

from ..conftest import Running
from ..integration.helpers import codes_for, row_counts

SQC, LOCAL, XYZ = "ORG-SQC", "LOC-SQC-MTL", "EMP-XYZ"
PR, SIMON, NADIA, LUC, XYZ_DIR = "C-PR", "C-LOC-DIR", "C-REP", "C-IND", "C-XYZ-DIR"
ATTACKER = "attacker@evil.example.net"


def stub(server: Running) -> authz_pb2_grpc.AuthzServiceStub:
    return authz_pb2_grpc.AuthzServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.app.port}"))


def refusal(error: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    """The status and the ErrorInfo reason of a refused call."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    reason = ""
    for detail in status.details if status else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            reason = info.reason
    return error.code(), reason


def update(actor: str, organization: str, contact: str, **fields: object) -> pb.UpdateContactRequest:
    request = pb.UpdateContactRequest(
        actor_id=actor,
        organization_id=organization,
        contact_id=contact,
        attestation=pb.Attestation(changes_accurate=True),
        issue_link_code=bool(fields.pop("issue_link_code", False)),
    )
    for name, value in fields.items():
        setattr(request, name, value)
        request.update_mask.paths.append(name)
    return request


def issue(actor: str, organization: str, contact: str) -> pb.IssueLinkCodeRequest:
    return pb.IssueLinkCodeRequest(
        actor_id=actor,
        organization_id=organization,
        contact_id=contact,
        attestation=pb.Attestation(changes_accurate=True),
    )


def test_a_manager_of_one_organization_cannot_take_over_a_person_of_another(demo: Running) -> None:
    """Simon manages the local; Nadia is the association's représentante, once of the local too.
    Re-granted in the local, her email may still not be set to an attacker's address, so no code
    reaches the attacker and no account of theirs lists her association's profile."""
    client, raw = demo.client, stub(demo)
    client.grant_relation(
        SIMON, LOCAL, contact_id=NADIA, role="membre_du_personnel", subjects=[("profil", "read")], attest=True
    )
    with pytest.raises(grpc.RpcError) as refused:
        raw.UpdateContact(update(SIMON, LOCAL, NADIA, email=ATTACKER, issue_link_code=True))
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert refusal(refused.value) == (grpc.StatusCode.PERMISSION_DENIED, "PERSON_ACTIVE_ELSEWHERE")
    assert client.get_contact(SIMON, LOCAL, NADIA).email == "nadia.bouchard@sqc.example.org"
    assert codes_for(demo, ATTACKER) == []
    # The local may still send her a code: it goes to her own address, not to anyone the local names.
    raw.IssueLinkCode(issue(SIMON, LOCAL, NADIA))
    assert codes_for(demo, ATTACKER) == [] and len(codes_for(demo, "nadia.bouchard@")) == 1
    assert all(p.organization_id != SQC for p in client.list_profiles("acct-attacker").profiles)


def test_a_person_whose_relation_ended_is_not_changed_and_the_refusal_says_why(demo: Running) -> None:
    raw = stub(demo)
    before = row_counts(demo)
    # Nadia's relation with the local ended: the local sees her, but changes nothing of her.
    assert [r.relation_id for r in demo.client.get_contact(SIMON, LOCAL, NADIA).relations] == ["R-REP-LOC"]
    for request in (update(SIMON, LOCAL, NADIA, first_name="Nadine"), update(SIMON, LOCAL, NADIA, email=ATTACKER)):
        with pytest.raises(grpc.RpcError) as refused:
            raw.UpdateContact(request)
        assert refusal(refused.value) == (grpc.StatusCode.FAILED_PRECONDITION, "PERSON_NOT_ACTIVE_HERE")
    with pytest.raises(grpc.RpcError) as refused:
        raw.IssueLinkCode(issue(SIMON, LOCAL, NADIA))
    assert refusal(refused.value) == (grpc.StatusCode.FAILED_PRECONDITION, "PERSON_NOT_ACTIVE_HERE")
    assert row_counts(demo) == before


def test_an_employer_cannot_issue_a_code_for_staff_it_sees_only_through_a_delegation(demo: Running) -> None:
    """Luc acts on Béton XYZ only through the association's delegation: XYZ's code would void the
    association's own, so XYZ may not issue one, nor change his details."""
    raw = stub(demo)
    assert [r.via_organization_id for r in demo.client.get_contact(XYZ_DIR, XYZ, LUC).relations] == [SQC]
    before = row_counts(demo)
    with pytest.raises(grpc.RpcError) as refused:
        raw.IssueLinkCode(issue(XYZ_DIR, XYZ, LUC))
    assert refusal(refused.value) == (grpc.StatusCode.FAILED_PRECONDITION, "PERSON_NOT_ACTIVE_HERE")
    with pytest.raises(grpc.RpcError) as refused:
        raw.UpdateContact(update(XYZ_DIR, XYZ, LUC, last_name="Côté-Tremblay"))
    assert refusal(refused.value) == (grpc.StatusCode.FAILED_PRECONDITION, "PERSON_NOT_ACTIVE_HERE")
    assert row_counts(demo) == before


def test_a_removed_contact_is_neither_edited_nor_emailed(demo: Running) -> None:
    client, raw = demo.client, stub(demo)
    client.revoke_relation(PR, SQC, contact_id=LUC, all_relations=True, attest=True)
    mails = len(demo.emails())
    for request in (update(PR, SQC, LUC, phone="+1 514 555-0101"), update(PR, SQC, LUC, issue_link_code=True)):
        with pytest.raises(grpc.RpcError) as refused:
            raw.UpdateContact(request)
        assert refusal(refused.value) == (grpc.StatusCode.FAILED_PRECONDITION, "PERSON_NOT_ACTIVE_HERE")
    with pytest.raises(grpc.RpcError):
        raw.IssueLinkCode(issue(PR, SQC, LUC))
    assert len(demo.emails()) == mails
    # Still listed, as someone who acted on the file.
    rows = client.list_contacts(PR, SQC, contact_id=LUC).contacts
    assert rows and not any(row.active for row in rows)


def test_the_email_of_a_person_who_linked_an_account_is_theirs(demo: Running) -> None:
    client, raw = demo.client, stub(demo)
    raw.IssueLinkCode(issue(PR, SQC, LUC))
    client.redeem_link_code("acct-luc", codes_for(demo, "luc.cote@")[-1])
    with pytest.raises(grpc.RpcError) as refused:
        raw.UpdateContact(update(PR, SQC, LUC, email="luc@elsewhere.example.org"))
    assert refusal(refused.value) == (grpc.StatusCode.PERMISSION_DENIED, "EMAIL_OWNED_BY_ACCOUNT")
    # Other details stay the organization's to correct.
    assert list(raw.UpdateContact(update(PR, SQC, LUC, phone="+1 514 555-0102")).changed_fields) == ["phone"]


def test_a_new_code_moves_the_link_and_tells_the_person(demo: Running) -> None:
    client, raw = demo.client, stub(demo)
    raw.IssueLinkCode(issue(PR, SQC, LUC))
    client.redeem_link_code("acct-old", codes_for(demo, "luc.cote@")[-1])
    assert {p.contact_id for p in client.list_profiles("acct-old").profiles} == {LUC}
    raw.IssueLinkCode(issue(PR, SQC, LUC))
    client.redeem_link_code("acct-new", codes_for(demo, "luc.cote@")[-1])
    assert client.list_profiles("acct-old").profiles == []
    assert {p.contact_id for p in client.list_profiles("acct-new").profiles} == {LUC}
    notices = [m for m in demo.emails() if "luc.cote@" in m.split("\n")[0] and "lié à un autre compte" in m]
    assert len(notices) == 1 and "acct-" not in notices[0]
