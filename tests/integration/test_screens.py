"""The guide's other screens on the worked example of docs/DOMAIN.md, through the real server.

Julie Tremblay (C-PR) is the association's person responsible; Simon Pelletier (C-LOC-DIR)
runs the Montréal local, where Gérard Thériault (C-LOC-MEM) was migrated without an email.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

import grpc
import pytest
from authz_client import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NewContact,
    NotFoundError,
    PermissionDeniedError,
    Right,
    Role,
)

from authz.commands.import_data import import_data
from authz.domain.dates import local_date
from authz.engine.policy import Policy
from authz.replication.tokens import revision_of
from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc

from ..conftest import Clock, Running
from .helpers import codes_for, row_counts

SQC, ABC, XYZ, LOCAL = "ORG-SQC", "EMP-ABC", "EMP-XYZ", "LOC-SQC-MTL"
PR, LOC_DIR, GERARD = "C-PR", "C-LOC-DIR", "C-LOC-MEM"
W, R = Right.RIGHT_WRITE, Right.RIGHT_READ
SQC_NAME = "SYNDICAT QUÉBÉCOIS DE LA CONSTRUCTION"


def stub(server: Running) -> authz_pb2_grpc.AuthzServiceStub:
    """Raw protobuf calls, to send exactly the boxes a form carries."""
    channel = grpc.insecure_channel(f"127.0.0.1:{server.app.port}")
    return authz_pb2_grpc.AuthzServiceStub(channel)


def marie_helene(server: Running, subjects: list[tuple[str, int]] | None = None) -> tuple[str, str]:
    """Step 4 of the guide: Marie-Hélène Demers, membre du personnel of the association."""
    added = server.client.grant_relation(
        PR,
        SQC,
        new_contact=NewContact(first_name="Marie-Hélène", last_name="Demers", email="mh.demers@example.org"),
        role=Role.ROLE_MEMBRE_DU_PERSONNEL,
        subjects=subjects if subjects is not None else [("profil", R)],
        attest=True,
    )
    return added.contact_id, added.relation_id


def today(server: Running) -> date:
    return local_date(server.app.deps.clock())


# -- GetContact and UpdateContact ------------------------------------------------------------


def test_a_migrated_contact_without_email_gets_one_then_a_code(demo_any: Running) -> None:
    client = demo_any.client
    # "Cliquez sur chaque profil et validez l'exactitude": his details and his relations with the local.
    gerard = client.get_contact(LOC_DIR, LOCAL, GERARD)
    assert (gerard.first_name, gerard.last_name, gerard.email, gerard.language) == ("Gérard", "Thériault", "", "fr")
    assert [(p.type, p.number) for p in gerard.phones] == [("", "514 555-1234")]
    assert [(r.relation_id, r.role, r.active, r.organization_name) for r in gerard.relations] == [
        ("R-LOC-MEM", Role.ROLE_MEMBRE_DU_PERSONNEL, True, "SQC — Local de Montréal")
    ]
    # Without an email, no code can be sent.
    with pytest.raises(FailedPreconditionError):
        client.issue_link_code(LOC_DIR, LOCAL, GERARD, attest=True)

    # "Validez ou ajoutez un courriel si celui-ci est absent", in the form that also issues the code.
    before = row_counts(demo_any)
    with pytest.raises(InvalidArgumentError) as unattested:
        client.update_contact(LOC_DIR, LOCAL, GERARD, email="gerard.theriault@example.org", issue_link_code=True)
    assert unattested.value.field_violations == [("attestation.changes_accurate", "must be attested (true)")]
    assert row_counts(demo_any) == before
    updated = client.update_contact(
        LOC_DIR,
        LOCAL,
        GERARD,
        email="gerard.theriault@example.org",
        phone_type="cellulaire",
        issue_link_code=True,
        attest=True,
    )
    assert list(updated.changed_fields) == ["email", "phone_type"]
    assert updated.confirmation_sent and updated.link_code_sent and revision_of(updated.revision) > 0
    again = client.get_contact(LOC_DIR, LOCAL, GERARD)
    assert again.email == "gerard.theriault@example.org"
    assert [(p.type, p.number) for p in again.phones] == [("cellulaire", "514 555-1234")]

    # He receives a confirmation (in French, naming what changed) and a link code, then links.
    mails = [m for m in demo_any.emails() if "gerard.theriault@example.org" in m]
    confirmation = next(m for m in mails if "Vos informations ont été modifiées" in m)
    assert "- Adresse courriel" in confirmation and "- Type du numéro de téléphone principal" in confirmation
    assert "Code de liaison" not in confirmation
    (code,) = codes_for(demo_any, "gerard.theriault@example.org")
    assert client.redeem_link_code("acct-gerard", code).contact_id == GERARD


def test_update_contact_confirms_in_the_contacts_language_and_checks_its_input(demo: Running) -> None:
    client = demo.client
    # Nadia Bouchard writes in English: her confirmation is in English, to the old and new addresses.
    updated = client.update_contact(
        PR, SQC, "C-REP", email="nadia@sqc.example.org", phone="+1 514 555-0000", attest=True
    )
    assert list(updated.changed_fields) == ["email", "phone"]
    english = [m for m in demo.emails() if "Your information was updated" in m]
    assert sorted(m.split("\n")[0] for m in english) == [
        "To: nadia.bouchard@sqc.example.org",
        "To: nadia@sqc.example.org",
    ]
    assert all("- Email address" in m and "- Main phone number" in m for m in english)
    # The same values again change nothing and send nothing.
    same = client.update_contact(PR, SQC, "C-REP", email="nadia@sqc.example.org", attest=True)
    assert list(same.changed_fields) == [] and not same.confirmation_sent

    before = row_counts(demo)
    bad = [
        dict(email="not-an-email"),
        dict(email=""),  # the address codes go to may be corrected, not removed
        dict(language="de"),
        dict(first_name="   "),
        dict(phone_type="pager"),
    ]
    for fields in bad:
        with pytest.raises(InvalidArgumentError) as refused:
            client.update_contact(PR, SQC, "C-REP", attest=True, **fields)  # type: ignore[arg-type]
        assert refused.value.field_violations[0][0] == next(iter(fields)), fields
    # A mask naming nothing, or a field the form does not have.
    with pytest.raises(grpc.RpcError):
        stub(demo).UpdateContact(
            pb.UpdateContactRequest(
                actor_id=PR, organization_id=SQC, contact_id="C-REP", attestation=pb.Attestation(changes_accurate=True)
            )
        )
    masked = pb.UpdateContactRequest(
        actor_id=PR, organization_id=SQC, contact_id="C-REP", attestation=pb.Attestation(changes_accurate=True)
    )
    masked.update_mask.paths.append("contact_id")
    with pytest.raises(grpc.RpcError) as unknown:
        stub(demo).UpdateContact(masked)
    assert unknown.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    # Another organization's contact is not "dans ce profil"; a person who does not manage may not.
    with pytest.raises(NotFoundError):
        client.update_contact(PR, SQC, "C-ABC-PR", first_name="Pierre-Paul", attest=True)
    with pytest.raises(NotFoundError):
        client.get_contact(PR, SQC, "C-ABC-PR")
    with pytest.raises(PermissionDeniedError):
        client.update_contact("C-IND", SQC, "C-REP", first_name="Nadine", attest=True)
    with pytest.raises(PermissionDeniedError):
        client.get_contact("C-IND", SQC, "C-REP")
    assert row_counts(demo) == before


# -- ListContacts: filters, names, the whole chain -------------------------------------------


def test_contacts_are_searched_by_name_accents_and_case_aside(demo_any: Running) -> None:
    client = demo_any.client
    mh, _ = marie_helene(demo_any)

    def found(actor: str, organization: str, query: str) -> list[str]:
        return sorted({row.contact_id for row in client.iter_contacts(actor, organization, query=query)})

    assert found(PR, SQC, "tremblay") == [PR]
    assert found(PR, SQC, "TREMBLAY") == [PR]
    assert found(PR, SQC, "helene") == [mh]
    assert found(PR, SQC, "Marie-Hélène Dem") == [mh]
    assert found("C-XYZ-DIR", XYZ, "HELENE MORIN") == ["C-XYZ-DIR"]
    assert found(PR, SQC, "luc cote") == ["C-IND"]  # Côté; also his delegation on XYZ, through SQC
    assert found(PR, SQC, "%") == []  # a wildcard of SQL is a plain character here
    assert found(PR, SQC, "nobody") == []
    # A renamed contact is found under the new name at once.
    client.update_contact(PR, SQC, mh, last_name="Demers-Côté", attest=True)
    assert found(PR, SQC, "demers-cote") == [mh]

    # The contact filter, and the organization's name on every row.
    rows = list(client.iter_contacts(PR, SQC, contact_id="C-IND"))
    assert sorted((row.relation_id, row.organization_name) for row in rows) == [
        ("D-IND-XYZ", "Béton XYZ ltée"),
        ("R-IND", SQC_NAME),
    ]
    authorizations = list(client.iter_authorizations(PR, SQC, contact_id="C-IND"))
    assert {row.organization_name for row in authorizations} == {SQC_NAME, "Béton XYZ ltée"}
    # Pages of a search: a token continues the same search only.
    first = client.list_contacts(PR, SQC, query="o", page_size=2)
    assert len(first.contacts) == 2 and first.next_page_token
    with pytest.raises(InvalidArgumentError):
        client.list_contacts(PR, SQC, query="tremblay", page_token=first.next_page_token)
    rest = list(client.iter_contacts(PR, SQC, query="o"))
    assert [r.relation_id for r in first.contacts] == [r.relation_id for r in rest[:2]]


def test_active_follows_the_whole_chain_in_every_list(demo: Running) -> None:
    client = demo.client
    mh, own = marie_helene(demo)
    delegated = client.grant_relation(
        PR, SQC, contact_id=mh, target_organization_id=ABC, subjects=[("paiements_et_releves", W)], attest=True
    )
    client.redeem_link_code("acct-mh", codes_for(demo, "mh.demers@example.org")[0])

    def active(actor: str, organization: str) -> bool:
        (row,) = [r for r in client.iter_contacts(actor, organization) if r.relation_id == delegated.relation_id]
        return row.active

    assert active(PR, SQC) and active("C-ABC-PR", ABC)
    assert ABC in {p.organization_id for p in client.list_profiles("acct-mh").profiles}
    # ABC withdraws the association: checks deny, and every list says "Faux".
    client.revoke_relation("C-ABC-PR", ABC, grantee_organization_id=SQC, all_relations=True, attest=True)
    assert not client.allowed(mh, ABC, "paiements_et_releves", W)
    assert not active(PR, SQC) and not active("C-ABC-PR", ABC)
    assert not any(r.active for r in client.iter_authorizations(PR, SQC, contact_id=mh) if r.organization_id == ABC)
    shown = {r.relation_id: r.active for r in client.get_contact(PR, SQC, mh).relations}
    assert shown == {delegated.relation_id: False, own: True}
    assert [p.organization_id for p in client.list_profiles("acct-mh").profiles] == [SQC]


# -- UpdateRelation ------------------------------------------------------------------------


def test_subjects_are_added_to_the_relation_in_place(demo_any: Running) -> None:
    client = demo_any.client
    mh, relation_id = marie_helene(demo_any)
    assert not client.allowed(mh, SQC, "rapport_mensuel", W)
    changed = client.update_relation(PR, SQC, relation_id, add_subjects=[("rapport_mensuel", W)], attest=True)
    assert (changed.relation_id, changed.subjects_added) == (relation_id, 1)
    assert client.allowed(mh, SQC, "rapport_mensuel", W)
    # One relation, not a parallel one: the lists show no duplicate.
    assert [row.relation_id for row in client.iter_contacts(PR, SQC, contact_id=mh)] == [relation_id]
    assert sorted((a.subject, a.right) for a in client.iter_authorizations(PR, SQC, contact_id=mh)) == [
        ("profil", R),
        ("rapport_mensuel", W),
    ]
    # read -> write on the same subject replaces the grant; the same grant again adds nothing.
    assert client.update_relation(PR, SQC, relation_id, add_subjects=[("profil", W)], attest=True).subjects_added == 1
    assert client.update_relation(PR, SQC, relation_id, add_subjects=[("profil", W)], attest=True).subjects_added == 0
    assert client.allowed(mh, SQC, "profil", W)

    # A delegation gets no more than the association holds on the employer.
    delegated = client.grant_relation(
        PR, SQC, contact_id=mh, target_organization_id=ABC, subjects=[("rapport_mensuel", R)], attest=True
    )
    client.update_relation(PR, SQC, delegated.relation_id, add_subjects=[("paiements_et_releves", W)], attest=True)
    assert client.allowed(mh, ABC, "paiements_et_releves", W)
    before = row_counts(demo_any)
    with pytest.raises(FailedPreconditionError):
        client.update_relation(PR, SQC, delegated.relation_id, add_subjects=[("rapport_mensuel", W)], attest=True)
    with pytest.raises(InvalidArgumentError):
        client.update_relation(PR, SQC, delegated.relation_id, add_subjects=[("relations", R)], attest=True)
    with pytest.raises(InvalidArgumentError):
        client.update_relation(PR, SQC, relation_id, add_subjects=[("no_such_subject", R)], attest=True)
    with pytest.raises(InvalidArgumentError):
        client.update_relation(PR, SQC, relation_id, attest=True)  # nothing to change
    with pytest.raises(InvalidArgumentError):
        client.update_relation(PR, SQC, relation_id, add_subjects=[("profil", R)])  # no attestation
    # Not the association's: ABC's own relation, or an authorization ABC gave.
    with pytest.raises(NotFoundError):
        client.update_relation(PR, SQC, "R-ABC-PR", add_subjects=[("profil", R)], attest=True)
    with pytest.raises(NotFoundError):
        client.update_relation(PR, SQC, "OR-ABC-SQC", add_subjects=[("profil", R)], attest=True)
    with pytest.raises(PermissionDeniedError):
        client.update_relation(mh, SQC, relation_id, add_subjects=[("profil", R)], attest=True)
    assert row_counts(demo_any) == before


def test_end_dates_move_earlier_or_later_but_not_before_the_start(demo: Running, clock: Clock) -> None:
    client = demo.client
    mh, relation_id = marie_helene(demo, [("rapport_mensuel", W)])
    day = today(demo)
    earlier = client.update_relation(PR, SQC, relation_id, end_date=day + timedelta(days=30), attest=True)
    assert earlier.end_date == (day + timedelta(days=30)).isoformat()
    (row,) = client.iter_contacts(PR, SQC, contact_id=mh)
    assert row.end_date == earlier.end_date and row.active
    later = client.update_relation(PR, SQC, relation_id, end_date="9999-12-31", attest=True)
    assert later.end_date == "9999-12-31"

    before = row_counts(demo)
    with pytest.raises(InvalidArgumentError) as past:
        client.update_relation(PR, SQC, relation_id, end_date=day - timedelta(days=1), attest=True)
    assert "before" in past.value.field_violations[0][1]
    with pytest.raises(InvalidArgumentError):
        client.update_relation(PR, SQC, "R-DIR1", end_date="2018-02-28", attest=True)  # before its start
    with pytest.raises(InvalidArgumentError):
        client.update_relation(PR, SQC, relation_id, end_date="31/12/2030", attest=True)
    assert row_counts(demo) == before

    # Ending it at a date the checks follow: in force that day, not the day after.
    client.update_relation(PR, SQC, relation_id, end_date=day + timedelta(days=2), attest=True)
    clock.set(demo.app.deps.clock() + timedelta(days=3))
    assert not client.allowed(mh, SQC, "rapport_mensuel", W)
    # A removed relation is not changed back to life.
    clock.fixed = None
    client.revoke_relation(PR, SQC, contact_id=mh, relation_ids=[relation_id], attest=True)
    with pytest.raises(FailedPreconditionError):
        client.update_relation(PR, SQC, relation_id, end_date="9999-12-31", attest=True)


def test_an_organization_keeps_someone_to_manage_it(demo: Running) -> None:
    client = demo.client
    day = today(demo)
    # ABC has one person responsible: her relation cannot end before anyone else's starts to manage.
    with pytest.raises(FailedPreconditionError) as alone:
        client.update_relation("C-ABC-PR", ABC, "R-ABC-PR", end_date=day + timedelta(days=10), attest=True)
    assert "no one to manage its relations from" in alone.value.message
    # A successor from the 30th day: no day may go without a manager in between.
    client.grant_relation(
        "C-ABC-PR",
        ABC,
        new_contact=NewContact(first_name="Annie", last_name="Dubé", email="annie.dube@abc.example.com"),
        role=Role.ROLE_PERSONNE_RESPONSABLE,
        start_date=day + timedelta(days=30),
        attest=True,
    )
    with pytest.raises(FailedPreconditionError):
        client.update_relation("C-ABC-PR", ABC, "R-ABC-PR", end_date=day + timedelta(days=10), attest=True)
    client.update_relation("C-ABC-PR", ABC, "R-ABC-PR", end_date=day + timedelta(days=29), attest=True)
    # The association has Julie and two dirigeants: one dirigeant's relation may end.
    client.update_relation(PR, SQC, "R-DIR1", end_date=day + timedelta(days=10), attest=True)
    # A relation that does not manage is never held back.
    client.update_relation(PR, SQC, "R-IND", end_date=day + timedelta(days=10), attest=True)


def test_a_subject_of_the_role_is_not_removed_alone(demo: Running) -> None:
    client = demo.client
    before = row_counts(demo)
    # A dirigeant writes every subject by default: removing one says it comes with the role.
    with pytest.raises(FailedPreconditionError) as with_role:
        client.revoke_relation(
            PR, SQC, contact_id="C-DIR1", relation_id="R-DIR1", subjects=["paiements_et_releves"], attest=True
        )
    assert "comes with the role dirigeant" in with_role.value.message
    assert row_counts(demo) == before
    assert client.allowed("C-DIR1", SQC, "paiements_et_releves", W)
    # A subject neither granted nor given by the role is still unknown on the relation.
    with pytest.raises(NotFoundError):
        client.revoke_relation(
            PR, SQC, contact_id="C-IND", relation_id="R-IND", subjects=["scrutin_syndical"], attest=True
        )


# -- Attestations per form and "Mes demandes" ------------------------------------------------


def test_each_form_requires_its_own_boxes_and_the_audit_records_them(demo: Running) -> None:
    raw = stub(demo)
    client = demo.client
    accurate = pb.Attestation(changes_accurate=True)
    both = pb.Attestation(authorizes_acting=True, changes_accurate=True)
    grant = pb.GrantRelationRequest(
        actor_id=PR,
        organization_id=SQC,
        new_contact=pb.NewContact(first_name="Marie-Hélène", last_name="Demers", email="mh.demers@example.org"),
        role=pb.ROLE_MEMBRE_DU_PERSONNEL,
        subjects=[pb.SubjectRight(subject="profil", right=pb.RIGHT_READ)],
    )
    before = row_counts(demo)
    for boxes in (pb.Attestation(), accurate, pb.Attestation(authorizes_acting=True)):
        grant.attestation.CopyFrom(boxes)
        with pytest.raises(grpc.RpcError) as refused:
            raw.GrantRelation(grant)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as no_box:
        raw.IssueLinkCode(pb.IssueLinkCodeRequest(actor_id=PR, organization_id=SQC, contact_id="C-REP"))
    assert no_box.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert row_counts(demo) == before

    grant.attestation.CopyFrom(both)
    mh = raw.GrantRelation(grant).contact_id
    # Removal, a change and a new link code carry one box: "les modifications demandées sont exactes".
    raw.IssueLinkCode(pb.IssueLinkCodeRequest(actor_id=PR, organization_id=SQC, contact_id=mh, attestation=accurate))
    relation_id = next(r.relation_id for r in client.iter_contacts(PR, SQC, contact_id=mh))
    raw.UpdateRelation(
        pb.UpdateRelationRequest(
            actor_id=PR,
            organization_id=SQC,
            relation_id=relation_id,
            add_subjects=[pb.SubjectRight(subject="rapport_mensuel", right=pb.RIGHT_WRITE)],
            attestation=accurate,
        )
    )
    raw.RevokeRelation(
        pb.RevokeRelationRequest(
            actor_id=PR,
            organization_id=SQC,
            contact_id=mh,
            subjects=pb.SubjectRevocation(relation_id=relation_id, subjects=["rapport_mensuel"]),
            attestation=accurate,
        )
    )

    # "Mes demandes": newest first, who, when, what, and which boxes were ticked.
    rows = list(client.iter_requests(PR, SQC, page_size=2))
    assert [row.action for row in rows] == ["revoke_relation", "update_relation", "issue_link_code", "grant_relation"]
    assert all(row.actor_id == PR and row.actor_name == "Julie Tremblay" for row in rows)
    assert [(row.attestation.authorizes_acting, row.attestation.changes_accurate) for row in rows] == [
        (False, True),
        (False, True),
        (False, True),
        (True, True),
    ]
    assert [int(row.revision) for row in rows] == sorted((int(row.revision) for row in rows), reverse=True)
    assert rows[0].at.seconds >= rows[-1].at.seconds > 0
    assert json.loads(rows[1].changes_json)["subjects_added"] == {"rapport_mensuel": "write"}
    assert json.loads(rows[3].changes_json)["contact_id"] == mh
    assert "code" not in json.loads(rows[2].changes_json)  # never the code itself

    # Only a reader of the association's relations sees them; tokens continue their own listing.
    with pytest.raises(PermissionDeniedError):
        client.list_requests("C-IND", SQC)
    page = client.list_requests(PR, SQC, page_size=1)
    with pytest.raises(InvalidArgumentError):
        client.list_requests("C-ABC-PR", ABC, page_token=page.next_page_token)
    assert [row.action for row in client.iter_requests("C-ABC-PR", ABC)] == []


# -- "Contact dans ce profil" and email duplicates -------------------------------------------


def test_relations_go_to_the_organizations_own_contacts(demo: Running) -> None:
    client = demo.client
    before = row_counts(demo)
    # ABC's person responsible is not a contact of the association: refused, nobody is emailed.
    with pytest.raises(NotFoundError) as stranger:
        client.grant_relation(PR, SQC, contact_id="C-ABC-PR", role=Role.ROLE_REPRESENTANT, attest=True)
    assert "is not a contact of 'ORG-SQC'" in stranger.value.message
    with pytest.raises(NotFoundError):
        client.grant_relation(PR, SQC, contact_id="C-NOBODY", role=Role.ROLE_REPRESENTANT, attest=True)
    assert row_counts(demo) == before
    # One of its own (step 7's "Contact dans ce profil").
    client.grant_relation(PR, SQC, contact_id="C-REP", role=Role.ROLE_PERSONNE_RESPONSABLE, attest=True)
    assert client.allowed("C-REP", SQC, "relations", W)


def test_a_known_email_asks_for_confirmation(demo: Running) -> None:
    client = demo.client
    twin = NewContact(first_name="Julie", last_name="Tremblay", email="Julie.Tremblay@SQC.example.org")
    before = row_counts(demo)
    with pytest.raises(AlreadyExistsError) as known:
        client.grant_relation(PR, SQC, new_contact=twin, role=Role.ROLE_INDIVIDU_AUTORISE, attest=True)
    assert "Julie Tremblay (C-PR)" in known.value.message
    assert row_counts(demo) == before
    # Asked, the person responsible creates another contact anyway.
    twin.create_anyway = True
    created = client.grant_relation(PR, SQC, new_contact=twin, role=Role.ROLE_INDIVIDU_AUTORISE, attest=True)
    assert created.contact_id not in (PR, "") and created.link_code_sent
    # Another organization's contact with that email is no conflict for the association.
    other = NewContact(first_name="Pierre", last_name="Lavoie", email="pierre.lavoie@abc.example.com")
    assert client.grant_relation(PR, SQC, new_contact=other, role=Role.ROLE_INDIVIDU_AUTORISE, attest=True).contact_id


# -- Legacy logins shared by several people --------------------------------------------------


def test_a_shared_legacy_login_links_only_the_designated_files(demo: Running) -> None:
    client = demo.client
    before = row_counts(demo)
    with pytest.raises(InvalidArgumentError) as which:
        client.link_legacy_access("acct-marc", "sqc-direction", "direction-2019")
    assert which.value.field_violations[0][0] == "contact_ids"
    assert "C-DIR1 (Marc Gagnon)" in which.value.message and "C-DIR2 (Sophie Roy)" in which.value.message
    with pytest.raises(InvalidArgumentError) as foreign:
        client.link_legacy_access("acct-marc", "sqc-direction", "direction-2019", contact_ids=["C-PR"])
    assert foreign.value.field_violations[0][0] == "contact_ids[0]"
    # A wrong password learns nothing of the login's files.
    with pytest.raises(InvalidArgumentError) as wrong:
        client.link_legacy_access("acct-marc", "sqc-direction", "nope", contact_ids=["C-DIR1"])
    assert "C-DIR" not in wrong.value.message
    assert not client.list_profiles("acct-marc").profiles
    assert row_counts(demo)["account_links"] == before["account_links"]

    assert list(
        client.link_legacy_access("acct-marc", "sqc-direction", "direction-2019", contact_ids=["C-DIR1"]).contact_ids
    ) == ["C-DIR1"]
    assert [p.contact_id for p in client.list_profiles("acct-marc").profiles] == ["C-DIR1"]
    # Sophie's file stayed hers; each file links once.
    with pytest.raises(InvalidArgumentError):
        client.link_legacy_access("acct-sophie", "sqc-direction", "direction-2019", contact_ids=["C-DIR1", "C-DIR2"])
    assert not client.list_profiles("acct-sophie").profiles
    linked = client.link_legacy_access("acct-sophie", "sqc-direction", "direction-2019", contact_ids=["C-DIR2"])
    assert list(linked.contact_ids) == ["C-DIR2"]
    with pytest.raises(InvalidArgumentError):
        client.link_legacy_access("acct-late", "sqc-direction", "direction-2019", contact_ids=["C-DIR2"])
    # A login of one file needs no designation.
    assert list(client.link_legacy_access("acct-julie", "sqc-admin", "demo-legacy-password").contact_ids) == [PR]


# -- Migration follow-up ---------------------------------------------------------------------

LEGACY_LEFTOVERS = {
    "legacy_accounts": [
        {"username": "mtl-gerard", "contact_ids": [GERARD], "password_hash": "md5$old$hash"},
    ],
    "contacts": [
        {"id": "C-OLD-1", "first_name": "Réjean", "last_name": "Ouellet", "email": "", "language": "es"},
        {"id": "C-OLD-2", "first_name": "Line", "last_name": "Roy", "email": "line.roy@sqc.example.org"},
    ],
    "relations": [
        {
            "id": "R-OLD-REP",
            "contact_id": "C-REP",
            "organization_id": SQC,
            "role": "individu_autorise",
            "start_date": "2019-13-01",
        },
        {"id": "R-OLD-1", "contact_id": "C-OLD-1", "organization_id": LOCAL, "role": "representant"},
    ],
    "organization_relations": [
        {
            "id": "OR-OLD",
            "grantor_id": ABC,
            "grantee_id": SQC,
            "subjects": [{"subject": "profil", "right": "admin"}],
        }
    ],
    "delegations": [
        {
            "id": "D-OLD",
            "contact_id": "C-IND",
            "via_organization_id": SQC,
            "target_organization_id": ABC,
            "subjects": [{"subject": "no_such_subject", "right": "read"}],
        }
    ],
}


def test_rows_the_migration_could_not_establish_are_followed_up(demo_any: Running, policy: Policy) -> None:
    client = demo_any.client
    report = import_data(demo_any.store, LEGACY_LEFTOVERS, policy.subjects)
    assert {r["id"] for r in report.refused} == {"C-OLD-1", "R-OLD-REP", "R-OLD-1", "OR-OLD", "D-OLD", "mtl-gerard"}
    # A second import of the same file keeps each refusal once.
    import_data(demo_any.store, LEGACY_LEFTOVERS, policy.subjects)

    # The association's managers see theirs, with the reason; the local's and ABC's see theirs.
    issues = list(client.list_migration_issues(PR, SQC).issues)
    assert sorted((i.section, i.row_id) for i in issues) == [("delegations", "D-OLD"), ("relations", "R-OLD-REP")]
    by_row = {i.row_id: i for i in issues}
    assert "start_date" in by_row["R-OLD-REP"].reason and "no_such_subject" in by_row["D-OLD"].reason
    assert json.loads(by_row["R-OLD-REP"].row_json)["contact_id"] == "C-REP"
    assert not by_row["R-OLD-REP"].resolved and by_row["R-OLD-REP"].reported_at.seconds > 0
    local = sorted((i.section, i.row_id) for i in client.list_migration_issues(LOC_DIR, LOCAL).issues)
    # The contact found by its relation in the file; the legacy login by its contact's stored relation.
    assert local == [("contacts", "C-OLD-1"), ("legacy_accounts", "mtl-gerard"), ("relations", "R-OLD-1")]
    assert [i.row_id for i in client.list_migration_issues("C-ABC-PR", ABC).issues] == ["OR-OLD"]
    with pytest.raises(PermissionDeniedError):
        client.list_migration_issues("C-IND", SQC)  # a reader who does not manage
    first = client.list_migration_issues(PR, SQC, page_size=1)
    assert len(first.issues) == 1 and first.next_page_token
    second = client.list_migration_issues(PR, SQC, page_size=1, page_token=first.next_page_token)
    assert [i.issue_id for i in (*first.issues, *second.issues)] == [i.issue_id for i in issues]

    # "Valider": marked resolved by hand, with the form's box.
    with pytest.raises(InvalidArgumentError):
        client.resolve_migration_issue(PR, SQC, by_row["D-OLD"].issue_id)
    # The import ran beside the server: until its follower has reloaded, a write answers UNAVAILABLE,
    # which the client retries for a write that carries a request_id.
    client.resolve_migration_issue(PR, SQC, by_row["D-OLD"].issue_id, attest=True, request_id="valider-d-old")
    with pytest.raises(NotFoundError):
        client.resolve_migration_issue(PR, SQC, by_row["D-OLD"].issue_id, attest=True)  # no longer open
    with pytest.raises(NotFoundError):
        client.resolve_migration_issue("C-ABC-PR", ABC, by_row["R-OLD-REP"].issue_id, attest=True)  # not ABC's
    # "Rétablir": the grant that re-creates the row resolves its issue.
    client.grant_relation(PR, SQC, contact_id="C-REP", role=Role.ROLE_INDIVIDU_AUTORISE, attest=True)
    assert list(client.list_migration_issues(PR, SQC).issues) == []
    done = {i.row_id: i for i in client.list_migration_issues(PR, SQC, include_resolved=True).issues}
    assert (done["D-OLD"].resolution, done["D-OLD"].resolved_by) == ("validated", PR)
    assert (done["R-OLD-REP"].resolution, done["R-OLD-REP"].resolved_by) == ("re-established", PR)
    assert done["R-OLD-REP"].resolved_at.seconds > 0
    assert [row.action for row in client.iter_requests(PR, SQC)][:2] == ["grant_relation", "resolve_migration_issue"]
