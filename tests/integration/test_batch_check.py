"""BatchCheckAccess: one pass, answers in order, the same answers as CheckAccess, a documented maximum."""

from __future__ import annotations

import itertools

import pytest
from authz_client import InvalidArgumentError, Right, check_request

from ..conftest import Running

SUBJECTS = ("relations", "rapport_mensuel", "paiements_et_releves", "profil", "scrutin_syndical")
CONTACTS = ("C-PR", "C-DIR1", "C-IND", "C-REP", "C-ABC-PR", "C-XYZ-DIR", "NOBODY")
ORGANIZATIONS = ("ORG-SQC", "LOC-SQC-MTL", "EMP-ABC", "EMP-XYZ")


def test_batch_answers_equal_single_checks_in_order(demo: Running) -> None:
    client = demo.client
    cases = list(itertools.product(CONTACTS, ORGANIZATIONS, SUBJECTS, (Right.RIGHT_READ, Right.RIGHT_WRITE)))
    batch = client.batch_check([check_request(*case) for case in cases])
    singles = [client.allowed(*case) for case in cases]
    assert [result.allowed for result in batch] == singles
    assert any(singles) and not all(singles)
    assert {result.policy_hash for result in batch} == {client.check(*cases[0]).policy_hash}


def test_an_explained_item_is_explained_and_keeps_its_place(demo: Running) -> None:
    batch = demo.client.batch_check(
        [
            check_request("C-PR", "ORG-SQC", "relations", Right.RIGHT_WRITE),
            check_request("C-REP", "ORG-SQC", "paiements_et_releves", Right.RIGHT_READ, explain=True),
            check_request("C-DIR1", "ORG-SQC", "profil", Right.RIGHT_WRITE),
        ]
    )
    assert [result.allowed for result in batch] == [True, False, True]
    assert batch[1].reason and not batch[0].reason


def test_every_bad_item_is_reported_and_nothing_answered(demo: Running) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        demo.client.batch_check(
            [
                check_request("C-PR", "ORG-SQC", "relations", Right.RIGHT_WRITE),
                check_request("C-PR", "ORG-SQC", "no_such_subject", Right.RIGHT_READ),
                check_request("C-PR", "ORG SQC", "profil", Right.RIGHT_READ),
            ]
        )
    fields = {field for field, _ in raised.value.field_violations}
    assert fields == {"checks[1].subject", "checks[2].organization_id"}


def test_the_maximum_batch_is_settings_max_batch_checks(demo: Running) -> None:
    limit = demo.app.settings.max_batch_checks
    item = check_request("C-PR", "ORG-SQC", "profil", Right.RIGHT_READ)
    assert len(demo.client.batch_check([item] * limit)) == limit
    with pytest.raises(InvalidArgumentError) as raised:
        demo.client.batch_check([item] * (limit + 1))
    assert [field for field, _ in raised.value.field_violations] == ["checks"]
