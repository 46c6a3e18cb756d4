"""Fail closed: any exception inside a decision denies and is logged; it never allows."""

from __future__ import annotations

import logging

import pytest
from authz_client import AuthzClientError, check_request

from ..conftest import Running
from ..integration.helpers import row_counts

PR, SQC = "C-PR", "ORG-SQC"


def broken(*_args: object, **_kwargs: object) -> bool:
    raise RuntimeError("index corrupted")


def test_a_fault_in_the_decision_denies_and_is_logged(
    demo: Running, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    client = demo.client
    assert client.allowed(PR, SQC, "relations", "write")  # allowed while the engine works
    engine = demo.app.engine
    monkeypatch.setattr(engine, "check", broken)
    monkeypatch.setattr(engine, "explain", broken)
    caplog.set_level(logging.ERROR)
    assert not client.allowed(PR, SQC, "relations", "write")
    explained = client.check(PR, SQC, "relations", "write", explain=True)
    assert not explained.allowed and explained.reason == "decision failed; denied"
    answers = client.batch_check([check_request(PR, SQC, "relations", "write")] * 3)
    assert [a.allowed for a in answers] == [False, False, False]
    assert "decision failed; denying" in caplog.text and "index corrupted" in caplog.text


def test_a_fault_in_a_write_s_permission_check_refuses_the_write(
    demo: Running, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    before = row_counts(demo)
    monkeypatch.setattr(demo.app.engine, "check", broken)
    with pytest.raises(AuthzClientError) as refused:
        demo.client.grant_relation(
            PR, SQC, contact_id="C-IND", role="membre_du_personnel", subjects=[("profil", "write")], attest=True
        )
    assert refused.value.code.name == "INTERNAL" and refused.value.message == "internal error; it was logged"
    assert "index corrupted" not in refused.value.message  # the cause stays in the log
    assert "index corrupted" in caplog.text
    assert row_counts(demo) == before
