"""The screens' API through the real server, on SQLite and PostgreSQL: the catalogue, the
delegation form's clients, the authorization rows' origin and dates, profiles, the contact
form's one write, "Mes demandes" and the error reasons.

The demo data is the worked example: Julie Tremblay (C-PR) manages the association (ORG-SQC),
which Construction ABC (EMP-ABC) and Béton XYZ (EMP-XYZ) authorize; Luc Côté (C-IND) is an
authorized individual of the association, delegated rapport_mensuel on Béton XYZ.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from authz_client import (
    AlreadyExistsError,
    AuthorizationRow,
    FailedPreconditionError,
    InvalidArgumentError,
    NewContact,
    NotFoundError,
    Origin,
    PermissionDeniedError,
    Right,
    Role,
    relation_update,
)

from authz.domain.dates import local_date

from ..conftest import Running
from .helpers import codes_for, row_counts

SQC, ABC, XYZ = "ORG-SQC", "EMP-ABC", "EMP-XYZ"
PR, IND = "C-PR", "C-IND"
W, R = Right.RIGHT_WRITE, Right.RIGHT_READ


def rows_of(server: Running, actor: str, organization: str, contact: str = "") -> list[AuthorizationRow]:
    return list(
        server.client.list_authorizations(actor, organization, contact_id=contact, page_size=1000).authorizations
    )


# -- GetCatalogue --------------------------------------------------------------------------------


def test_get_catalogue_gives_the_policy_folders_subjects_and_roles_with_labels(demo_any: Running) -> None:
    catalogue = demo_any.client.get_catalogue()
    policy = demo_any.app.deps.engine.policy
    assert [s.code for s in catalogue.subjects] == sorted(policy.subjects)
    by_code = {s.code: s for s in catalogue.subjects}
    assert (by_code["rapport_mensuel"].label_fr, by_code["rapport_mensuel"].label_en) == (
        "Rapport mensuel",
        "Monthly report",
    )
    # Management is granted, never given to another organization nor delegated.
    assert by_code["relations"].grantable and not by_code["relations"].delegable
    assert all(s.grantable and s.delegable for code, s in by_code.items() if code != "relations")
    roles = {r.code: r for r in catalogue.roles}
    assert [r.role for r in catalogue.roles] == [
        Role.ROLE_DIRIGEANT,
        Role.ROLE_REPRESENTANT,
        Role.ROLE_MEMBRE_DU_PERSONNEL,
        Role.ROLE_PERSONNE_RESPONSABLE,
        Role.ROLE_INDIVIDU_AUTORISE,
    ]
    responsible = roles["personne_responsable"]
    assert (responsible.label_fr, responsible.label_en) == ("Personne responsable", "Person in charge")
    defaults = {(d.subject, d.right) for d in responsible.defaults}
    assert ("relations", W) in defaults and ("rapport_mensuel", R) in defaults
    assert list(roles["individu_autorise"].defaults) == []
    assert catalogue.policy_hash == policy.content_hash and catalogue.revision


# -- ListClients ---------------------------------------------------------------------------------


def test_list_clients_gives_the_organizations_that_authorize_this_one(demo_any: Running) -> None:
    client = demo_any.client
    clients = client.list_clients(PR, SQC).clients
    assert [(c.organization_id, c.organization_name) for c in clients] == [
        (ABC, "Construction ABC inc."),
        (XYZ, "Béton XYZ ltée"),
    ]
    assert [(s.subject, s.right) for s in clients[0].subjects] == [("paiements_et_releves", W), ("rapport_mensuel", R)]
    assert (clients[0].start_date, clients[0].end_date) == ("2024-01-01", "9999-12-31")
    assert [(s.subject, s.right) for s in clients[1].subjects] == [("rapport_mensuel", W)]

    # Paged with signed tokens, bound to the organization they were issued for.
    first = client.list_clients(PR, SQC, page_size=1)
    assert [c.organization_id for c in first.clients] == [ABC] and first.next_page_token
    second = client.list_clients(PR, SQC, page_size=1, page_token=first.next_page_token)
    assert [c.organization_id for c in second.clients] == [XYZ] and not second.next_page_token
    with pytest.raises(InvalidArgumentError):
        client.list_clients("C-XYZ-DIR", XYZ, page_token=first.next_page_token)

    # An authorization removed is no client any more; an organization nobody authorizes has none.
    client.revoke_relation("C-ABC-PR", ABC, grantee_organization_id=SQC, all_relations=True, attest=True)
    assert [c.organization_id for c in client.list_clients(PR, SQC).clients] == [XYZ]
    assert list(client.list_clients("C-XYZ-DIR", XYZ).clients) == []
    # Needs read on the organization's relations.
    with pytest.raises(PermissionDeniedError) as denied:
        client.list_clients(IND, SQC)
    assert denied.value.reason == "NOT_A_READER"


# -- AuthorizationRow ----------------------------------------------------------------------------


def test_authorization_rows_say_their_origin_window_contact_and_whether_they_can_be_removed(demo_any: Running) -> None:
    client = demo_any.client
    rows = rows_of(demo_any, PR, SQC)
    julie = [r for r in rows if r.relation_id == "R-PR"]
    assert julie and all(r.contact_name == "Julie Tremblay" for r in julie)
    assert all((r.start_date, r.end_date) == ("2020-01-01", "9999-12-31") for r in julie)
    # Her rights come with her role: they go only with the relation.
    assert {r.origin for r in julie} == {Origin.ORIGIN_ROLE_DEFAULT} and not any(r.removable for r in julie)
    nadia = {r.subject: r for r in rows if r.relation_id == "R-REP"}
    assert nadia["scrutin_syndical"].origin == Origin.ORIGIN_GRANTED and nadia["scrutin_syndical"].removable
    # What ABC and XYZ authorize the association to do: theirs to remove, not the association's.
    given = [r for r in rows if r.relation_id == "OR-ABC-SQC"]
    assert given and all(
        r.origin == Origin.ORIGIN_ORGANIZATION and not r.removable and r.contact_name == "" for r in given
    )
    delegated = [r for r in rows if r.relation_id == "D-IND-XYZ"]
    assert [(r.subject, r.origin, r.removable, r.contact_name) for r in delegated] == [
        ("rapport_mensuel", Origin.ORIGIN_DELEGATED, True, "Luc Côté")
    ]
    assert all(r.subject != "*" for r in rows)

    # A row that comes with the role cannot be removed alone: the reason says so.
    with pytest.raises(FailedPreconditionError) as refused:
        client.revoke_relation(PR, SQC, contact_id="C-DIR1", relation_id="R-DIR1", subjects=["profil"], attest=True)
    assert refused.value.reason == "ROLE_DEFAULT_SUBJECT"

    # A delegation of everything shows the catalogue codes it gives, never "*", and none of them
    # can be removed alone; a future relation shows its dates.
    today = local_date(demo_any.app.deps.clock())
    added = client.grant_relation(PR, SQC, contact_id="C-REP", target_organization_id=ABC, attest=True)
    everything = [r for r in rows_of(demo_any, PR, SQC, "C-REP") if r.relation_id == added.relation_id]
    assert sorted((r.subject, r.right) for r in everything) == [("paiements_et_releves", W), ("rapport_mensuel", R)]
    assert all(r.origin == Origin.ORIGIN_DELEGATED and not r.removable and r.active for r in everything)
    start = today + timedelta(days=10)
    future = client.grant_relation(
        PR,
        SQC,
        contact_id=IND,
        role=Role.ROLE_MEMBRE_DU_PERSONNEL,
        start_date=start,
        end_date=start + timedelta(days=30),
        subjects=[("profil", W)],
        attest=True,
    )
    (row,) = [r for r in rows_of(demo_any, PR, SQC, IND) if r.relation_id == future.relation_id]
    assert not row.active and row.removable
    assert (row.start_date, row.end_date) == (start.isoformat(), (start + timedelta(days=30)).isoformat())


# -- Profiles ------------------------------------------------------------------------------------


def test_profiles_say_which_can_manage_appear_once_and_come_with_the_link(demo_any: Running) -> None:
    client = demo_any.client
    client.issue_link_code(PR, SQC, IND, attest=True)
    (code,) = codes_for(demo_any, "luc.cote@sqc.example.org")
    linked = client.redeem_link_code("acct-luc", code)
    # The success message needs no other call: the profiles come with the answer.
    assert sorted((p.organization_id, p.can_manage) for p in linked.profiles) == [(XYZ, False), (SQC, False)]
    # The same delegation again is refused (one relation per purpose), and the profile stays one.
    with pytest.raises(AlreadyExistsError) as refused:
        client.grant_relation(
            PR, SQC, contact_id=IND, target_organization_id=XYZ, subjects=[("rapport_mensuel", W)], attest=True
        )
    assert refused.value.reason == "DUPLICATE_RELATION"
    profiles = client.list_profiles("acct-luc").profiles
    assert sorted(p.organization_id for p in profiles) == [XYZ, SQC]
    # Julie manages the association.
    client.issue_link_code(PR, SQC, PR, attest=True)
    (julie_code,) = codes_for(demo_any, "julie.tremblay@sqc.example.org")
    julie = client.redeem_link_code("acct-julie", julie_code)
    assert [(p.organization_id, p.can_manage, p.role) for p in julie.profiles] == [
        (SQC, True, Role.ROLE_PERSONNE_RESPONSABLE)
    ]
    legacy = client.link_legacy_access("acct-julie-2", "sqc-admin", "demo-legacy-password")
    assert [(p.contact_id, p.can_manage) for p in legacy.profiles] == [(PR, True)]


# -- UpdateContact: one Soumettre ------------------------------------------------------------------


def test_update_contact_changes_details_phones_and_relations_in_one_write(demo_any: Running) -> None:
    client = demo_any.client
    today = local_date(demo_any.app.deps.clock())
    end = today + timedelta(days=90)
    before = row_counts(demo_any)
    updated = client.update_contact(
        PR,
        SQC,
        IND,
        email="luc@sqc.example.org",
        phones=[("cellulaire", "514 987-6543"), ("travail", "01 42 68 53 00", "FR")],
        relation_updates=[relation_update("R-IND", end_date=end, add_subjects=[("rapport_mensuel", R)])],
        attest=True,
    )
    assert list(updated.changed_fields) == ["email", "phone", "phone_type", "phones"]
    after = row_counts(demo_any)
    assert after["audit_log"] == before["audit_log"] + 1  # one write, one audit entry
    contact = client.get_contact(PR, SQC, IND)
    assert [(p.type, p.number, p.region) for p in contact.phones] == [
        ("cellulaire", "+15149876543", "CA"),
        ("travail", "+33142685300", "FR"),
    ]
    (relation,) = [r for r in contact.relations if r.relation_id == "R-IND"]
    assert relation.end_date == end.isoformat()
    added = [r for r in rows_of(demo_any, PR, SQC, IND) if r.relation_id == "R-IND" and r.subject == "rapport_mensuel"]
    assert [(r.right, r.origin) for r in added] == [(R, Origin.ORIGIN_GRANTED)]

    # All or nothing: a relation of someone else refuses the whole form.
    with pytest.raises(NotFoundError) as missing:
        client.update_contact(
            PR,
            SQC,
            IND,
            email="other@sqc.example.org",
            relation_updates=[relation_update("R-REP", add_subjects=[("profil", R)])],
            attest=True,
        )
    assert missing.value.reason == "RELATION_NOT_FOUND"
    assert client.get_contact(PR, SQC, IND).email == "luc@sqc.example.org"
    assert row_counts(demo_any) == after

    # Every problem at once: the box, the phone, the date and the subject.
    with pytest.raises(InvalidArgumentError) as refused:
        client.update_contact(
            PR,
            SQC,
            IND,
            phones=["abc"],
            relation_updates=[relation_update("R-IND", end_date="2020-02-30", add_subjects=[("nope", R)])],
        )
    assert {field for field, _ in refused.value.field_violations} == {
        "attestation.changes_accurate",
        "phones[0].number",
        "relation_updates[0].end_date",
        "relation_updates[0].add_subjects[0].subject",
    }
    assert row_counts(demo_any) == after


# -- ListRequests --------------------------------------------------------------------------------


def test_my_requests_are_open_to_every_active_contact_with_typed_changes_and_a_summary(demo_any: Running) -> None:
    client = demo_any.client
    client.update_contact(PR, SQC, IND, email="luc@sqc.example.org", attest=True)
    (mine,) = client.list_requests(PR, SQC, mine=True).requests
    assert mine.action == "update_contact" and mine.actor_id == PR
    assert mine.summary == "Modification des informations personnelles et des coordonnées : Luc Côté"
    assert [(c.field, c.before, c.after) for c in mine.changes] == [
        ("email", "luc.cote@sqc.example.org", "luc@sqc.example.org")
    ]
    # Luc manages nothing: the organization's audit is closed to him, his own requests are not.
    with pytest.raises(PermissionDeniedError) as denied:
        client.list_requests(IND, SQC)
    assert denied.value.reason == "NOT_A_READER"
    assert list(client.list_requests(IND, SQC, mine=True).requests) == []
    # Someone with no relation in force with the organization reads nothing of it.
    with pytest.raises(PermissionDeniedError) as outsider:
        client.list_requests("C-ABC-PR", SQC, mine=True)
    assert outsider.value.reason == "NOT_AN_ACTIVE_CONTACT"


# -- Error reasons -------------------------------------------------------------------------------


def test_errors_carry_a_precise_reason(demo_any: Running) -> None:
    client = demo_any.client
    with pytest.raises(PermissionDeniedError) as not_manager:
        client.update_contact(IND, SQC, IND, email="x@example.org", attest=True)
    assert not_manager.value.reason == "NOT_A_MANAGER"
    with pytest.raises(NotFoundError) as no_organization:
        client.update_contact(PR, "ORG-NONE", IND, email="x@example.org", attest=True)
    assert no_organization.value.reason == "ORGANIZATION_NOT_FOUND"
    client.update_contact(PR, SQC, IND, email="luc2@example.org", attest=True, request_id="req-1")
    with pytest.raises(FailedPreconditionError) as reused:
        client.update_contact(PR, SQC, IND, email="luc3@example.org", attest=True, request_id="req-1")
    assert reused.value.reason == "REQUEST_ID_REUSED"
    with pytest.raises(FailedPreconditionError) as last:
        for manager in ("C-DIR1", "C-DIR2"):
            client.revoke_relation(PR, SQC, contact_id=manager, all_relations=True, attest=True)
        client.revoke_relation(PR, SQC, contact_id=PR, all_relations=True, attest=True)
    assert last.value.reason == "LAST_MANAGER"


# -- Every violation at once -----------------------------------------------------------------------


def test_a_write_names_every_problem_of_the_request_at_once(demo_any: Running) -> None:
    client = demo_any.client
    before = row_counts(demo_any)
    with pytest.raises(InvalidArgumentError) as grant:
        client.grant_relation(
            PR,
            SQC,
            contact_id="bad id!",
            role=Role.ROLE_MEMBRE_DU_PERSONNEL,
            subjects=[("nope", R)],
            end_date="2020-13-01",
        )
    assert {field for field, _ in grant.value.field_violations} == {
        "contact_id",
        "attestation.authorizes_acting",
        "attestation.changes_accurate",
        "subjects[0].subject",
        "end_date",
    }
    with pytest.raises(InvalidArgumentError) as revoke:
        client.revoke_relation(PR, SQC, contact_id=IND, relation_id="R-IND", subjects=["nope"])
    assert {field for field, _ in revoke.value.field_violations} == {
        "attestation.changes_accurate",
        "subjects.subjects[0]",
    }
    with pytest.raises(InvalidArgumentError) as update:
        client.update_relation(PR, SQC, "bad id!", end_date="tomorrow", add_subjects=[("nope", W)])
    assert {field for field, _ in update.value.field_violations} == {
        "relation_id",
        "attestation.changes_accurate",
        "end_date",
        "add_subjects[0].subject",
    }
    assert "attestations of this form are required" in update.value.message
    assert row_counts(demo_any) == before


def test_a_new_contacts_phone_is_checked_and_stored_in_e164(demo_any: Running) -> None:
    client = demo_any.client
    with pytest.raises(InvalidArgumentError) as refused:
        client.grant_relation(
            PR,
            SQC,
            new_contact=NewContact(first_name="A", last_name="B", email="ab@example.org", phone="abc"),
            role=Role.ROLE_MEMBRE_DU_PERSONNEL,
            subjects=[("profil", R)],
            attest=True,
        )
    assert [field for field, _ in refused.value.field_violations] == ["new_contact.phone"]
    added = client.grant_relation(
        PR,
        SQC,
        new_contact=NewContact(first_name="A", last_name="B", email="ab@example.org", phone="514 987 6543"),
        role=Role.ROLE_MEMBRE_DU_PERSONNEL,
        subjects=[("profil", R)],
        attest=True,
    )
    assert [p.number for p in client.get_contact(PR, SQC, added.contact_id).phones] == ["+15149876543"]
