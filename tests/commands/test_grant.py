"""GrantRelation's delegation form: given only to a contact in force in the organization."""

from __future__ import annotations

import pytest

from authz.commands.grant import GrantRelation, GrantRelationRequest
from authz.commands.revoke import RevokeRelation, RevokeRelationRequest
from authz.domain.model import Right
from authz.errors import FailedPrecondition, NotFound

from .conftest import ATTESTED, World

SUBJECTS = (("rapport_mensuel", Right.READ),)


def _delegate(world: World, contact: str) -> str:
    request = GrantRelationRequest("C-PR", "ORG-SQC", contact_id=contact, target_organization_id="EMP-ABC",
                                   subjects=SUBJECTS, attestation=ATTESTED)  # fmt: skip
    return GrantRelation(world.deps).execute(request).relation_id


def test_a_delegation_goes_to_a_contact_of_the_organization(world: World) -> None:
    with pytest.raises(NotFound):
        _delegate(world, "C-ABC-PR")  # a contact of the employer, never of the association


def test_a_delegation_goes_to_a_contact_in_force(world: World) -> None:
    RevokeRelation(world.deps).execute(
        RevokeRelationRequest("C-PR", "ORG-SQC", contact_id="C-REP", relation_ids=("R-REP",), attestation=ATTESTED)
    )
    with pytest.raises(FailedPrecondition):
        _delegate(world, "C-REP")
    assert _delegate(world, "C-DIR2").startswith("R-")
