"""Dates in the Montréal calendar, ids at the edge, link codes and legacy hashes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authz.domain.dates import MONTREAL, DayClock, in_force, local_date, parse_date
from authz.domain.secrets import (
    CODE_ALPHABET,
    code_lookup,
    grouped_link_code,
    hash_link_code,
    make_django_pbkdf2,
    new_link_code,
    normalize_link_code,
    verify_django_pbkdf2,
    verify_link_code,
)
from authz.domain.validation import email_problem, id_problem, name_problem


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)))
def test_day_clock_agrees_with_the_zone_conversion(moment: datetime) -> None:
    clock = DayClock()
    assert clock.ordinal(moment.timestamp()) == local_date(moment).toordinal()
    # The cached window answers the same for the next instants of the same day.
    assert clock.ordinal(moment.timestamp() + 0.001) == local_date(moment + timedelta(milliseconds=1)).toordinal()


@pytest.mark.parametrize(
    ("utc", "expected"),
    [
        (datetime(2026, 3, 8, 4, 59, tzinfo=UTC), date(2026, 3, 7)),  # before the spring-forward night ends
        (datetime(2026, 3, 8, 5, 0, tzinfo=UTC), date(2026, 3, 8)),
        (datetime(2026, 11, 1, 3, 59, tzinfo=UTC), date(2026, 10, 31)),  # EDT: UTC-4
        (datetime(2026, 11, 2, 4, 59, tzinfo=UTC), date(2026, 11, 1)),  # EST after fall back: UTC-5
        (datetime(2026, 11, 2, 5, 0, tzinfo=UTC), date(2026, 11, 2)),
    ],
)
def test_day_boundaries_follow_daylight_saving(utc: datetime, expected: date) -> None:
    assert local_date(utc) == expected
    assert DayClock().ordinal(utc.timestamp()) == expected.toordinal()


def test_the_last_day_of_time_is_in_range() -> None:
    moment = datetime(9999, 12, 31, 12, tzinfo=MONTREAL)
    assert DayClock().ordinal(moment.timestamp()) == date(9999, 12, 31).toordinal()


def test_windows_are_inclusive_and_removal_is_immediate() -> None:
    start, end = date(2026, 1, 1), date(2026, 1, 31)
    assert in_force(start, end, None, datetime(2026, 1, 1, 0, 0, tzinfo=MONTREAL))
    assert in_force(start, end, None, datetime(2026, 1, 31, 23, 59, tzinfo=MONTREAL))
    assert not in_force(start, end, None, datetime(2026, 2, 1, 0, 0, tzinfo=MONTREAL))
    removed = datetime(2026, 1, 10, 15, 0, tzinfo=UTC)
    assert in_force(start, end, removed, removed - timedelta(microseconds=1))
    assert not in_force(start, end, removed, removed)


@pytest.mark.parametrize("text", ["2026-1-01", "2026/01/01", "20260101", "2026-02-30", "", "2026-01-01T00:00"])
def test_dates_are_strict(text: str) -> None:
    with pytest.raises(ValueError):
        parse_date(text)


@pytest.mark.parametrize("value", ["C-1", "ORG-SQC", "a.b:c@d_e", "x" * 128])
def test_plain_ascii_ids_are_accepted(value: str) -> None:
    assert id_problem(value) is None


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "must not be empty"),
        ("x" * 129, "at most 128"),
        ("C\x00", "ASCII"),
        ("C\u200b1", "ASCII"),  # a zero-width space
        ("C 1", "ASCII"),
        ("C/1", "ASCII"),
        ("C-H\u00e9l\u00e8ne", "ASCII"),  # accented letters: ids are ASCII, names carry the accents
        ("C-1\u034f", "ASCII"),  # combining grapheme joiner: invisible
        ("C-1\ufe0f", "ASCII"),  # variation selector
        ("C-\u3164", "ASCII"),  # Hangul filler
        ("C-\u180b", "ASCII"),  # Mongolian variation selector
        ("C-\u0420\u0420", "ASCII"),  # Cyrillic look-alikes of P
        ("C-\uff21", "ASCII"),  # fullwidth A
        ("C-\U0001d400", "ASCII"),  # mathematical bold A
        ("\u0301C", "ASCII"),  # a leading combining mark
    ],
)
def test_bad_ids(value: str, problem: str) -> None:
    found = id_problem(value)
    assert found is not None and problem in found


@pytest.mark.parametrize("value", ["Hélène", "O'Brien-Côté", "Lê Thị", "株式会社"])
def test_names_keep_their_letters(value: str) -> None:
    assert name_problem(value) is None


@pytest.mark.parametrize(
    "value", ["", "   ", "\u3164", "\u3164\u3164", "\u115f", "A\nB", "A\u200bB", "\u0301A", "---", "x" * 201]
)
def test_names_refuse_invisible_filler_and_control_characters(value: str) -> None:
    assert name_problem(value) is not None


@pytest.mark.parametrize("value", ["a@b.ca", "mh.demers@example.org", "x+tag@sub.example.org"])
def test_emails_accepted(value: str) -> None:
    assert email_problem(value) is None


@pytest.mark.parametrize(
    "value",
    ["a@b.ca\n", "a@b.ca\r\nBcc: x@y.z", "\na@b.ca", "a b@c.de", "a@b", "@b.ca", "a@@b.ca", "x" * 320 + "@b.ca"],
)
def test_emails_match_whole_strings(value: str) -> None:
    assert email_problem(value) is not None


def test_link_codes_carry_80_bits_and_read_back_leniently() -> None:
    code = new_link_code()
    assert len(code) == 16 and set(code) <= set(CODE_ALPHABET) and len(CODE_ALPHABET) == 32  # 16 × 5 bits
    shown = grouped_link_code(code)
    assert shown.count("-") == 3
    assert normalize_link_code(shown.lower()) == code
    assert normalize_link_code(f" {shown} ") == code
    assert normalize_link_code("O0IL-0000-0000-0000") == "0011000000000000"  # O→0, I/L→1: as typed from paper
    assert normalize_link_code("ABCD-EFGH") is None
    assert normalize_link_code("UUUU-UUUU-UUUU-UUUU") is None
    assert len({new_link_code() for _ in range(1000)}) == 1000


def test_link_codes_are_stored_salted() -> None:
    code = new_link_code()
    salt, digest = hash_link_code(code)
    other_salt, other_digest = hash_link_code(code)
    assert salt != other_salt and digest != other_digest
    assert verify_link_code(code, salt, digest)
    assert not verify_link_code(new_link_code(), salt, digest)
    assert code not in digest and code not in code_lookup(code)


def test_django_pbkdf2_hashes() -> None:
    encoded = make_django_pbkdf2("s3cret", "somesalt", iterations=1000)
    assert encoded.startswith("pbkdf2_sha256$1000$somesalt$")
    assert verify_django_pbkdf2("s3cret", encoded)
    assert not verify_django_pbkdf2("S3cret", encoded)
    assert not verify_django_pbkdf2("s3cret", "md5$x$y")
    assert not verify_django_pbkdf2("s3cret", "pbkdf2_sha256$notanumber$s$h")


def test_the_fast_test_for_invisible_characters_agrees_with_the_rule_on_every_code_point() -> None:
    """single_line_problem skips the per-character rule for printable text: the two never differ."""
    from authz.domain.validation import _invisible, single_line_problem

    differ = [
        hex(code)
        for code in range(0x110000)
        if (single_line_problem(f"Hé{chr(code)}lène", 300) is None) == _invisible(chr(code))
    ]
    assert differ == []
