"""Opaque page tokens, bound to the query they continue and signed by the server.

A token is base64 JSON (the query, the relation to resume at, the rank in it, the group)
followed by an HMAC-SHA256 of it under the page-token key. A token the server did not
issue, or issued for another query (another organization, contact or filter), is refused
before anything is read: a caller cannot forge one to resume in an organization it may
not read.

The key: `AUTHZ_PAGE_TOKEN_KEY` when set; otherwise a random key kept in the database
(`server_secrets`, created by the first server that lists), so that every server of one
deployment, behind one balancer, accepts the tokens of the others. Changing the key
invalidates the tokens in flight (a caller starts its listing again).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from authz.errors import InvalidArgument

if TYPE_CHECKING:
    from authz.commands.base import Deps

__all__ = ["PageCursor", "decode_token", "encode_token", "page_size", "page_token_key"]

_KEY_NAME = "page_token"
_MAC_BYTES = 16  # 128 bits of HMAC-SHA256: forging one is out of reach, tokens stay short


@dataclass(frozen=True)
class PageCursor:
    query: str  # what the token was made for: the organization and filter
    after: str  # the relation the next row is in
    offset: int = 0  # rows of `after` already returned
    group: int = 0  # which group of relation kinds the listing is in


def page_token_key(deps: Deps) -> bytes:
    """The key page tokens are signed with (see the module's docstring)."""
    configured = deps.settings.page_token_key
    if configured:
        return configured.encode()
    return deps.store.server_secret(_KEY_NAME)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, b"authz page token\x00" + payload, hashlib.sha256).digest()[:_MAC_BYTES]


def encode_token(cursor: PageCursor, key: bytes) -> str:
    raw = json.dumps([cursor.query, cursor.after, cursor.offset, cursor.group], separators=(",", ":")).encode()
    return f"{_b64(raw)}.{_b64(_mac(key, raw))}"


def decode_token(token: str, query: str, key: bytes) -> PageCursor | None:
    if not token:
        return None
    not_ours = InvalidArgument.field("page_token", "not a token this service issued")
    payload, dot, signature = token.partition(".")
    try:
        raw, mac = _unb64(payload), _unb64(signature)
    except (binascii.Error, ValueError):
        raise not_ours from None
    # Checked before the payload is even parsed: nothing a caller writes is read unless we signed it.
    if not dot or not hmac.compare_digest(mac, _mac(key, raw)):
        raise not_ours
    try:
        stored_query, after, offset, group = json.loads(raw)
        cursor = PageCursor(str(stored_query), str(after), int(offset), int(group))
    except (ValueError, TypeError):
        raise not_ours from None
    if cursor.query != query or cursor.offset < 0 or cursor.group < 0:
        raise InvalidArgument.field("page_token", "was issued for another query")
    return cursor


def page_size(requested: int, default: int, maximum: int, field_path: str = "page_size") -> int:
    if requested < 0:
        raise InvalidArgument.field(field_path, "must not be negative")
    if requested > maximum:
        raise InvalidArgument.field(field_path, f"must be at most {maximum}")
    return requested or default
