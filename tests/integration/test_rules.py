"""One test (or a few) per rule of docs/DOMAIN.md, through the real server, asserting answers and status codes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import grpc
import pytest
from authz_client import (
    FailedPreconditionError,
    InvalidArgumentError,
    NewContact,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    Right,
    Role,
)
from sqlalchemy import select

from authz.replication.tokens import revision_of
from authz.store import tables

from ..conftest import Clock, Running
from .helpers import codes_for, row_counts

SQC, ABC, XYZ, LOCAL = "ORG-SQC", "EMP-ABC", "EMP-XYZ", "LOC-SQC-MTL"
PR = "C-PR"
W, R = Right.RIGHT_WRITE, Right.RIGHT_READ
MONTREAL = ZoneInfo("America/Montreal")


def staff(
    server: Running, subjects: list[tuple[str, int]] | None = None, role: int = Role.ROLE_MEMBRE_DU_PERSONNEL
) -> str:
    """A new staff member of the association, created through the form."""
    response = server.client.grant_relation(
        PR,
        SQC,
        new_contact=NewContact(first_name="Test", last_name="Staff", email="staff@example.org"),
        role=role,
        subjects=subjects or [],
        attest=True,
    )
    return response.contact_id


# -- Rule 1: direct rights -------------------------------------------------------------------


def test_rule1_subjects_granted_on_the_relation_plus_role_defaults(demo: Running) -> None:
    client = demo.client
    # Représentant: nothing by default, write on scrutin_syndical and read on plaintes granted.
    assert client.allowed("C-REP", SQC, "scrutin_syndical", W)
    assert client.allowed("C-REP", SQC, "plaintes_cotisations_syndicales", R)
    assert not client.allowed("C-REP", SQC, "plaintes_cotisations_syndicales", W)
    assert not client.allowed("C-REP", SQC, "rapport_mensuel", R)
    # Dirigeant: write on every subject by default.
    for subject in ("rapport_mensuel", "paiements_et_releves", "relations", "scrutin_syndical"):
        assert client.allowed("C-DIR1", SQC, subject, W)
    # A right is held on one organization only.
    assert not client.allowed("C-DIR1", ABC, "rapport_mensuel", R)


def test_rule1_write_implies_read(demo: Running) -> None:
    assert demo.client.allowed("C-REP", SQC, "scrutin_syndical", R)
    assert demo.client.allowed("C-DIR1", SQC, "profil", R)


def test_rule1_denied_is_an_answer_not_an_error(demo: Running) -> None:
    response = demo.client.check("nobody", "ORG-NONE", "profil", R, explain=True)
    assert not response.allowed
    assert response.reason


# -- Rule 2: who manages ---------------------------------------------------------------------


def test_rule2_only_write_on_relations_manages(demo: Running) -> None:
    client = demo.client
    mh = staff(demo, [("rapport_mensuel", W)])
    before = row_counts(demo)
    with pytest.raises(PermissionDeniedError):
        client.grant_relation(mh, SQC, contact_id="C-REP", role=Role.ROLE_REPRESENTANT, attest=True)
    with pytest.raises(PermissionDeniedError):
        client.revoke_relation(mh, SQC, contact_id="C-REP", all_relations=True, attest=True)
    with pytest.raises(PermissionDeniedError):
        client.issue_link_code(mh, SQC, "C-REP", attest=True)
    with pytest.raises(PermissionDeniedError):
        client.list_contacts(mh, SQC)
    assert row_counts(demo) == before
    # A dirigeant manages by default; so does anyone granted write on `relations`.
    client.grant_relation("C-DIR1", SQC, contact_id="C-REP", role=Role.ROLE_INDIVIDU_AUTORISE, attest=True)
    # (Another role than the one she holds: a second membre_du_personnel relation would repeat hers.)
    client.grant_relation(PR, SQC, contact_id=mh, role=Role.ROLE_REPRESENTANT, subjects=[("relations", W)], attest=True)
    client.issue_link_code(mh, SQC, "C-REP", attest=True)


def test_rule2_personne_responsable_reads_everything_else(demo: Running) -> None:
    assert demo.client.allowed(PR, SQC, "relations", W)
    assert demo.client.allowed(PR, SQC, "paiements_et_releves", R)
    assert not demo.client.allowed(PR, SQC, "paiements_et_releves", W)


# -- Rule 3: organization to organization ----------------------------------------------------


def test_rule3_an_employer_authorizes_the_association(demo: Running) -> None:
    client = demo.client
    mh = staff(demo)
    # The association holds nothing on ABC's profile yet: delegating it is refused.
    with pytest.raises(FailedPreconditionError):
        client.grant_relation(PR, SQC, contact_id=mh, target_organization_id=ABC, subjects=[("profil", R)], attest=True)
    # ABC's person responsible authorizes the association on its profile, read.
    client.grant_relation("C-ABC-PR", ABC, grantee_organization_id=SQC, subjects=[("profil", R)], attest=True)
    client.grant_relation(PR, SQC, contact_id=mh, target_organization_id=ABC, subjects=[("profil", R)], attest=True)
    assert client.allowed(mh, ABC, "profil", R)
    # Only ABC's managers may authorize on ABC's behalf.
    with pytest.raises(PermissionDeniedError):
        client.grant_relation(PR, ABC, grantee_organization_id=SQC, subjects=[("profil", W)], attest=True)


# -- Rule 4: delegation ----------------------------------------------------------------------


def test_rule4_delegated_right_is_the_lesser_of_both(demo: Running) -> None:
    client = demo.client
    mh = staff(demo)
    client.grant_relation(
        PR, SQC, contact_id=mh, target_organization_id=ABC, subjects=[("rapport_mensuel", R)], attest=True
    )
    assert client.allowed(mh, ABC, "rapport_mensuel", R)
    assert not client.allowed(mh, ABC, "rapport_mensuel", W)
    # More than the association holds is refused, and nothing is written.
    before = row_counts(demo)
    with pytest.raises(FailedPreconditionError) as raised:
        client.grant_relation(
            PR, SQC, contact_id=mh, target_organization_id=ABC, subjects=[("rapport_mensuel", W)], attest=True
        )
    assert "holds read on rapport_mensuel" in raised.value.message
    assert row_counts(demo) == before


def test_rule4_bounded_at_check_time_and_no_copy_survives(demo: Running) -> None:
    client = demo.client
    mh = staff(demo)
    # Empty subjects: "all the organization holds there", evaluated at each check.
    client.grant_relation(PR, SQC, contact_id=mh, target_organization_id=ABC, attest=True)
    assert client.allowed(mh, ABC, "paiements_et_releves", W)
    assert not client.allowed(mh, ABC, "profil", R)
    # ABC later authorizes more: the delegation follows.
    client.grant_relation("C-ABC-PR", ABC, grantee_organization_id=SQC, subjects=[("profil", R)], attest=True)
    assert client.allowed(mh, ABC, "profil", R)
    # ABC removes one subject of its authorization: gone for her at once.
    client.revoke_relation(
        "C-ABC-PR",
        ABC,
        grantee_organization_id=SQC,
        relation_id="OR-ABC-SQC",
        subjects=["paiements_et_releves"],
        attest=True,
    )
    assert not client.allowed(mh, ABC, "paiements_et_releves", R)
    assert client.allowed(mh, ABC, "rapport_mensuel", R)


def test_rule4_needs_the_staff_relation_in_force(demo: Running) -> None:
    client = demo.client
    mh = staff(demo)
    client.grant_relation(
        PR, SQC, contact_id=mh, target_organization_id=ABC, subjects=[("rapport_mensuel", R)], attest=True
    )
    own = [
        row.relation_id for row in client.iter_contacts(PR, SQC) if row.contact_id == mh and not row.via_organization_id
    ]
    # Ending only her relation with the association (not the delegation) cuts the chain.
    client.revoke_relation(PR, SQC, contact_id=mh, relation_ids=own, attest=True)
    assert not client.allowed(mh, ABC, "rapport_mensuel", R)
    # A delegation to someone not active in the association is refused.
    with pytest.raises(FailedPreconditionError):
        client.grant_relation(
            PR, SQC, contact_id=mh, target_organization_id=ABC, subjects=[("rapport_mensuel", R)], attest=True
        )
    with pytest.raises(NotFoundError):
        client.grant_relation(PR, SQC, contact_id="C-ABC-PR", target_organization_id=ABC, attest=True)


# -- Rule 5: time ----------------------------------------------------------------------------


def local(year: int, month: int, day: int, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=MONTREAL)


def test_rule5_windows_are_inclusive_in_the_montreal_calendar(demo: Running) -> None:
    client = demo.client
    # R-REP-LOC: 2023-01-01 .. 2025-12-31 on the Montréal local.
    assert not client.allowed("C-REP", LOCAL, "rapport_mensuel", R, at=local(2022, 12, 31, 23, 59))
    assert client.allowed("C-REP", LOCAL, "rapport_mensuel", R, at=local(2023, 1, 1, 0, 0))
    assert client.allowed("C-REP", LOCAL, "rapport_mensuel", R, at=local(2025, 12, 31, 23, 59))
    assert not client.allowed("C-REP", LOCAL, "rapport_mensuel", R, at=local(2026, 1, 1, 0, 0))
    # 2026-01-01T03:30Z is still 2025-12-31 in Montréal: in force.
    assert client.allowed("C-REP", LOCAL, "rapport_mensuel", R, at=datetime(2026, 1, 1, 3, 30, tzinfo=UTC))


def test_rule5_future_and_inverted_windows(demo: Running, clock: Clock) -> None:
    client = demo.client
    clock.set(local(2026, 3, 10))
    mh = staff(demo)
    client.grant_relation(
        PR, SQC, contact_id=mh, role=Role.ROLE_DIRIGEANT, start_date="2026-04-01", end_date="2026-04-30", attest=True
    )
    assert not client.allowed(mh, SQC, "profil", W)  # not yet (clock's now)
    assert client.allowed(mh, SQC, "profil", W, at=local(2026, 4, 30, 23, 0))
    assert not client.allowed(mh, SQC, "profil", W, at=local(2026, 5, 1, 0, 30))
    before = row_counts(demo)
    with pytest.raises(InvalidArgumentError) as raised:
        client.grant_relation(
            PR,
            SQC,
            contact_id=mh,
            role=Role.ROLE_DIRIGEANT,
            start_date="2026-05-02",
            end_date="2026-05-01",
            attest=True,
        )
    assert [field for field, _ in raised.value.field_violations] == ["end_date"]
    assert row_counts(demo) == before


def test_rule5_empty_start_is_today_in_montreal(demo: Running, clock: Clock) -> None:
    # 02:00 UTC on March 11 is still March 10 in Montréal.
    clock.set(datetime(2026, 3, 11, 2, 0, tzinfo=UTC))
    mh = staff(demo)
    rows = [row for row in demo.client.iter_contacts(PR, SQC) if row.contact_id == mh]
    assert [(row.start_date, row.end_date) for row in rows] == [("2026-03-10", "9999-12-31")]


# -- Rule 6: removal -------------------------------------------------------------------------


def test_rule6_three_scopes_and_history_kept(demo: Running) -> None:
    client = demo.client
    mh = staff(demo, [("rapport_mensuel", W), ("profil", R), ("acces_aux_donnees", R)])
    own = next(row.relation_id for row in client.iter_contacts(PR, SQC) if row.contact_id == mh)
    # One or more subjects of one relation.
    removed = client.revoke_relation(
        PR, SQC, contact_id=mh, relation_id=own, subjects=["profil", "acces_aux_donnees"], attest=True
    )
    assert removed.subjects_removed == 2 and removed.relations_ended == 0
    assert not client.allowed(mh, SQC, "profil", R)
    assert client.allowed(mh, SQC, "rapport_mensuel", W)
    # One or more relations.
    second = client.grant_relation(
        PR, SQC, contact_id=mh, role=Role.ROLE_REPRESENTANT, subjects=[("scrutin_syndical", R)], attest=True
    )
    ended = client.revoke_relation(PR, SQC, contact_id=mh, relation_ids=[second.relation_id], attest=True)
    assert ended.relations_ended == 1
    assert not client.allowed(mh, SQC, "scrutin_syndical", R)
    assert client.allowed(mh, SQC, "rapport_mensuel", W)
    # All relations: inactive everywhere, nothing erased.
    client.revoke_relation(PR, SQC, contact_id=mh, all_relations=True, attest=True)
    rows = [row for row in client.iter_contacts(PR, SQC) if row.contact_id == mh]
    assert len(rows) == 2 and not any(row.active for row in rows)
    with demo.store.engine.connect() as connection:
        kept = connection.execute(select(tables.relations.c.id).where(tables.relations.c.contact_id == mh)).all()
        subjects = connection.execute(
            select(tables.relation_subjects.c.subject, tables.relation_subjects.c.removed_at).where(
                tables.relation_subjects.c.relation_id == own
            )
        ).all()
    assert len(kept) == 2
    assert {s for s, removed_at in subjects if removed_at is not None} == {"profil", "acces_aux_donnees"}


def test_rule6_unknown_relation_or_subject_is_not_found(demo: Running) -> None:
    client = demo.client
    mh = staff(demo, [("rapport_mensuel", W)])
    own = next(row.relation_id for row in client.iter_contacts(PR, SQC) if row.contact_id == mh)
    before = row_counts(demo)
    with pytest.raises(NotFoundError):
        client.revoke_relation(PR, SQC, contact_id=mh, relation_ids=["R-DIR1"], attest=True)  # not hers
    with pytest.raises(NotFoundError):
        client.revoke_relation(PR, SQC, contact_id=mh, relation_id=own, subjects=["profil"], attest=True)
    with pytest.raises(NotFoundError):
        client.revoke_relation(PR, SQC, contact_id="C-ABC-PR", all_relations=True, attest=True)
    assert row_counts(demo) == before


# -- Rules 7 and 8: new contact, another person responsible ---------------------------------


def test_rule7_new_contact_is_created_and_sent_a_code(demo: Running) -> None:
    mh = staff(demo)
    rows = [row for row in demo.client.iter_contacts(PR, SQC) if row.contact_id == mh]
    assert rows[0].display_name == "Test Staff" and rows[0].active
    assert len(codes_for(demo, "staff@example.org")) == 1


def test_rule8_another_person_responsible(demo: Running) -> None:
    client = demo.client
    client.grant_relation(PR, SQC, contact_id="C-REP", role=Role.ROLE_PERSONNE_RESPONSABLE, attest=True)
    assert client.allowed("C-REP", SQC, "relations", W)
    client.grant_relation("C-REP", SQC, contact_id="C-IND", role=Role.ROLE_MEMBRE_DU_PERSONNEL, attest=True)


# -- Rule 9: attestations --------------------------------------------------------------------


def test_rule9_writes_without_both_attestations_change_nothing(demo: Running) -> None:
    client = demo.client
    before = row_counts(demo)
    with pytest.raises(InvalidArgumentError) as raised:
        client.grant_relation(PR, SQC, contact_id="C-REP", role=Role.ROLE_DIRIGEANT)
    assert {f for f, _ in raised.value.field_violations} == {
        "attestation.authorizes_acting",
        "attestation.changes_accurate",
    }
    with pytest.raises(InvalidArgumentError):
        client.revoke_relation(PR, SQC, contact_id="C-REP", all_relations=True)
    assert row_counts(demo) == before
    assert not client.allowed("C-REP", SQC, "profil", W)


# -- Rule 10: link codes ---------------------------------------------------------------------


def test_rule10_code_is_single_use_voids_earlier_ones_and_is_stored_hashed(demo: Running) -> None:
    client = demo.client
    client.issue_link_code(PR, SQC, "C-IND", attest=True)
    client.issue_link_code(PR, SQC, "C-IND", attest=True)
    first, second = codes_for(demo, "luc.cote@")
    with pytest.raises(InvalidArgumentError) as voided:
        client.redeem_link_code("acct-luc", first)
    assert client.redeem_link_code("acct-luc", second).contact_id == "C-IND"
    with pytest.raises(InvalidArgumentError) as used:
        client.redeem_link_code("acct-other", second)
    assert voided.value.message == used.value.message
    with demo.store.engine.connect() as connection:
        stored = " ".join(str(value) for row in connection.execute(select(tables.link_codes)) for value in row)
    for code in (first, second):
        assert code not in stored and code.replace("-", "") not in stored


def test_rule10_code_expires(demo: Running, clock: Clock) -> None:
    now = datetime.now(UTC)
    clock.set(now)
    demo.client.issue_link_code(PR, SQC, "C-IND", attest=True)
    (code,) = codes_for(demo, "luc.cote@")
    clock.set(now + timedelta(hours=24, seconds=1))
    with pytest.raises(InvalidArgumentError) as expired:
        demo.client.redeem_link_code("acct-luc", code)
    with pytest.raises(InvalidArgumentError) as wrong:
        demo.client.redeem_link_code("acct-luc", "0000-0000-0000-0000")
    assert expired.value.message == wrong.value.message


def test_rule10_wrong_guesses_are_throttled(demo: Running) -> None:
    demo.client.issue_link_code(PR, SQC, "C-IND", attest=True)
    (code,) = codes_for(demo, "luc.cote@")
    for _ in range(10):
        with pytest.raises(InvalidArgumentError):
            demo.client.redeem_link_code("acct-guesser", "ZZZZ-ZZZZ-ZZZZ-ZZZZ")
    with pytest.raises(ResourceExhaustedError):
        demo.client.redeem_link_code("acct-guesser", code)


def test_rule10_code_needs_an_active_contact_with_an_email(demo: Running) -> None:
    client = demo.client
    with pytest.raises(NotFoundError):
        client.issue_link_code(PR, SQC, "C-ABC-PR", attest=True)  # not a contact of the association
    mh = staff(demo)
    client.revoke_relation(PR, SQC, contact_id=mh, all_relations=True, attest=True)
    with pytest.raises(FailedPreconditionError):
        client.issue_link_code(PR, SQC, mh, attest=True)


# -- Rule 11: legacy access ------------------------------------------------------------------


def test_rule11_legacy_credentials_link_once(demo: Running) -> None:
    client = demo.client
    with pytest.raises(InvalidArgumentError) as wrong:
        client.link_legacy_access("acct-dir", "sqc-direction", "not-the-password")
    # A login the old system shared: each person links their own file, once.
    linked = client.link_legacy_access("acct-dir", "sqc-direction", "direction-2019", contact_ids=["C-DIR1"])
    assert list(linked.contact_ids) == ["C-DIR1"]
    assert [p.contact_id for p in client.list_profiles("acct-dir").profiles] == ["C-DIR1"]
    with pytest.raises(InvalidArgumentError) as again:
        client.link_legacy_access("acct-other", "sqc-direction", "direction-2019", contact_ids=["C-DIR1"])
    assert wrong.value.message == again.value.message
    sophie = client.link_legacy_access("acct-sophie", "sqc-direction", "direction-2019", contact_ids=["C-DIR2"])
    assert list(sophie.contact_ids) == ["C-DIR2"]  # the other file stayed available to its owner
    # Migrated relations keep working.
    assert client.allowed("C-IND", XYZ, "rapport_mensuel", W)


# -- Rule 12: audit --------------------------------------------------------------------------


def test_rule12_every_write_is_audited(demo: Running) -> None:
    client = demo.client
    mh = staff(demo, [("profil", R)])
    client.issue_link_code(PR, SQC, mh, attest=True)
    client.revoke_relation(PR, SQC, contact_id=mh, all_relations=True, attest=True)
    with demo.store.engine.connect() as connection:
        rows = connection.execute(
            select(tables.audit_log).where(tables.audit_log.c.actor_id == PR).order_by(tables.audit_log.c.id)
        ).all()
    assert [row.action for row in rows] == ["grant_relation", "issue_link_code", "revoke_relation"]
    grant, issue, revoke = rows
    assert grant.attestation == {"authorizes_acting": True, "changes_accurate": True}
    assert grant.changes["contact_id"] == mh and grant.changes["subjects"] == {"profil": "read"}
    assert issue.changes["contact_id"] == mh and "code" not in str(issue.changes).replace("link_code", "")
    assert revoke.changes["relations_ended"] and revoke.at >= grant.at
    assert len({row.revision for row in rows}) == 3


# -- The envelope: idempotency and revisions -------------------------------------------------


def test_a_retried_request_changes_nothing_more(demo: Running) -> None:
    client = demo.client
    kwargs = dict(contact_id="C-REP", role=Role.ROLE_INDIVIDU_AUTORISE, subjects=[("profil", R)], attest=True)
    first = client.grant_relation(PR, SQC, request_id="req-1", **kwargs)  # type: ignore[arg-type]
    before = row_counts(demo)
    again = client.grant_relation(PR, SQC, request_id="req-1", **kwargs)  # type: ignore[arg-type]
    assert again == first
    assert row_counts(demo) == before
    with pytest.raises(FailedPreconditionError):
        client.grant_relation(PR, SQC, request_id="req-1", contact_id="C-REP", role=Role.ROLE_DIRIGEANT, attest=True)


def test_revisions_grow_with_writes(demo: Running) -> None:
    client = demo.client
    start = revision_of(client.check(PR, SQC, "profil", R).revision)
    granted = client.grant_relation(PR, SQC, contact_id="C-REP", role=Role.ROLE_INDIVIDU_AUTORISE, attest=True)
    assert revision_of(granted.revision) > start
    assert client.check(PR, SQC, "profil", R).revision == granted.revision


def test_health_and_reflection_are_served(demo: Running) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{demo.app.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(service="authz.v1.AuthzService")).status == 1
        assert health.Check(health_pb2.HealthCheckRequest(service="")).status == 1
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = reflect.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name for answer in answers for s in answer.list_services_response.service}
    assert "authz.v1.AuthzService" in names and "grpc.health.v1.Health" in names
