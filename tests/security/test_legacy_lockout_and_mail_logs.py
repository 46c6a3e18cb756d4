"""A legacy login locked by guessers still leaves its owner a way in; the mailer logs addresses by domain only."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

import pytest
from authz_client import InvalidArgumentError, ResourceExhaustedError

from authz.commands.legacy import LEGACY_LOGIN_FAILURE_LIMIT
from authz.mail import MailDeliveryError, OutboxRelay, redact_addresses
from authz.store.interface import OutboxRow

from ..conftest import Running
from ..integration.helpers import codes_for

PR, SQC = "C-PR", "ORG-SQC"
LEGACY_LOGIN, LEGACY_PASSWORD = "sqc-admin", "demo-legacy-password"


def test_a_legacy_login_locked_by_guessers_leaves_its_owner_the_link_code(demo: Running) -> None:
    """Anyone may lock a legacy login for an hour by guessing (the lock guards its hash against
    guesses spread over many accounts). The owner is not locked out of their file: their
    organization sends them a link code, which the lock does not touch."""
    client = demo.client
    for attempt in range(LEGACY_LOGIN_FAILURE_LIMIT):
        with pytest.raises(InvalidArgumentError):
            client.link_legacy_access(f"acct-guesser-{attempt}", LEGACY_LOGIN, f"guess-{attempt}")
    with pytest.raises(ResourceExhaustedError):
        client.link_legacy_access("acct-julie", LEGACY_LOGIN, LEGACY_PASSWORD)
    client.issue_link_code("C-DIR1", SQC, PR, attest=True)
    assert client.redeem_link_code("acct-julie", codes_for(demo, "julie.tremblay@")[-1]).contact_id == PR
    assert {p.contact_id for p in client.list_profiles("acct-julie").profiles} == {PR}


class _Refusing:
    def send(self, message_id: str, recipient: str, subject: str, body: str) -> None:
        raise MailDeliveryError(f"550 mailbox unavailable: <{recipient}>")


class _Accepting:
    def send(self, message_id: str, recipient: str, subject: str, body: str) -> None:
        return None


def test_the_mailer_logs_no_email_address(
    start_server: Callable[..., Running], caplog: pytest.LogCaptureFixture
) -> None:
    server = start_server(demo=False)
    server.app.relay.stop()  # this test drives the relay itself
    with server.store.transaction() as tx:
        tx.enqueue_mail(OutboxRow("m-1", "julie.tremblay@sqc.example.org", "s", "b"), server.app.deps.clock())
    caplog.set_level(logging.DEBUG, logger="authz.mail")
    OutboxRelay(server.store, _Refusing()).deliver_pending()
    # The failed attempt is retried after its pause: the second relay reads a clock past it.
    later = server.app.deps.clock() + timedelta(minutes=5)
    OutboxRelay(server.store, _Accepting(), clock=lambda: later).deliver_pending()
    lines = [record.getMessage() for record in caplog.records if record.name == "authz.mail"]
    assert any("failed" in line for line in lines) and any("sent to" in line for line in lines), lines
    assert not any("julie" in line for line in lines), lines
    assert any("***@sqc.example.org" in line for line in lines), lines


def test_redact_address_keeps_the_domain_only() -> None:
    assert redact_addresses("julie.tremblay@sqc.example.org") == "***@sqc.example.org"
    assert redact_addresses("Julie <julie@x.example>") == "Julie <***@x.example>"
    assert redact_addresses("no address") == "no address"
