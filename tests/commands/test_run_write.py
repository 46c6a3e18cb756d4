"""The write envelope (`run_write`): what it checks before the lock, and what it commits without a revision."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from authz.commands.grant import GrantRelation, GrantRelationRequest
from authz.commands.legacy import LinkLegacyAccess, LinkLegacyAccessRequest
from authz.commands.link_codes import RedeemLinkCode, RedeemLinkCodeRequest
from authz.commands.update_relation import UpdateRelation, UpdateRelationRequest
from authz.domain.model import Role
from authz.errors import InvalidArgument

from .conftest import ATTESTED, World


def _changes(world: World) -> int:
    with world.store.transaction() as tx:
        return len(tx.changes_after(0, 1000).changes)


@pytest.mark.parametrize(
    "dates",
    [{"start_date": "2026-02-30"}, {"end_date": "demain"}, {"start_date": "2026-05-01", "end_date": "2026-04-01"}],
)
def test_a_bad_date_is_refused_before_the_write_lock(world: World, dates: dict[str, str]) -> None:
    grant = GrantRelation(world.deps)
    request = GrantRelationRequest("C-PR", "ORG-SQC", contact_id="C-IND", role=Role.REPRESENTANT,
                                   attestation=ATTESTED, **dates)  # fmt: skip
    with world.deps.write_lock:  # another write holds the lock: a refusal that waited for it would not come now
        started = time.monotonic()
        with pytest.raises(InvalidArgument):
            grant.execute(request)
        assert time.monotonic() - started < 1.0


def test_a_past_end_date_is_refused_before_the_write_lock(world: World) -> None:
    request = UpdateRelationRequest("C-PR", "ORG-SQC", "R-REP", end_date="2020-01-01", attestation=ATTESTED)
    with world.deps.write_lock, pytest.raises(InvalidArgument) as caught:
        UpdateRelation(world.deps).execute(request)
    assert caught.value.violations[0].field == "end_date"


def test_a_wrong_link_code_takes_no_revision(world: World) -> None:
    before, logged = world.revision(), _changes(world)
    for _ in range(3):
        with pytest.raises(InvalidArgument):
            RedeemLinkCode(world.deps).execute(RedeemLinkCodeRequest("acct-1", "ABCD-EFGH-JKLM"))
    assert world.revision() == before and _changes(world) == logged
    with world.store.transaction() as tx:  # the guesses are counted all the same
        assert tx.count_failed_attempts(since=world.clock() - timedelta(hours=1),
                                        account_id="acct-1") == 3  # fmt: skip


def test_a_wrong_legacy_password_takes_no_revision(world: World) -> None:
    before, logged = world.revision(), _changes(world)
    with pytest.raises(InvalidArgument):
        LinkLegacyAccess(world.deps).execute(LinkLegacyAccessRequest("acct-1", "sqc-admin", "not the password"))
    assert world.revision() == before and _changes(world) == logged
    with world.store.transaction() as tx:
        assert tx.linked_contacts("acct-1") == []


def test_a_legacy_link_takes_one_revision(world: World) -> None:
    before = world.revision()
    result = LinkLegacyAccess(world.deps).execute(
        LinkLegacyAccessRequest("acct-1", "sqc-admin", "demo-legacy-password")
    )
    assert result.contact_ids == ["C-PR"]
    assert world.revision() == before + 1
