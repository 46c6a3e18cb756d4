"""A legacy login the old system shared links one person per call, each in turn (rule 11)."""

from __future__ import annotations

import grpc
import pytest
from authz_client import FailedPreconditionError, InvalidArgumentError

from ..conftest import Running
from ..integration.helpers import row_counts

LOGIN, PASSWORD = "sqc-direction", "direction-2019"  # shared by Marc (C-DIR1) and Sophie (C-DIR2)


def test_one_call_naming_several_files_links_none(demo: Running) -> None:
    client = demo.client
    before = row_counts(demo)
    with pytest.raises(InvalidArgumentError) as refused:
        client.link_legacy_access("acct-first", LOGIN, PASSWORD, contact_ids=["C-DIR1", "C-DIR2"])
    assert refused.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.field_violations[0][0] == "contact_ids"
    assert not client.list_profiles("acct-first").profiles
    assert row_counts(demo)["account_links"] == before["account_links"]
    # Each person then links their own file, from their own account.
    assert list(client.link_legacy_access("acct-marc", LOGIN, PASSWORD, contact_ids=["C-DIR1"]).contact_ids) == [
        "C-DIR1"
    ]
    assert list(client.link_legacy_access("acct-sophie", LOGIN, PASSWORD, contact_ids=["C-DIR2"]).contact_ids) == [
        "C-DIR2"
    ]


def test_one_account_does_not_collect_a_shared_login_s_files_in_turn(demo: Running) -> None:
    client = demo.client
    client.link_legacy_access("acct-marc", LOGIN, PASSWORD, contact_ids=["C-DIR1"])
    with pytest.raises(FailedPreconditionError):
        client.link_legacy_access("acct-marc", LOGIN, PASSWORD, contact_ids=["C-DIR2"])
    assert [p.contact_id for p in client.list_profiles("acct-marc").profiles] == ["C-DIR1"]
    # Sophie's file stayed hers.
    assert list(client.link_legacy_access("acct-sophie", LOGIN, PASSWORD, contact_ids=["C-DIR2"]).contact_ids) == [
        "C-DIR2"
    ]
