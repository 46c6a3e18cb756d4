"""Rule 15 at the commands, without a server: who may change what of a person."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from authz.cli import DEMO_FILE
from authz.commands.base import Attestation, Deps
from authz.commands.grant import GrantRelation, GrantRelationRequest
from authz.commands.import_data import import_file
from authz.commands.link_codes import IssueLinkCode, IssueLinkCodeRequest
from authz.commands.persons import (
    EMAIL_OWNED_BY_ACCOUNT,
    PERSON_ACTIVE_ELSEWHERE,
    PERSON_NOT_ACTIVE_HERE,
    PersonChange,
    require_person_changeable,
)
from authz.commands.update_contact import UpdateContact, UpdateContactRequest
from authz.config import Settings
from authz.domain.model import Right, Role
from authz.engine.index import DecisionEngine
from authz.engine.policy import Policy
from authz.errors import AuthzError, FailedPrecondition, NotFound, PermissionDenied
from authz.store.sql import SqlStore, open_store

SQC, LOCAL, XYZ = "ORG-SQC", "LOC-SQC-MTL", "EMP-XYZ"
PR, SIMON, NADIA, LUC, XYZ_DIR, GERARD = "C-PR", "C-LOC-DIR", "C-REP", "C-IND", "C-XYZ-DIR", "C-LOC-MEM"
CHANGE = Attestation(changes_accurate=True)


@pytest.fixture
def deps(tmp_path: Path, policy: Policy) -> Iterator[Deps]:
    """The demo data in an SQLite file, an engine loaded from it: the commands' whole world."""
    store: SqlStore = open_store(
        Settings(database_url=f"sqlite:///{tmp_path / 'authz.db'}", mail_url=f"file://{tmp_path / 'outbox'}")
    )
    import_file(store, DEMO_FILE, policy.subjects)
    engine = DecisionEngine(policy)
    with store.snapshot() as snapshot:
        engine.load_rows(snapshot.rows, snapshot.revision)
    yield Deps(store=store, engine=engine)
    store.close()


def reason(deps: Deps, organization: str, contact: str, change: PersonChange) -> str:
    with deps.store.transaction() as tx:
        try:
            require_person_changeable(tx, organization, contact, change, deps.clock())
        except AuthzError as error:
            return f"{type(error).__name__}:{error.reason}"
    return "allowed"


def link(deps: Deps, account: str, contact: str) -> None:
    with deps.store.transaction() as tx:
        tx.link_account(account, contact, "link_code", deps.clock())


def test_a_person_active_here_by_a_relation_of_this_organization_may_be_changed(deps: Deps) -> None:
    assert reason(deps, SQC, LUC, PersonChange(details=True, email="luc@example.org")) == "allowed"
    assert reason(deps, LOCAL, GERARD, PersonChange(email="gerard@example.org", link_code=True)) == "allowed"


def test_a_person_whose_relation_here_ended_is_not_changed(deps: Deps) -> None:
    # Nadia's relation with the local ended: the local sees her, and is told why it may not.
    assert reason(deps, LOCAL, NADIA, PersonChange(details=True)) == f"FailedPrecondition:{PERSON_NOT_ACTIVE_HERE}"
    assert reason(deps, LOCAL, NADIA, PersonChange(link_code=True)) == f"FailedPrecondition:{PERSON_NOT_ACTIVE_HERE}"


def test_a_delegation_received_gives_no_hold_on_the_person(deps: Deps) -> None:
    assert reason(deps, XYZ, LUC, PersonChange(link_code=True)) == f"FailedPrecondition:{PERSON_NOT_ACTIVE_HERE}"


def test_a_person_the_organization_never_saw_is_not_found(deps: Deps) -> None:
    assert reason(deps, SQC, "C-ABC-PR", PersonChange(details=True)) == f"NotFound:{NotFound.default_reason}"
    assert reason(deps, SQC, "C-NOBODY", PersonChange(details=True)) == f"NotFound:{NotFound.default_reason}"


def test_the_email_of_a_linked_person_is_theirs(deps: Deps) -> None:
    link(deps, "acct-luc", LUC)
    assert reason(deps, SQC, LUC, PersonChange(email="x@example.org")) == f"PermissionDenied:{EMAIL_OWNED_BY_ACCOUNT}"
    # The same address again is no change; other details stay the organization's.
    assert reason(deps, SQC, LUC, PersonChange(email="luc.cote@sqc.example.org", details=True)) == "allowed"


def test_the_email_of_a_person_active_elsewhere_is_no_one_organization_s(deps: Deps) -> None:
    GrantRelation(deps).execute(
        GrantRelationRequest(
            actor_id=SIMON,
            organization_id=LOCAL,
            contact_id=NADIA,
            role=Role.MEMBRE_DU_PERSONNEL,
            subjects=(("profil", Right.READ),),
            attestation=Attestation(True, True),
        )
    )
    elsewhere = f"PermissionDenied:{PERSON_ACTIVE_ELSEWHERE}"
    assert reason(deps, LOCAL, NADIA, PersonChange(email="attacker@example.net")) == elsewhere
    assert reason(deps, SQC, NADIA, PersonChange(email="nadia@example.org")) == elsewhere
    # Her name may still be corrected, and a code sent to her own address.
    assert reason(deps, LOCAL, NADIA, PersonChange(details=True, link_code=True)) == "allowed"


def test_update_contact_and_issue_link_code_ask_the_rule(deps: Deps) -> None:
    with pytest.raises(FailedPrecondition) as ended:
        UpdateContact(deps).execute(
            UpdateContactRequest(SIMON, LOCAL, NADIA, update_mask=("first_name",), first_name="N", attestation=CHANGE)
        )
    assert ended.value.reason == PERSON_NOT_ACTIVE_HERE
    with pytest.raises(FailedPrecondition) as delegated:
        IssueLinkCode(deps).execute(IssueLinkCodeRequest(XYZ_DIR, XYZ, LUC, attestation=CHANGE))
    assert delegated.value.reason == PERSON_NOT_ACTIVE_HERE
    link(deps, "acct-luc", LUC)
    with pytest.raises(PermissionDenied) as owned:
        UpdateContact(deps).execute(
            UpdateContactRequest(PR, SQC, LUC, update_mask=("email",), email="luc@else.example", attestation=CHANGE)
        )
    assert owned.value.reason == EMAIL_OWNED_BY_ACCOUNT
    with deps.store.transaction() as tx:
        contact = tx.get_contact(LUC)
    assert contact is not None and contact.email == "luc.cote@sqc.example.org"
