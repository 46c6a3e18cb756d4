"""Retries, deadlines across attempts, TLS options and error text, against the in-process fake."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from authz_client import (
    AsyncAuthzClient,
    AuthzClient,
    AuthzClientError,
    FailedPreconditionError,
    InvalidArgumentError,
    RetryPolicy,
    Tls,
    UnavailableError,
)
from fake_authz import FakeAuthz

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


class Pauses:
    """A jitter that records each pause the policy asks for and sleeps a tenth of the ceiling."""

    def __init__(self) -> None:
        self.ceilings: list[float] = []

    def __call__(self, low: float, high: float) -> float:
        self.ceilings.append(high)
        return high / 10


def policy(pauses: Pauses, **options: object) -> RetryPolicy:
    settings: dict[str, object] = {"max_attempts": 4, "initial_backoff": 0.05, "max_backoff": 0.15, **options}
    return RetryPolicy(jitter=pauses, **settings)  # type: ignore[arg-type]


def test_a_read_is_retried_on_unavailable_with_growing_backoff(target: str, fake: FakeAuthz) -> None:
    fake.fail("CheckAccess", UNAVAILABLE, "restarting", times=3)
    pauses = Pauses()
    with AuthzClient(target, retry=policy(pauses)) as client:
        assert client.allowed("C-1", "ORG-SQC", "rapport_mensuel", "read") is True
    assert len(fake.requests("CheckAccess")) == 4
    assert pauses.ceilings == [0.05, 0.1, 0.15]  # doubled each time, capped at max_backoff


def test_attempts_are_bounded(target: str, fake: FakeAuthz) -> None:
    fake.fail("ListProfiles", UNAVAILABLE, "down")
    pauses = Pauses()
    with AuthzClient(target, retry=policy(pauses)) as client, pytest.raises(UnavailableError) as caught:
        client.list_profiles("A-1")
    assert len(fake.requests("ListProfiles")) == 4 and len(pauses.ceilings) == 3
    assert caught.value.message == "down"


def test_a_write_is_retried_only_with_a_request_id(target: str, fake: FakeAuthz) -> None:
    pauses = Pauses()
    with AuthzClient(target, retry=policy(pauses)) as client:
        fake.fail("GrantRelation", UNAVAILABLE, "store down", times=1)
        client.grant_relation("C-1", "ORG-SQC", contact_id="C-2", role="dirigeant", attest=True, request_id="form-1")
        assert [r.request_id for r in fake.requests("GrantRelation")] == ["form-1", "form-1"]

        fake.reset()
        fake.fail("GrantRelation", UNAVAILABLE, "store down", times=1)
        with pytest.raises(UnavailableError):
            client.grant_relation("C-1", "ORG-SQC", contact_id="C-2", role="dirigeant", attest=True)
        assert len(fake.requests("GrantRelation")) == 1  # no request id: a retry could write twice

        fake.fail("RevokeRelation", UNAVAILABLE, "store down", times=1)
        client.revoke_relation("C-1", "ORG-SQC", contact_id="C-2", all_relations=True, attest=True, request_id="r-1")
        assert len(fake.requests("RevokeRelation")) == 2
        fake.fail("IssueLinkCode", UNAVAILABLE, "store down", times=1)
        client.issue_link_code("C-1", "ORG-SQC", "C-2", request_id="i-1")
        assert len(fake.requests("IssueLinkCode")) == 2


def test_the_guide_s_other_writes_are_retried_only_with_a_request_id(target: str, fake: FakeAuthz) -> None:
    with AuthzClient(target, retry=policy(Pauses())) as client:
        for rpc, write in (
            ("UpdateContact", lambda rid: client.update_contact("C-1", "ORG-SQC", "C-2", first_name="A", request_id=rid)),
            ("UpdateRelation", lambda rid: client.update_relation("C-1", "ORG-SQC", "R-1", end_date="2030-01-01", request_id=rid)),
            ("ResolveMigrationIssue", lambda rid: client.resolve_migration_issue("C-1", "ORG-SQC", "I-1", request_id=rid)),
        ):  # fmt: skip
            fake.reset()
            fake.fail(rpc, UNAVAILABLE, "store down", times=1)
            with pytest.raises(UnavailableError):
                write("")
            assert len(fake.requests(rpc)) == 1, rpc  # no request id: a retry could write twice
            fake.fail(rpc, UNAVAILABLE, "store down", times=1)
            write(f"{rpc}-1")
            assert len(fake.requests(rpc)) == 3, rpc


def test_redeeming_a_code_is_never_retried(target: str, fake: FakeAuthz) -> None:
    fake.fail("RedeemLinkCode", UNAVAILABLE, "down", times=1)
    fake.fail("LinkLegacyAccess", UNAVAILABLE, "down", times=1)
    with AuthzClient(target, retry=policy(Pauses())) as client:
        with pytest.raises(UnavailableError):
            client.redeem_link_code("A-1", "ABCD-EFGH-JKMN-PQRS")
        with pytest.raises(UnavailableError):
            client.link_legacy_access("A-1", "legacy", "password")
    assert len(fake.requests("RedeemLinkCode")) == len(fake.requests("LinkLegacyAccess")) == 1


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgumentError),
        (grpc.StatusCode.FAILED_PRECONDITION, FailedPreconditionError),
    ],
)
def test_other_codes_are_not_retried(
    target: str, fake: FakeAuthz, code: grpc.StatusCode, error: type[AuthzClientError]
) -> None:
    fake.fail("CheckAccess", code, "no", times=1)
    with AuthzClient(target, retry=policy(Pauses())) as client, pytest.raises(error):
        client.check("C-1", "ORG-SQC", "rapport_mensuel", "read")
    assert len(fake.requests("CheckAccess")) == 1


def test_no_retry_policy_means_one_attempt(target: str, fake: FakeAuthz) -> None:
    fake.fail("CheckAccess", UNAVAILABLE, "down", times=1)
    with AuthzClient(target, retry=None) as client, pytest.raises(UnavailableError):
        client.check("C-1", "ORG-SQC", "rapport_mensuel", "read")
    assert len(fake.requests("CheckAccess")) == 1


def test_the_deadline_covers_every_attempt(target: str, fake: FakeAuthz) -> None:
    fake.fail("CheckAccess", UNAVAILABLE, "down")
    # Pauses of 0.5 s against a 0.3 s deadline: the pause is cut short to leave room for one more
    # attempt within the deadline, and the call ends with it, not 0.5 s later.
    slow = RetryPolicy(max_attempts=10, initial_backoff=0.5, max_backoff=0.5, jitter=lambda low, high: high)
    started = time.monotonic()
    with AuthzClient(target, timeout=0.3, retry=slow) as client, pytest.raises(UnavailableError):
        client.check("C-1", "ORG-SQC", "rapport_mensuel", "read")
    assert len(fake.requests("CheckAccess")) == 2
    assert time.monotonic() - started < 0.45
    # Short pauses: later attempts get what is left of the one deadline, never a fresh one.
    fake.reset()
    fake.fail("CheckAccess", UNAVAILABLE, "down", times=2)
    quick = RetryPolicy(max_attempts=10, initial_backoff=0.05, max_backoff=0.05, jitter=lambda low, high: high)
    with AuthzClient(target, timeout=2.0, retry=quick) as client:
        client.check("C-1", "ORG-SQC", "rapport_mensuel", "read")
    remaining = [call.time_remaining for call in fake.calls if call.method == "CheckAccess"]
    assert len(remaining) == 3 and all(r is not None for r in remaining)
    assert remaining[2] < remaining[0]  # type: ignore[operator]


def test_the_default_retry_lasts_until_the_deadline(target: str, fake: FakeAuthz) -> None:
    # A restart takes seconds: the default policy keeps trying, with backoff, for as long as the deadline allows.
    # Six failures: more than the five attempts the default once allowed.
    fake.fail("CheckAccess", UNAVAILABLE, "restarting", times=6)
    with AuthzClient(target, timeout=20.0) as client:
        client.check("C-1", "ORG-SQC", "rapport_mensuel", "read")
    assert len(fake.requests("CheckAccess")) == 7


def test_the_async_client_retries_the_same_way(target: str, fake: FakeAuthz) -> None:
    fake.fail("ListContacts", UNAVAILABLE, "restarting", times=2)
    fake.fail("GrantRelation", UNAVAILABLE, "store down", times=1)
    pauses = Pauses()

    async def main() -> int:
        async with AsyncAuthzClient(target, retry=policy(pauses)) as client:
            page = await client.list_contacts("C-1", "ORG-SQC")
            with pytest.raises(UnavailableError):
                await client.grant_relation("C-1", "ORG-SQC", contact_id="C-2", role="dirigeant", attest=True)
            return len(page.contacts)

    assert asyncio.run(main()) >= 1
    assert len(fake.requests("ListContacts")) == 3 and len(fake.requests("GrantRelation")) == 1
    assert pauses.ceilings == [0.05, 0.1]


def test_retry_policy_and_tls_refuse_misuse(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(initial_backoff=2.0, max_backoff=1.0)
    with pytest.raises(ValueError, match="key"):
        Tls(cert=b"certificate")
    with pytest.raises(ValueError, match="not both"):
        AuthzClient("127.0.0.1:1", tls=True, credentials=grpc.ssl_channel_credentials())
    with grpc.insecure_channel("127.0.0.1:1") as channel, pytest.raises(ValueError):
        AuthzClient(channel=channel, tls=True)
    with pytest.raises(FileNotFoundError):
        AuthzClient("127.0.0.1:1", tls=Tls(ca=tmp_path / "missing.pem"))


def test_error_text_does_not_repeat_the_violation(target: str, fake: FakeAuthz) -> None:
    fake.fail(
        "CheckAccess",
        grpc.StatusCode.INVALID_ARGUMENT,
        "subject: unknown subject 'formation'",
        violations=[("subject", "unknown subject 'formation'"), ("right", "must be RIGHT_READ or RIGHT_WRITE")],
    )
    with AuthzClient(target) as client, pytest.raises(InvalidArgumentError) as caught:
        client.check("C-1", "ORG-SQC", "formation", "read")
    text = str(caught.value)
    assert text.count("unknown subject 'formation'") == 1
    assert text == ("INVALID_ARGUMENT: subject: unknown subject 'formation' (right: must be RIGHT_READ or RIGHT_WRITE)")
    assert caught.value.field_violations[0] == ("subject", "unknown subject 'formation'")
