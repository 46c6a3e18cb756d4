"""The rules every write keeps (authz/commands/invariants.py), through the commands that write.

Each case names the rule it holds; a refused write changes nothing (the revision stays).
"""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import pytest

from authz.commands.grant import GrantRelation, GrantRelationRequest, NewContactData
from authz.commands.invariants import check_write
from authz.commands.revoke import RevokeRelation, RevokeRelationRequest
from authz.commands.update_relation import UpdateRelation, UpdateRelationRequest
from authz.domain.model import MANAGEMENT_SUBJECT, Relation, RelationKind, Right, Role
from authz.errors import AlreadyExists, FailedPrecondition, InvalidArgument, PermissionDenied

from .conftest import ATTESTED, NOW, World

PR, DIR1, IND, REP = "C-PR", "C-DIR1", "C-IND", "C-REP"
SQC, ABC, XYZ = "ORG-SQC", "EMP-ABC", "EMP-XYZ"
ABC_PR = "C-ABC-PR"
W, R = Right.WRITE, Right.READ


def grant(world: World, actor: str, organization: str, **fields: object) -> tuple[str, str]:
    result = GrantRelation(world.deps).execute(
        GrantRelationRequest(actor, organization, attestation=ATTESTED, **fields)  # type: ignore[arg-type]
    )
    return result.relation_id, result.contact_id


def new_person(name: str) -> NewContactData:
    return NewContactData(first_name=name, last_name="Tremblay", email=f"{name.lower()}@example.org")


def update(world: World, actor: str, organization: str, relation_id: str, **fields: object) -> None:
    UpdateRelation(world.deps).execute(
        UpdateRelationRequest(actor, organization, relation_id, attestation=ATTESTED, **fields)  # type: ignore[arg-type]
    )


def revoke(world: World, actor: str, organization: str, **fields: object) -> None:
    RevokeRelation(world.deps).execute(
        RevokeRelationRequest(actor, organization, attestation=ATTESTED, **fields)  # type: ignore[arg-type]
    )


def manages(world: World, contact: str, organization: str, at: float | None = None) -> bool:
    ts = world.clock().timestamp() if at is None else at
    return world.deps.engine.check(contact, organization, MANAGEMENT_SUBJECT, W, ts)


def test_the_last_manager_cannot_narrow_away_management(world: World) -> None:
    # Lise manages ABC by a subject granted on her relation, then its person responsible leaves.
    lise_relation, lise = grant(
        world, ABC_PR, ABC, new_contact=new_person("Lise"), role=Role.MEMBRE_DU_PERSONNEL,
        subjects=((MANAGEMENT_SUBJECT, W),),
    )  # fmt: skip
    revoke(world, ABC_PR, ABC, contact_id=ABC_PR, all_relations=True)
    before = world.revision()
    with pytest.raises(FailedPrecondition) as caught:
        update(world, lise, ABC, lise_relation, add_subjects=((MANAGEMENT_SUBJECT, R),))
    assert caught.value.reason == "LAST_MANAGER" and "no one to manage" in caught.value.message
    assert world.revision() == before and manages(world, lise, ABC)


def test_the_last_manager_can_neither_leave_nor_be_removed(world: World) -> None:
    before = world.revision()
    for scope in ({"all_relations": True}, {"relation_ids": ("R-ABC-PR",)}):
        with pytest.raises(FailedPrecondition) as caught:
            revoke(world, ABC_PR, ABC, contact_id=ABC_PR, **scope)
        assert caught.value.reason == "LAST_MANAGER"
    with pytest.raises(FailedPrecondition) as caught:
        update(world, ABC_PR, ABC, "R-ABC-PR", end_date=(NOW.date() + timedelta(days=30)).isoformat())
    assert caught.value.reason == "LAST_MANAGER" and "from " in caught.value.message
    assert world.revision() == before


def test_a_second_manager_first_then_the_first_may_leave(world: World) -> None:
    grant(world, ABC_PR, ABC, new_contact=new_person("Paul"), role=Role.PERSONNE_RESPONSABLE)
    revoke(world, ABC_PR, ABC, contact_id=ABC_PR, all_relations=True)
    assert not manages(world, ABC_PR, ABC)


def test_no_one_adds_a_subject_to_their_own_relation(world: World) -> None:
    before = world.revision()
    with pytest.raises(PermissionDenied) as caught:
        update(world, PR, SQC, "R-PR", add_subjects=(("paiements_et_releves", W),))
    assert caught.value.reason == "SELF_GRANT"
    assert world.revision() == before
    assert not world.deps.engine.check(PR, SQC, "paiements_et_releves", W, NOW.timestamp())


def test_a_manager_by_subject_cannot_give_herself_a_role(world: World) -> None:
    _, staff = grant(
        world, PR, SQC, new_contact=new_person("Nadia"), role=Role.MEMBRE_DU_PERSONNEL,
        subjects=((MANAGEMENT_SUBJECT, W),),
    )  # fmt: skip
    before = world.revision()
    with pytest.raises(PermissionDenied) as caught:
        grant(world, staff, SQC, contact_id=staff, role=Role.DIRIGEANT)
    assert caught.value.reason == "SELF_GRANT"
    assert world.revision() == before
    assert not world.deps.engine.check(staff, SQC, "paiements_et_releves", W, NOW.timestamp())


def test_no_one_extends_their_own_end_date(world: World) -> None:
    soon = (NOW.date() + timedelta(days=20)).isoformat()
    relation, staff = grant(
        world, PR, SQC, new_contact=new_person("Rose"), role=Role.MEMBRE_DU_PERSONNEL, end_date=soon,
        subjects=((MANAGEMENT_SUBJECT, W),),
    )  # fmt: skip
    with pytest.raises(PermissionDenied) as caught:
        update(world, staff, SQC, relation, end_date="9999-12-31")
    assert caught.value.reason == "SELF_GRANT"


def test_one_may_end_or_shorten_ones_own_relation(world: World) -> None:
    relation, staff = grant(
        world, PR, SQC, new_contact=new_person("Rose"), role=Role.MEMBRE_DU_PERSONNEL,
        subjects=((MANAGEMENT_SUBJECT, W), ("profil", R)),
    )  # fmt: skip
    update(world, staff, SQC, relation, end_date=(NOW.date() + timedelta(days=5)).isoformat())
    revoke(world, staff, SQC, contact_id=staff, subjects_relation_id=relation, subjects=("profil",))
    revoke(world, staff, SQC, contact_id=staff, all_relations=True)
    assert not manages(world, staff, SQC)


def test_an_ended_relation_is_not_extended(world: World) -> None:
    last = NOW.date() + timedelta(days=5)
    relation, person = grant(world, PR, SQC, new_contact=new_person("Lou"), role=Role.INDIVIDU_AUTORISE,
                             end_date=last.isoformat(), subjects=(("scrutin_syndical", R),))  # fmt: skip
    past = NOW + timedelta(days=7)  # after its end
    assert world.deps.engine.check(person, SQC, "scrutin_syndical", R, NOW.timestamp())
    assert not world.deps.engine.check(person, SQC, "scrutin_syndical", R, past.timestamp())
    world.clock.moment = NOW + timedelta(days=10)
    before = world.revision()
    with pytest.raises(FailedPrecondition) as caught:
        update(world, PR, SQC, relation, end_date="9999-12-31")
    assert caught.value.reason == "RELATION_ENDED"
    with pytest.raises(FailedPrecondition) as caught:
        update(world, PR, SQC, relation, add_subjects=(("profil", R),))
    assert caught.value.reason == "RELATION_ENDED"
    assert world.revision() == before
    assert not world.deps.engine.check(person, SQC, "scrutin_syndical", R, past.timestamp())
    # Ending it is still a change it takes.
    revoke(world, PR, SQC, contact_id=person, relation_ids=(relation,))


def test_the_same_role_twice_is_refused_naming_the_first(world: World) -> None:
    before = world.revision()
    with pytest.raises(AlreadyExists) as caught:
        grant(world, PR, SQC, contact_id=REP, role=Role.REPRESENTANT, subjects=(("profil", R),))
    assert caught.value.reason == "DUPLICATE_RELATION" and "'R-REP'" in caught.value.message
    assert world.revision() == before


def test_the_same_role_after_the_first_ends_is_a_renewal(world: World) -> None:
    last = NOW.date() + timedelta(days=30)
    first, _ = grant(world, PR, SQC, contact_id=IND, role=Role.MEMBRE_DU_PERSONNEL, end_date=last.isoformat())
    second, _ = grant(
        world, PR, SQC, contact_id=IND, role=Role.MEMBRE_DU_PERSONNEL, start_date=(last + timedelta(days=1)).isoformat()
    )
    assert first != second


def test_the_same_delegation_twice_is_refused_naming_the_first(world: World) -> None:
    before = world.revision()
    with pytest.raises(AlreadyExists) as caught:
        grant(world, PR, SQC, contact_id=IND, target_organization_id=XYZ, subjects=(("rapport_mensuel", R),))
    assert caught.value.reason == "DUPLICATE_RELATION" and "'D-IND-XYZ'" in caught.value.message
    assert world.revision() == before


def test_a_delegation_carries_no_role(world: World) -> None:
    before = world.revision()
    with pytest.raises(InvalidArgument) as caught:
        grant(world, PR, SQC, contact_id=REP, target_organization_id=ABC, role=Role.DIRIGEANT,
              subjects=(("rapport_mensuel", R),))  # fmt: skip
    assert caught.value.violations[0].field == "role"
    assert world.revision() == before
    relation, _ = grant(world, PR, SQC, contact_id=REP, target_organization_id=ABC, subjects=(("rapport_mensuel", R),))
    with world.store.transaction() as tx:
        stored = tx.get_relation(relation)
    assert stored is not None and stored.role is None


def test_a_delegation_never_gains_more_than_the_association_holds(world: World) -> None:
    relation, _ = grant(world, PR, SQC, contact_id=REP, target_organization_id=ABC, subjects=(("rapport_mensuel", R),))
    before = world.revision()
    with pytest.raises(FailedPrecondition) as caught:
        update(world, PR, SQC, relation, add_subjects=(("rapport_mensuel", W),))
    assert caught.value.reason == "DELEGATION_EXCEEDS"
    assert world.revision() == before


def test_a_past_check_keeps_its_answer_when_a_relation_ends_early(world: World) -> None:
    start = NOW.date() + timedelta(days=1)
    relation, _ = grant(world, PR, SQC, contact_id=IND, role=Role.MEMBRE_DU_PERSONNEL, start_date=start.isoformat(),
                        subjects=(("profil", R),))  # fmt: skip
    world.clock.moment = NOW + timedelta(days=3)
    revoke(world, PR, SQC, contact_id=IND, relation_ids=(relation,))
    at = (NOW + timedelta(days=2)).timestamp()
    assert world.deps.engine.check(IND, SQC, "profil", R, at)
    assert date.fromtimestamp(at) > start - timedelta(days=1)


def test_check_write_refuses_what_a_command_would_let_through(world: World) -> None:
    """The commit-time rules hold whatever a command's own checks missed: a body that wrote a
    delegation of `relations`, or revived a removed relation, is refused by the envelope."""
    engine = world.deps.engine
    start = NOW.date() - timedelta(days=1)
    managing = Relation("D-NEW", RelationKind.DELEGATION, ABC, start, date(9999, 12, 31), contact_id=REP,
                        via_organization_id=SQC, subjects={MANAGEMENT_SUBJECT: W})  # fmt: skip
    with pytest.raises(InvalidArgument) as caught:
        check_write(engine, PR, [managing], NOW)
    assert caught.value.reason == "MANAGEMENT_THROUGH_ORGANIZATION"
    with world.store.transaction() as tx:
        delegation = tx.get_relation("D-IND-XYZ")
    assert delegation is not None
    ended = dataclasses.replace(delegation, ended_at=NOW - timedelta(days=1))
    check_write(engine, PR, [ended], NOW)  # ending: allowed
    engine.apply([ended], engine.revision + 1)
    with pytest.raises(FailedPrecondition) as caught:
        check_write(engine, PR, [delegation], NOW)  # the removal undone
    assert caught.value.reason == "RELATION_ENDED"
