"""Identifiers as they cross the edge: validated once and normalized to NFC.

`Hélène` typed precomposed or decomposed is the same id after this.
"""

from __future__ import annotations

import re
import unicodedata

from authz.errors import FieldViolation

__all__ = ["MAX_ID_LENGTH", "check_id", "id_problem", "is_plain_id", "normalize_id"]

MAX_ID_LENGTH = 128
_ALLOWED_PUNCTUATION = frozenset("-_.:@")
# Nearly every id is plain ASCII: one regex match answers for it (the check path calls this).
_ASCII_ID = re.compile(rf"[A-Za-z0-9_.:@-]{{1,{MAX_ID_LENGTH}}}")
# The fast answer for the check path: a match is an id already valid and in NFC.
is_plain_id = _ASCII_ID.fullmatch


def normalize_id(value: str) -> str:
    return unicodedata.normalize("NFC", value)


def id_problem(value: str) -> str | None:
    """Why `value` (already NFC) is not an acceptable id, or None."""
    if not value:
        return "must not be empty"
    if len(value) > MAX_ID_LENGTH:
        return f"must be at most {MAX_ID_LENGTH} characters"
    for char in value:
        if char.isalnum() or char in _ALLOWED_PUNCTUATION:
            continue
        category = unicodedata.category(char)
        if category.startswith("M"):  # combining marks left after NFC (e.g. no precomposed form)
            continue
        if category.startswith("C"):
            return "must not contain control characters"
        return f"may hold letters, digits and {''.join(sorted(_ALLOWED_PUNCTUATION))} only"
    return None


def check_id(field_path: str, value: str, violations: list[FieldViolation]) -> str:
    """Normalize `value`, recording a violation when it is not an acceptable id."""
    if is_plain_id(value):
        return value
    normalized = normalize_id(value)
    problem = id_problem(normalized)
    if problem is not None:
        violations.append(FieldViolation(field_path, problem))
    return normalized
