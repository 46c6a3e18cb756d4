"""docs/ERRORS.md lists every reason the service can send, and only those."""

from __future__ import annotations

import re
from pathlib import Path

import grpc

from authz import errors
from authz.server.errors import STATUS_OF

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| `([A-Z_]+)` \| ([A-Z_ ]+?(?: or [A-Z_]+)?) \|", re.MULTILINE)
RAISED = re.compile(r'reason="([A-Z_]+)"')
# A reason kept in a module constant named after it (`X = "X"`), raised as `reason=X`.
NAMED = re.compile(r'^([A-Z][A-Z_]+) = "\1"$', re.MULTILINE)


def table() -> dict[str, str]:
    return {reason: status for reason, status in ROW.findall((ROOT / "docs" / "ERRORS.md").read_text(encoding="utf-8"))}


def raised_reasons() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "authz").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        found.update(RAISED.findall(text))
        found.update(name for name in NAMED.findall(text) if f"reason={name}" in text)
    return found


def default_reasons() -> dict[str, str]:
    """Each error class's default reason, with the status it is sent with."""
    kinds = [errors.AuthzError, *STATUS_OF]
    return {
        kind.default_reason: STATUS_OF.get(kind, grpc.StatusCode.INTERNAL).name
        for kind in kinds
    }


def test_every_reason_raised_is_in_the_table() -> None:
    missing = raised_reasons() - set(table())
    assert not missing, f"reasons raised in authz/ but not listed in docs/ERRORS.md: {sorted(missing)}"


def test_every_default_reason_is_in_the_table_with_its_status() -> None:
    rows = table()
    for reason, status in default_reasons().items():
        assert reason in rows, reason
        assert status in rows[reason], (reason, rows[reason])


def test_the_table_lists_nothing_that_is_never_sent() -> None:
    stale = set(table()) - raised_reasons() - set(default_reasons())
    assert not stale, f"docs/ERRORS.md lists reasons nothing raises: {sorted(stale)}"


def test_reasons_are_upper_snake_case() -> None:
    assert all(re.fullmatch(r"[A-Z]+(?:_[A-Z]+)*", reason) for reason in table())
