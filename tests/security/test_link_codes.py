"""Link codes to standard: ASVS 5.0 V6 (one-time codes), NIST SP 800-63B §5.1.2 / 800-63A §4.4.1.6.

80 bits from `secrets`, only a salted hash stored, single use under concurrency (the
database's conditional update decides, not the in-process lock), bound to its contact,
24 hours by default, throttled per account and per contact, every attempt audited.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from authz_client import AuthzClient, AuthzClientError, InvalidArgumentError, ResourceExhaustedError
from sqlalchemy import func, select

from authz.commands.link_codes import ACCOUNT_FAILURE_LIMIT, CONTACT_FAILURE_LIMIT, THROTTLED_MESSAGE
from authz.config import Settings
from authz.domain import secrets as code_secrets
from authz.errors import InvalidLinkCode
from authz.store import tables

from ..conftest import Clock, Running
from ..integration.helpers import codes_for

PR, SQC, LUC = "C-PR", "ORG-SQC", "C-IND"
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def audit_actions(server: Running, actor: str) -> list[str]:
    with server.store.engine.connect() as connection:
        rows = connection.execute(
            select(tables.audit_log.c.action)
            .where(tables.audit_log.c.actor_id == actor)
            .order_by(tables.audit_log.c.id)
        )
        return [row.action for row in rows]


def count(server: Running, table: tables.Table, *where: object) -> int:
    with server.store.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table).where(*where)).scalar_one())  # type: ignore[arg-type]


def issue(server: Running) -> str:
    server.client.issue_link_code(PR, SQC, LUC, attest=True)
    return codes_for(server, "luc.cote@")[-1]


def test_codes_hold_80_bits_from_secrets_and_only_a_salted_hash_is_stored(
    demo: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[str] = []
    real_choice = code_secrets.secrets.choice

    def recording_choice(alphabet: str) -> str:
        drawn.append(alphabet)
        return real_choice(alphabet)

    monkeypatch.setattr(code_secrets.secrets, "choice", recording_choice)
    codes = [issue(demo) for _ in range(12)]
    # 16 draws from `secrets` over 32 symbols each: 80 bits.
    assert (
        len(drawn) == 12 * 16 and set(drawn) == {code_secrets.CODE_ALPHABET} and len(code_secrets.CODE_ALPHABET) == 32
    )
    assert len(set(codes)) == 12
    with demo.store.engine.connect() as connection:
        rows = connection.execute(select(tables.link_codes)).all()
        everything = " ".join(
            str(value)
            for table in tables.metadata.sorted_tables
            for row in connection.execute(select(table))
            for value in row
        )
    assert len({row.salt for row in rows}) == len(rows) == 12
    for code in codes:
        plain = code.replace("-", "")
        # Nowhere in the database once the emails went out: not in link_codes, not in the outbox, not in the audit.
        assert code not in everything and plain not in everything
    for row in rows:
        assert len(bytes.fromhex(row.salt)) == 16 and len(bytes.fromhex(row.code_hash)) == 32


def test_a_code_is_bound_to_its_contact(demo: Running) -> None:
    code = issue(demo)
    linked = demo.client.redeem_link_code("acct-luc", code.lower().replace("-", " "))  # any case, any separator
    assert (linked.contact_id, linked.organization_id) == (LUC, SQC)
    assert {p.contact_id for p in demo.client.list_profiles("acct-luc").profiles} == {LUC}


def test_codes_expire_after_24_hours_by_default(demo: Running, clock: Clock) -> None:
    assert Settings().link_code_ttl_seconds == 24 * 3600
    clock.set(NOW)
    answer = demo.client.issue_link_code(PR, SQC, LUC, attest=True)
    assert answer.expires_at.ToDatetime(tzinfo=UTC) == NOW + timedelta(hours=24)
    code = codes_for(demo, "luc.cote@")[-1]
    clock.set(NOW + timedelta(hours=23, minutes=59, seconds=59))
    assert demo.client.redeem_link_code("acct-1", code).contact_id == LUC
    clock.set(NOW)
    late = issue(demo)
    clock.set(NOW + timedelta(hours=24))
    with pytest.raises(InvalidArgumentError) as expired:
        demo.client.redeem_link_code("acct-2", late)
    assert expired.value.message == InvalidLinkCode.MESSAGE and expired.value.field_violations == [
        ("code", "not a valid link code")
    ]


def test_two_parallel_redemptions_of_one_code_exactly_one_wins(demo: Running) -> None:
    for round_ in range(3):
        code = issue(demo)
        outcomes = race([demo.client] * 8, [f"acct-race-{round_}-{i}" for i in range(8)], code)
        assert Counter(outcome for outcome, _ in outcomes) == {"won": 1, "INVALID_ARGUMENT": 7}
    # Each round's winner takes the link over from the previous one (rule 15): one account holds it.
    assert count(demo, tables.account_links, tables.account_links.c.contact_id == LUC) == 1
    assert count(demo, tables.link_codes, tables.link_codes.c.used_at.is_not(None)) == 3


def race(clients: list[AuthzClient], accounts: list[str], code: str) -> list[tuple[str, str]]:
    """Redeem `code` from every account at once (a barrier lines the threads up)."""
    barrier = threading.Barrier(len(accounts))
    outcomes: list[tuple[str, str]] = []
    lock = threading.Lock()

    def redeem(client: AuthzClient, account: str) -> None:
        barrier.wait(timeout=10)
        try:
            client.redeem_link_code(account, code)
            outcome = "won"
        except AuthzClientError as error:
            outcome = error.code.name
        with lock:
            outcomes.append((outcome, account))

    threads = [threading.Thread(target=redeem, args=pair) for pair in zip(clients, accounts, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(outcomes) == len(accounts)
    return outcomes


def test_two_servers_on_one_database_still_one_winner(start_server: Callable[..., Running], database_url: str) -> None:
    """Two processes' worth of servers, each with its own write lock: only the database's
    conditional update (`used_at IS NULL`) can make the code single-use here."""
    first = start_server(database_url)
    second = start_server(database_url, demo=False)
    assert first.app.deps.write_lock is not second.app.deps.write_lock
    for round_ in range(4):
        code = issue(first)
        outcomes = race([first.client, second.client] * 3, [f"acct-{round_}-{i}" for i in range(6)], code)
        tally = Counter(outcome for outcome, _ in outcomes)
        assert tally["won"] == 1, tally
        # PostgreSQL queues the loser on the row lock, then finds the code used. SQLite may instead
        # refuse the loser's stale snapshot outright (UNAVAILABLE: retry): it never lets two win.
        assert set(tally) <= {"won", "INVALID_ARGUMENT", "UNAVAILABLE"}, tally
    # Each round's winner takes the link over (rule 15): one account holds it, four codes were used.
    assert count(first, tables.account_links, tables.account_links.c.contact_id == LUC) == 1
    assert count(first, tables.link_codes, tables.link_codes.c.used_at.is_not(None)) == 4


def test_ten_wrong_codes_lock_the_account_for_an_hour_and_every_attempt_is_audited(demo: Running, clock: Clock) -> None:
    clock.set(NOW)
    code = issue(demo)
    for attempt in range(ACCOUNT_FAILURE_LIMIT):
        clock.set(NOW + timedelta(minutes=attempt))
        with pytest.raises(InvalidArgumentError) as wrong:
            demo.client.redeem_link_code("acct-guesser", f"ZZZZ-ZZZZ-ZZZZ-ZZ{attempt:02d}")
        assert wrong.value.message == InvalidLinkCode.MESSAGE
    clock.set(NOW + timedelta(minutes=30))
    with pytest.raises(ResourceExhaustedError) as throttled:
        demo.client.redeem_link_code("acct-guesser", "ZZZZ-ZZZZ-ZZZZ-ZZZZ")
    assert throttled.value.message == THROTTLED_MESSAGE
    with pytest.raises(ResourceExhaustedError):  # the right code too, while throttled
        demo.client.redeem_link_code("acct-guesser", code)
    assert count(demo, tables.account_links) == 0 or not demo.client.list_profiles("acct-guesser").profiles
    assert count(demo, tables.link_codes, tables.link_codes.c.used_at.is_not(None)) == 0
    # Another account is not held back by this one.
    with pytest.raises(InvalidArgumentError):
        demo.client.redeem_link_code("acct-someone-else", "ZZZZ-ZZZZ-ZZZZ-ZZZZ")
    # An hour after the first wrong code, that one leaves the window: one more try is allowed.
    clock.set(NOW + timedelta(hours=1, seconds=1))
    assert demo.client.redeem_link_code("acct-guesser", code).contact_id == LUC
    assert audit_actions(demo, "acct-guesser") == [
        *["redeem_link_code_failed"] * ACCOUNT_FAILURE_LIMIT,
        *["redeem_link_code_throttled"] * 2,
        "redeem_link_code",
    ]


def test_a_hundred_wrong_codes_against_one_contact_lock_that_contact(demo: Running, clock: Clock) -> None:
    """Many accounts, each under its own limit, after one contact: held against the contact.

    An account is after a contact once it has typed one of that contact's codes (an old,
    voided or used one); its other wrong codes in the window then count against that contact.
    """
    clock.set(NOW)
    stale = issue(demo)
    fresh = issue(demo)  # voids `stale`
    failures = 0
    account = 0
    while failures < CONTACT_FAILURE_LIMIT:
        name = f"acct-bot-{account}"
        account += 1
        with pytest.raises(InvalidArgumentError):
            demo.client.redeem_link_code(name, stale)
        failures += 1
        for guess in range(ACCOUNT_FAILURE_LIMIT - 2):
            if failures == CONTACT_FAILURE_LIMIT:
                break
            with pytest.raises(InvalidArgumentError):
                demo.client.redeem_link_code(name, f"ZZZZ-ZZZZ-ZZZZ-ZZ{guess:02d}")
            failures += 1
    assert account > CONTACT_FAILURE_LIMIT // ACCOUNT_FAILURE_LIMIT  # no single account hit its own limit
    # Luc himself, with the right code: refused while his contact is throttled.
    with pytest.raises(ResourceExhaustedError) as throttled:
        demo.client.redeem_link_code("acct-luc", fresh)
    assert throttled.value.message == THROTTLED_MESSAGE
    # A bot already after Luc, even with a fresh guess: refused too.
    with pytest.raises(ResourceExhaustedError):
        demo.client.redeem_link_code("acct-bot-0", "ZZZZ-ZZZZ-ZZZZ-ZZZY")
    assert audit_actions(demo, "acct-luc") == ["redeem_link_code_throttled"]
    clock.set(NOW + timedelta(hours=1, seconds=1))
    assert demo.client.redeem_link_code("acct-luc", fresh).contact_id == LUC


def test_legacy_password_guesses_share_the_account_limit(demo: Running, clock: Clock) -> None:
    clock.set(NOW)
    for guess in range(ACCOUNT_FAILURE_LIMIT - 1):
        with pytest.raises(InvalidArgumentError):
            demo.client.redeem_link_code("acct-dir", f"ZZZZ-ZZZZ-ZZZZ-ZZ{guess:02d}")
    with pytest.raises(InvalidArgumentError):
        demo.client.link_legacy_access("acct-dir", "sqc-direction", "not-the-password")
    with pytest.raises(ResourceExhaustedError) as throttled:
        demo.client.link_legacy_access("acct-dir", "sqc-direction", "direction-2019")
    assert throttled.value.message == THROTTLED_MESSAGE
    assert not demo.client.list_profiles("acct-dir").profiles
    assert audit_actions(demo, "acct-dir")[-2:] == ["link_legacy_access_failed", "link_legacy_access_throttled"]
    clock.set(NOW + timedelta(hours=1, seconds=1))
    linked = demo.client.link_legacy_access("acct-dir", "sqc-direction", "direction-2019", contact_ids=["C-DIR1"])
    assert list(linked.contact_ids) == ["C-DIR1"]
