"""Revision tokens: what a write returns and `at_least_as_fresh` takes.

A token is "<revision>.<store id>": opaque to callers, parsed only here. The store id is
made once per database (migration 0003), so a token from another store (another
environment, a restored copy under a new id) is refused instead of silently compared.
"""

from __future__ import annotations

import re

from authz.errors import FieldViolation, InvalidArgument

__all__ = ["TokenFormat", "revision_of"]

_TOKEN = re.compile(r"(0|[1-9][0-9]{0,18})\.([0-9a-f]{16})")


def revision_of(token: str) -> int:
    """The revision number inside a well-formed token (for tests and tools; no store check)."""
    found = _TOKEN.fullmatch(token)
    if found is None:
        raise ValueError(f"not a revision token: {token!r}")
    return int(found.group(1))


class TokenFormat:
    """Tokens of one store: made from revisions, parsed back with the store checked."""

    def __init__(self, store_id: str) -> None:
        self.store_id = store_id
        self._last: tuple[int, str] = (-1, "")

    def token(self, revision: int) -> str:
        # Read by every check: the text of the newest revision is kept, made again only when it moves.
        last = self._last
        if last[0] == revision:
            return last[1]
        text = f"{revision}.{self.store_id}"
        self._last = (revision, text)
        return text

    def parse(self, token: str, field_path: str) -> int:
        found = _TOKEN.fullmatch(token)
        if found is None:
            raise InvalidArgument(
                "invalid revision token", [FieldViolation(field_path, "not a revision token this service returned")]
            )
        if found.group(2) != self.store_id:
            raise InvalidArgument(
                "revision token from another store",
                [FieldViolation(field_path, "this token was returned by a service on another store")],
            )
        return int(found.group(1))
