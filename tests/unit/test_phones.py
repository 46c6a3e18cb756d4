"""Phone numbers read in a region and kept in E.164 (authz.domain.phones)."""

from __future__ import annotations

import pytest

from authz.domain.phones import e164


@pytest.mark.parametrize(
    ("number", "region", "expected"),
    [
        ("514 987-6543", "", "+15149876543"),  # the default region is Canada
        ("(514) 987-6543", "CA", "+15149876543"),
        ("+1 514 987 6543", "FR", "+15149876543"),  # "+" wins over the region
        ("01 42 68 53 00", "fr", "+33142685300"),
    ],
)
def test_e164_normalizes_the_same_number_the_same_way(number: str, region: str, expected: str) -> None:
    assert e164(number, region) == (expected, None)


@pytest.mark.parametrize(
    ("number", "region", "fragment"),
    [
        ("abc", "CA", "not a phone number"),
        ("514 98", "CA", "not a valid phone number in CA"),
        ("", "CA", "must not be empty"),
        ("514 987-6543", "ZZ", "not an ISO 3166 code"),
    ],
)
def test_e164_refuses_what_is_not_a_number_of_the_region(number: str, region: str, fragment: str) -> None:
    value, problem = e164(number, region)
    assert value == "" and problem is not None and fragment in problem
