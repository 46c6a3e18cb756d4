"""Opaque page tokens, bound to the query they continue."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from authz.errors import InvalidArgument

__all__ = ["PageCursor", "decode_token", "encode_token", "page_size"]


@dataclass(frozen=True)
class PageCursor:
    query: str  # what the token was made for: the organization and filter
    after: str  # the relation the next row is in
    offset: int = 0  # rows of `after` already returned
    group: int = 0  # which group of relation kinds the listing is in


def encode_token(cursor: PageCursor) -> str:
    raw = json.dumps([cursor.query, cursor.after, cursor.offset, cursor.group], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, query: str) -> PageCursor | None:
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        stored_query, after, offset, group = json.loads(raw)
        cursor = PageCursor(str(stored_query), str(after), int(offset), int(group))
    except (binascii.Error, ValueError, TypeError):
        raise InvalidArgument.field("page_token", "not a token this service issued") from None
    if cursor.query != query or cursor.offset < 0 or cursor.group < 0:
        raise InvalidArgument.field("page_token", "was issued for another query")
    return cursor


def page_size(requested: int, default: int, maximum: int, field_path: str = "page_size") -> int:
    if requested < 0:
        raise InvalidArgument.field(field_path, "must not be negative")
    if requested > maximum:
        raise InvalidArgument.field(field_path, f"must be at most {maximum}")
    return requested or default
