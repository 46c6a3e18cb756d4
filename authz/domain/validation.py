"""Every input rule, once: ids, names, emails, phones, languages, date windows, subject lists.

The server's edge (authz/server/convert.py), the commands and `authz import` all call these,
so a rule changed here is changed everywhere. Each function either returns the clean value
or records a `FieldViolation` in the list it is given, so a caller can collect every problem
of a request before refusing it whole.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from authz.domain.dates import parse_date
from authz.domain.model import MANAGEMENT_SUBJECT, RelationKind, Right
from authz.domain.secrets import MAX_LEGACY_ITERATIONS
from authz.errors import FieldViolation, InvalidArgument

__all__ = [
    "ID_SEPARATORS",
    "LANGUAGES",
    "MANAGEMENT_SUBJECT",
    "MAX_EMAIL",
    "MAX_ID_LENGTH",
    "MAX_LEGACY_HASH",
    "MAX_NAME",
    "MAX_ORGANIZATION_NAME",
    "MAX_PASSWORD",
    "MAX_PHONE",
    "MAX_SUBJECT",
    "MAX_TOKEN",
    "MAX_USERNAME",
    "PHONE_TYPES",
    "Violations",
    "email_problem",
    "id_problem",
    "instant_problem",
    "is_plain_id",
    "language_problem",
    "legacy_hash_problem",
    "management_subject_problem",
    "name_problem",
    "phone_problem",
    "phone_type_problem",
    "raise_if_any",
    "self_authorization_problem",
    "single_line_problem",
    "username_problem",
]

# Limits, in characters; the store's columns are at least this wide (authz/store/tables.py).
MAX_ID_LENGTH = 128
MAX_NAME = 200
MAX_ORGANIZATION_NAME = 300
MAX_EMAIL = 320
MAX_PHONE = 40
MAX_SUBJECT = 64
MAX_USERNAME = 200
MAX_LEGACY_HASH = 300
MAX_PASSWORD = 1024
MAX_TOKEN = 1024
LANGUAGES = ("fr", "en")
# the guide's "Type du numéro de téléphone principal" ("" = not given).
PHONE_TYPES = ("cellulaire", "domicile", "travail", "autre")

# Ids are ASCII: letters, digits and these separators. No look-alike letters of other scripts,
# no invisible characters, nothing to normalize: the same id is always the same bytes.
ID_SEPARATORS = "- _ . : @"
_ID = re.compile(rf"[A-Za-z0-9_.:@-]{{1,{MAX_ID_LENGTH}}}")
# The check path's test: a match is a valid id.
is_plain_id = _ID.fullmatch

# One address, whole string: `fullmatch`, never `match` with `$` (which accepts a final newline).
_EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+")
# Hangul fillers and other characters that print as nothing but are not "format" characters.
_FILLERS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u034f\u180b\u180c\u180d\u180e\u180f")
# What _invisible flags among printable characters: the fillers and the variation selectors.
_PRINTABLE_BUT_INVISIBLE = re.compile("[" + "".join(sorted(_FILLERS)) + "\ufe00-\ufe0f\U000e0100-\U000e01ef]")


def id_problem(value: str) -> str | None:
    """Why `value` is not an acceptable id, or None."""
    if not value:
        return "must not be empty"
    if len(value) > MAX_ID_LENGTH:
        return f"must be at most {MAX_ID_LENGTH} characters"
    if not is_plain_id(value):
        return f"may hold only ASCII letters, digits and {ID_SEPARATORS}"
    return None


def _invisible(char: str) -> bool:
    category = unicodedata.category(char)
    # Cc control, Cf format (zero-width, bidi), Co/Cn private and unassigned, Zl/Zp separators;
    # variation selectors are marks (Mn) that draw nothing on their own.
    return (
        category in ("Cc", "Cf", "Co", "Cn", "Cs", "Zl", "Zp")
        or char in _FILLERS
        or 0xFE00 <= ord(char) <= 0xFE0F
        or 0xE0100 <= ord(char) <= 0xE01EF
    )


def single_line_problem(value: str, limit: int) -> str | None:
    """Free text on one line (names, usernames): printable, no invisible characters."""
    if len(value) > limit:
        return f"must be at most {limit} characters"
    # str.isprintable() is False for every Cc, Cf, Co, Cn, Cs, Zl and Zp character: when it holds
    # (accented names included), only fillers and selectors are left to look for, both at C speed.
    if value.isprintable():
        invisible = _PRINTABLE_BUT_INVISIBLE.search(value) is not None
    else:
        invisible = any(_invisible(char) for char in value)
    if invisible:
        return "must not contain control, invisible or filler characters"
    return None


def name_problem(value: str, limit: int = MAX_NAME) -> str | None:
    """A person's or organization's name: something visible, on one line."""
    if not value.strip():
        return "must not be empty"
    problem = single_line_problem(value, limit)
    if problem is not None:
        return problem
    if unicodedata.category(value.lstrip()[0]).startswith("M"):
        return "must not start with a combining mark"
    if not any(char.isalnum() for char in value):
        return "must hold at least one letter or digit"
    return None


def email_problem(value: str, *, required: bool = True) -> str | None:
    if not value:
        return "must be a valid email address" if required else None
    if len(value) > MAX_EMAIL:
        return f"must be at most {MAX_EMAIL} characters"
    if not _EMAIL.fullmatch(value):
        return "must be a valid email address"
    return None


def phone_problem(value: str) -> str | None:
    return single_line_problem(value, MAX_PHONE)


def phone_type_problem(value: str) -> str | None:
    return None if value in ("", *PHONE_TYPES) else f"must be one of {', '.join(PHONE_TYPES)} (or empty)"


def instant_problem(seconds: int, nanos: int) -> str | None:
    """A protobuf Timestamp inside what a date can hold (years 1 to 9999)."""
    if not 0 <= nanos < 1_000_000_000:
        return "nanos must be between 0 and 999,999,999"
    if not _MIN_SECONDS <= seconds <= _MAX_SECONDS:
        return "must be between years 0001 and 9999"
    return None


_MIN_SECONDS = int(datetime(1, 1, 2, tzinfo=UTC).timestamp())  # a day of margin for the Montréal offset
_MAX_SECONDS = int(datetime(9999, 12, 30, tzinfo=UTC).timestamp())


def self_authorization_problem(grantor_id: str, grantee_id: str) -> str | None:
    return "an organization cannot authorize itself" if grantor_id == grantee_id else None


def management_subject_problem(kind: RelationKind, subjects: Iterable[str]) -> str | None:
    """Rule 2: management is never held through another organization, so an organization-to-organization
    authorization or a delegation cannot carry `relations`."""
    if kind is not RelationKind.CONTACT and MANAGEMENT_SUBJECT in subjects:
        return (
            f"{MANAGEMENT_SUBJECT!r} (managing the organization's relations) cannot be given by one "
            "organization to another, nor delegated"
        )
    return None


def language_problem(value: str) -> str | None:
    """A contact's language; empty means the default (fr)."""
    return None if value in ("", *LANGUAGES) else 'must be "fr" or "en"'


def username_problem(value: str) -> str | None:
    """A legacy login: something on one line, no invisible characters."""
    if not value.strip():
        return "must not be empty"
    return single_line_problem(value, MAX_USERNAME)


def legacy_hash_problem(value: str) -> str | None:
    """A legacy password hash as Django writes it, with a work factor a login can afford."""
    if len(value) > MAX_LEGACY_HASH:
        return f"must be at most {MAX_LEGACY_HASH} characters"
    parts = value.split("$")
    if len(parts) != 4 or parts[0] != "pbkdf2_sha256" or not all(parts[2:]):
        return "is not pbkdf2_sha256$iterations$salt$hash"
    if not parts[1].isascii() or not parts[1].isdigit():
        return "is not pbkdf2_sha256$iterations$salt$hash"
    if len(parts[1]) > 10 or not 1 <= int(parts[1]) <= MAX_LEGACY_ITERATIONS:
        return f"iterations must be between 1 and {MAX_LEGACY_ITERATIONS:,}"
    if any(_invisible(char) or char.isspace() for char in value):
        return "must not contain spaces, control or invisible characters"
    return None


@dataclass
class Violations:
    """Collects every problem of a request, so the caller sees them all at once."""

    items: list[FieldViolation]

    def __init__(self) -> None:
        self.items = []

    def add(self, field_path: str, description: str) -> None:
        self.items.append(FieldViolation(field_path, description))

    def check(self, field_path: str, problem: str | None) -> None:
        if problem is not None:
            self.add(field_path, problem)

    def id(self, field_path: str, value: str, *, required: bool = True) -> str:
        if value or required:
            self.check(field_path, id_problem(value))
        return value

    def text(self, field_path: str, value: str, limit: int) -> str:
        if len(value) > limit:
            self.add(field_path, f"must be at most {limit} characters")
        return value

    def window(
        self, start_text: str, end_text: str, *, today: date, end_of_time: date, earliest: date | None = None
    ) -> tuple[date, date]:
        """Rule 5: a start and an end date, inclusive; `earliest` refuses a start before it."""
        start, end = today, end_of_time
        bad = False
        if start_text:
            try:
                start = parse_date(start_text)
            except ValueError:
                self.add("start_date", "must be a date YYYY-MM-DD")
                bad = True
        if end_text:
            try:
                end = parse_date(end_text)
            except ValueError:
                self.add("end_date", "must be a date YYYY-MM-DD")
                bad = True
        if not bad:
            if end < start:
                self.add("end_date", "must not be before start_date")
            if earliest is not None and start < earliest:
                self.add("start_date", f"must not be before today ({earliest.isoformat()}): history is not rewritten")
        return start, end

    def subjects(
        self, pairs: Iterable[tuple[Any, Any]], catalogue: Mapping[str, Any], field_path: str = "subjects"
    ) -> dict[str, Right]:
        """A list of (subject, right): known subjects, each once, read or write."""
        subjects: dict[str, Right] = {}
        for index, (subject, right) in enumerate(pairs):
            if not isinstance(subject, str) or subject not in catalogue:
                shown = subject[:MAX_SUBJECT] if isinstance(subject, str) else type(subject).__name__
                self.add(f"{field_path}[{index}].subject", f"unknown subject {shown!r}")
                continue
            if subject in subjects:
                self.add(f"{field_path}[{index}].subject", f"{subject!r} is listed twice")
            if not isinstance(right, Right) or right is Right.NONE:
                self.add(f"{field_path}[{index}].right", "must be read or write (RIGHT_READ or RIGHT_WRITE)")
                continue
            subjects[subject] = right
        return subjects

    def reported(self, *field_paths: str) -> bool:
        """Is a problem already recorded on one of these fields? (Then what follows from it is not repeated.)"""
        return any(v.field in field_paths for v in self.items)

    def raise_if_any(self, message: str = "invalid request") -> None:
        raise_if_any(self.items, message)


def raise_if_any(violations: list[FieldViolation], message: str = "invalid request") -> None:
    if violations:
        summary = "; ".join(f"{v.field}: {v.description}" for v in violations[:5])
        more = f" (and {len(violations) - 5} more)" if len(violations) > 5 else ""
        raise InvalidArgument(f"{message}: {summary}{more}", violations)
