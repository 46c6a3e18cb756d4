"""The rules every write keeps, through the real server: the status and the reason callers branch on."""

from __future__ import annotations

import grpc
import pytest
from authz_client import AuthzClientError, FailedPreconditionError, NewContact, PermissionDeniedError
from google.rpc import error_details_pb2, status_pb2

from ..conftest import Running
from .helpers import row_counts

PR, SQC, ABC, ABC_PR = "C-PR", "ORG-SQC", "EMP-ABC", "C-ABC-PR"


def reason(error: AuthzClientError) -> str:
    """The google.rpc.ErrorInfo reason the server sent with the status."""
    call = error.__cause__
    assert isinstance(call, grpc.Call)
    status = status_pb2.Status.FromString(dict(call.trailing_metadata() or ())["grpc-status-details-bin"])
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    raise AssertionError("no ErrorInfo in the status")


def test_the_last_manager_cannot_take_management_from_herself(demo: Running) -> None:
    client = demo.client
    person = NewContact(first_name="Lise", last_name="Roy", email="lise.roy@example.org")
    granted = client.grant_relation(
        ABC_PR, ABC, new_contact=person, role="membre_du_personnel", subjects=[("relations", "write")], attest=True
    )
    client.revoke_relation(ABC_PR, ABC, contact_id=ABC_PR, all_relations=True, attest=True)
    lise = granted.contact_id
    before = row_counts(demo)
    with pytest.raises(FailedPreconditionError) as caught:
        client.update_relation(lise, ABC, granted.relation_id, add_subjects=[("relations", "read")], attest=True)
    assert reason(caught.value) == "LAST_MANAGER"
    assert row_counts(demo) == before
    assert client.lookup_principals(ABC, "relations", "write").principal_ids == [lise]


def test_no_one_widens_their_own_relation(demo: Running) -> None:
    client = demo.client
    before = row_counts(demo)
    with pytest.raises(PermissionDeniedError) as caught:
        client.update_relation(PR, SQC, "R-PR", add_subjects=[("paiements_et_releves", "write")], attest=True)
    assert reason(caught.value) == "SELF_GRANT"
    with pytest.raises(PermissionDeniedError) as caught:
        client.grant_relation(PR, SQC, contact_id=PR, role="dirigeant", attest=True)
    assert reason(caught.value) == "SELF_GRANT"
    assert row_counts(demo) == before
    assert not client.allowed(PR, SQC, "paiements_et_releves", "write")
