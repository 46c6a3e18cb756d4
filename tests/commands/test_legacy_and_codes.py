"""LinkLegacyAccess (one person per call, hashing bounded) and RedeemLinkCode (the link moves),
at the commands, without a server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from authz.cli import DEMO_FILE
from authz.commands.base import Attestation, Deps
from authz.commands.import_data import import_file
from authz.commands.legacy import LinkLegacyAccess, LinkLegacyAccessRequest
from authz.commands.link_codes import IssueLinkCode, IssueLinkCodeRequest, RedeemLinkCode, RedeemLinkCodeRequest
from authz.config import Settings
from authz.engine.index import DecisionEngine
from authz.engine.policy import Policy
from authz.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from authz.store.sql import SqlStore, open_store

LOGIN, PASSWORD = "sqc-direction", "direction-2019"  # shared by C-DIR1 and C-DIR2


@pytest.fixture
def deps(tmp_path: Path, policy: Policy) -> Iterator[Deps]:
    store: SqlStore = open_store(Settings(database_url=f"sqlite:///{tmp_path / 'authz.db'}"))
    import_file(store, DEMO_FILE, policy.subjects)
    engine = DecisionEngine(policy)
    with store.snapshot() as snapshot:
        engine.load_rows(snapshot.rows, snapshot.revision)
    yield Deps(store=store, engine=engine, settings=Settings(max_concurrent_hashing=1))
    store.close()


def attempts(deps: Deps) -> int:
    with deps.store.transaction() as tx:
        return tx.count_failed_attempts(since=deps.clock() - timedelta(hours=1), legacy_username=LOGIN)


def test_a_shared_login_links_one_person_per_call(deps: Deps) -> None:
    link = LinkLegacyAccess(deps)
    with pytest.raises(InvalidArgument) as several:
        link.execute(LinkLegacyAccessRequest("acct-first", LOGIN, PASSWORD, ("C-DIR1", "C-DIR2")))
    assert several.value.violations[0].field == "contact_ids"
    assert attempts(deps) == 0  # refused before anything was counted or hashed
    assert link.execute(LinkLegacyAccessRequest("acct-marc", LOGIN, PASSWORD, ("C-DIR1",))).contact_ids == ["C-DIR1"]
    with pytest.raises(FailedPrecondition) as again:
        link.execute(LinkLegacyAccessRequest("acct-marc", LOGIN, PASSWORD, ("C-DIR2",)))
    assert again.value.reason == "LEGACY_LOGIN_ALREADY_LINKED"
    assert link.execute(LinkLegacyAccessRequest("acct-sophie", LOGIN, PASSWORD, ("C-DIR2",))).contact_ids == ["C-DIR2"]


def test_hashing_beyond_the_bound_is_refused_at_once_and_records_nothing(deps: Deps) -> None:
    link = LinkLegacyAccess(deps)
    assert link._hashing.acquire(blocking=False)  # the one slot is taken, as by a call in progress
    try:
        with pytest.raises(ResourceExhausted) as busy:
            link.execute(LinkLegacyAccessRequest("acct-x", LOGIN, "wrong", ("C-DIR1",)))
        assert busy.value.reason == "HASHING_BUSY"
    finally:
        link._hashing.release()
    assert attempts(deps) == 0
    with pytest.raises(InvalidArgument):
        link.execute(LinkLegacyAccessRequest("acct-x", LOGIN, "wrong", ("C-DIR1",)))
    assert attempts(deps) == 1


def test_redeeming_a_new_code_moves_the_link_and_queues_a_notice(deps: Deps) -> None:
    def code_for_luc() -> str:
        IssueLinkCode(deps).execute(
            IssueLinkCodeRequest("C-PR", "ORG-SQC", "C-IND", attestation=Attestation(False, True))
        )
        bodies = [m.body for m in deps.store.pending_outbox(100) if m.recipient.startswith("luc.cote@")]
        codes = [line.split(": ")[-1] for body in bodies for line in body.splitlines() if "Code de liaison" in line]
        return codes[-1]

    RedeemLinkCode(deps).execute(RedeemLinkCodeRequest("acct-old", code_for_luc()))
    RedeemLinkCode(deps).execute(RedeemLinkCodeRequest("acct-new", code_for_luc()))
    with deps.store.transaction() as tx:
        assert tx.accounts_linked_to("C-IND") == ["acct-new"]
    notices = [m for m in deps.store.pending_outbox(100) if "lié à un autre compte" in m.subject]
    assert [m.recipient for m in notices] == ["luc.cote@sqc.example.org"]
