"""Findings 3 and 10: management of an organization stays with its own people.

3. Management (write on `relations`) is never held through another organization: an
   organization-to-organization authorization or a delegation cannot carry `relations`,
   and decisions ignore such paths even where old or imported data has one.
10. The last manager can neither leave nor be removed: FAILED_PRECONDITION, nothing changed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from authz_client import FailedPreconditionError, InvalidArgumentError, NewContact, PermissionDeniedError, check_request

from authz.config import Settings
from authz.domain.model import Relation, RelationKind, Right, Role
from authz.engine.policy import Policy
from authz.store.sql import open_store

from ..conftest import Running, load_demo
from ..integration.helpers import row_counts

PR, IND, SQC, ABC, XYZ = "C-PR", "C-IND", "ORG-SQC", "EMP-ABC", "EMP-XYZ"
ABC_PR, XYZ_DIR = "C-ABC-PR", "C-XYZ-DIR"
MANAGE = ("relations", "write")


def test_an_organization_cannot_authorize_another_on_relations(demo: Running) -> None:
    before = row_counts(demo)
    with pytest.raises(InvalidArgumentError) as caught:
        demo.client.grant_relation(
            ABC_PR, ABC, grantee_organization_id=SQC, role="representant",
            subjects=[("rapport_mensuel", "read"), MANAGE], attest=True,
        )  # fmt: skip
    assert caught.value.field_violations[0][0] == "subjects[1].subject"
    assert "cannot be given by one organization to another" in caught.value.field_violations[0][1]
    assert row_counts(demo) == before


def test_relations_cannot_be_delegated(demo: Running) -> None:
    # EMP-XYZ authorizes the association on rapport_mensuel (demo); delegating `relations` with it is refused.
    before = row_counts(demo)
    with pytest.raises(InvalidArgumentError) as caught:
        demo.client.grant_relation(PR, SQC, contact_id=IND, target_organization_id=XYZ, subjects=[MANAGE], attest=True)
    assert caught.value.field_violations[0][0] == "subjects[0].subject"
    assert row_counts(demo) == before


def seeded_with_management_through_the_association(
    start_server: Callable[..., Running], tmp_path: Path, policy: Policy
) -> Running:
    """The attack's starting point, as data from before the rule could hold it: EMP-ABC authorizes
    the association on `relations` write, and C-IND holds delegations of it (explicit and "everything")."""
    url = f"sqlite:///{tmp_path / 'seeded.db'}"
    store = open_store(Settings(database_url=url))
    load_demo(url, policy)
    at = datetime(2024, 1, 1, tzinfo=UTC)
    common = {"start_date": date(2024, 1, 1), "end_date": date(9999, 12, 31)}
    with store.transaction() as tx:
        tx.add_relation(
            Relation(id="OR-ABC-SQC-MANAGE", kind=RelationKind.ORGANIZATION, organization_id=ABC,
                     grantee_organization_id=SQC, role=Role.REPRESENTANT,
                     subjects={"relations": Right.WRITE, "profil": Right.WRITE}, **common),  # type: ignore[arg-type]
            at, "seed",
        )  # fmt: skip
        tx.add_relation(
            Relation(id="D-IND-ABC-MANAGE", kind=RelationKind.DELEGATION, organization_id=ABC, contact_id=IND,
                     via_organization_id=SQC, role=Role.INDIVIDU_AUTORISE, subjects={"relations": Right.WRITE},
                     **common),  # type: ignore[arg-type]
            at, "seed",
        )  # fmt: skip
        tx.add_relation(
            Relation(id="D-IND-ABC-ALL", kind=RelationKind.DELEGATION, organization_id=ABC, contact_id=IND,
                     via_organization_id=SQC, role=Role.INDIVIDU_AUTORISE, subjects={"*": Right.WRITE},
                     **common),  # type: ignore[arg-type]
            at, "seed",
        )  # fmt: skip
        tx.bump_revision()
    store.close()
    return start_server(url, demo=False)


def test_management_checks_ignore_paths_through_another_organization(
    start_server: Callable[..., Running], tmp_path: Path, policy: Policy
) -> None:
    server = seeded_with_management_through_the_association(start_server, tmp_path, policy)
    client = server.client
    # What the delegations legitimately carry still works ...
    assert client.allowed(IND, ABC, "profil", "write")
    # ... but not management, neither by the explicit `relations` nor by "everything".
    assert not client.allowed(IND, ABC, "relations", "write")
    assert not client.allowed(IND, ABC, "relations", "read")
    explained = client.check(IND, ABC, "relations", "write", explain=True)
    assert not explained.allowed and "never held through another organization" in " ".join(explained.path)
    batch = client.batch_check([check_request(IND, ABC, "relations", "write") for _ in range(3)])
    assert not any(answer.allowed for answer in batch)
    # The attack of the finding: make himself dirigeant of the employer, end the employer's own manager.
    with pytest.raises(PermissionDeniedError):
        client.grant_relation(IND, ABC, contact_id=IND, role="dirigeant", attest=True)
    with pytest.raises(PermissionDeniedError):
        client.revoke_relation(IND, ABC, contact_id=ABC_PR, all_relations=True, attest=True)
    # The employer's list shows no management held by the association or through it.
    rows = list(client.iter_authorizations(ABC_PR, ABC))
    assert not [row for row in rows if row.subject == "relations" and row.active and row.contact_id != ABC_PR]


def test_the_last_manager_cannot_remove_himself(demo: Running) -> None:
    before = row_counts(demo)
    for scope in ({"all_relations": True}, {"relation_ids": ["R-ABC-PR"]}):
        with pytest.raises(FailedPreconditionError) as caught:
            demo.client.revoke_relation(ABC_PR, ABC, contact_id=ABC_PR, attest=True, **scope)  # type: ignore[arg-type]
        assert "no one to manage" in caught.value.message
    assert row_counts(demo) == before
    assert demo.client.allowed(ABC_PR, ABC, "relations", "write")


def test_a_second_manager_first_then_the_first_may_leave(demo: Running) -> None:
    # The guide's step 7: EMP-XYZ names a second person responsible, then its dirigeant leaves.
    second = demo.client.grant_relation(
        XYZ_DIR, XYZ, new_contact=NewContact(first_name="Nadia", last_name="Roy", email="nadia.roy@xyz.example.com"),
        role="personne_responsable", attest=True,
    ).contact_id  # fmt: skip
    demo.client.revoke_relation(XYZ_DIR, XYZ, contact_id=XYZ_DIR, all_relations=True, attest=True)
    assert not demo.client.allowed(XYZ_DIR, XYZ, "relations", "write")
    # Now she is the last one: she can neither leave nor lose `relations`.
    with pytest.raises(FailedPreconditionError):
        demo.client.revoke_relation(second, XYZ, contact_id=second, all_relations=True, attest=True)
    assert demo.client.allowed(second, XYZ, "relations", "write")


def test_removing_the_last_manager_s_relations_subject_is_refused(demo: Running) -> None:
    # A staff member managing through a granted subject, not a role default.
    answer = demo.client.grant_relation(
        ABC_PR, ABC, new_contact=NewContact(first_name="Léo", last_name="Gagné", email="leo.gagne@abc.example.com"),
        role="membre_du_personnel", subjects=[MANAGE], attest=True,
    )  # fmt: skip
    staff = answer.contact_id
    demo.client.revoke_relation(staff, ABC, contact_id=ABC_PR, all_relations=True, attest=True)
    before = row_counts(demo)
    with pytest.raises(FailedPreconditionError):
        demo.client.revoke_relation(
            staff, ABC, contact_id=staff, relation_id=answer.relation_id, subjects=["relations"], attest=True
        )
    assert row_counts(demo) == before
    assert demo.client.allowed(staff, ABC, "relations", "write")


def test_several_managers_may_leave_until_one_remains(demo: Running) -> None:
    demo.client.revoke_relation(PR, SQC, contact_id="C-DIR1", all_relations=True, attest=True)
    demo.client.revoke_relation(PR, SQC, contact_id="C-DIR2", all_relations=True, attest=True)
    with pytest.raises(FailedPreconditionError):
        demo.client.revoke_relation(PR, SQC, contact_id=PR, all_relations=True, attest=True)
    # Other removals are not held up by the rule.
    demo.client.revoke_relation(PR, SQC, contact_id="C-REP", all_relations=True, attest=True)
