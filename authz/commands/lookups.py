"""LookupPrincipals and LookupOrganizations: "who can" and "what can", answered from memory.

The engine's reverse indexes give the candidates (every contact with a relation of any
date on the organization, every organization the contact has one with); `check` decides
each, so a lookup answers exactly the set of CheckAccess answers that would be allowed.

Pages follow the id order. A page token holds the last id given, so the next page starts
after it whatever was written between the pages: an id present in both states is given
exactly once, never skipped, never repeated. Tokens are signed (HMAC-SHA256) and bound to
the query they continue; the key lives in this process (a restarted server refuses the
tokens of its previous life with INVALID_ARGUMENT, asking to start again).

An unknown organization or contact gets an empty answer, not NOT_FOUND: the answer comes
from memory without a store read (it keeps answering while the store is down, as checks
do), and CheckAccess likewise answers "denied" for ids it does not know.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Final

from authz.commands.base import Deps
from authz.commands.paging import page_size
from authz.engine.index import Compiled
from authz.errors import InvalidArgument

__all__ = [
    "LookupExplanation",
    "LookupOrganizations",
    "LookupPrincipals",
    "LookupRequest",
    "LookupResult",
    "PageSigner",
]

_MAC_BYTES: Final = 16
_RESTART = "not a token this server issued (tokens do not outlive a restart): start again without one"


@dataclass(frozen=True, slots=True)
class LookupRequest:
    """One lookup. `anchor_id` is the organization (LookupPrincipals) or the contact (LookupOrganizations)."""

    anchor_id: str
    subject: str
    right: int  # 1 read, 2 write
    at: float | None = None  # epoch seconds; None = now, on every page
    page_size: int = 0
    page_token: str = ""
    explain: bool = False


@dataclass(frozen=True, slots=True)
class LookupExplanation:
    id: str
    reason: str
    path: list[str]


@dataclass(slots=True)
class LookupResult:
    ids: list[str]
    next_page_token: str
    revision: str
    explanations: list[LookupExplanation] = field(default_factory=list)


class PageSigner:
    """Page tokens: the query they continue and the last id given, signed so none is forged."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else secrets.token_bytes(32)

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, query: str, after: str) -> str:
        payload = json.dumps([query, after], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(self._mac(payload) + payload).decode().rstrip("=")

    def decode(self, token: str, query: str) -> str:
        """The last id given, or "" for no token; InvalidArgument for anything else."""
        if not token:
            return ""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise InvalidArgument.field("page_token", _RESTART) from None
        mac, payload = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
        if len(mac) != _MAC_BYTES or not hmac.compare_digest(mac, self._mac(payload)):
            raise InvalidArgument.field("page_token", _RESTART)
        stored_query, after = json.loads(payload)
        if stored_query != query:
            raise InvalidArgument.field("page_token", "was issued for another query")
        return str(after)


class _Lookup(ABC):
    kind: str  # binds tokens to one of the two lookups

    def __init__(self, deps: Deps, signer: PageSigner | None = None) -> None:
        self.deps = deps
        self.signer = signer or PageSigner()

    @abstractmethod
    def _find(
        self, request: LookupRequest, ts: float, after: str, limit: int, compiled: Compiled
    ) -> tuple[list[str], bool]:
        """At most `limit` ids after `after`, in id order, and whether more follow."""

    @abstractmethod
    def _explain(self, request: LookupRequest, found: str, ts: float, compiled: Compiled) -> LookupExplanation:
        """What CheckAccess's explanation says for one id of the answer."""

    def execute(self, request: LookupRequest) -> LookupResult:
        settings = self.deps.settings
        size = page_size(request.page_size, settings.default_page_size, settings.max_page_size)
        at = "" if request.at is None else repr(request.at)
        query = f"{self.kind}\x1f{request.anchor_id}\x1f{request.subject}\x1f{request.right}\x1f{at}"
        after = self.signer.decode(request.page_token, query)
        engine = self.deps.engine
        # Read once, before deciding: the answer reflects at least this revision, under one policy.
        revision, compiled = str(engine.revision), engine.compiled
        ts = request.at if request.at is not None else self.deps.clock().timestamp()
        found, more = self._find(request, ts, after, size, compiled)
        token = self.signer.encode(query, found[-1]) if more and found else ""
        explanations = [self._explain(request, item, ts, compiled) for item in found] if request.explain else []
        return LookupResult(found, token, revision, explanations)


class LookupPrincipals(_Lookup):
    """The contacts for whom CheckAccess would answer allowed, on one organization's subject."""

    kind = "principals"

    def _find(
        self, request: LookupRequest, ts: float, after: str, limit: int, compiled: Compiled
    ) -> tuple[list[str], bool]:
        return self.deps.engine.lookup_principals(
            request.anchor_id, request.subject, request.right, ts, after=after, limit=limit, compiled=compiled
        )

    def _explain(self, request: LookupRequest, found: str, ts: float, compiled: Compiled) -> LookupExplanation:
        decision = self.deps.engine.explain(found, request.anchor_id, request.subject, request.right, ts, compiled)
        return LookupExplanation(found, decision.reason, decision.path)


class LookupOrganizations(_Lookup):
    """The organizations where CheckAccess would allow one contact on a subject."""

    kind = "organizations"

    def _find(
        self, request: LookupRequest, ts: float, after: str, limit: int, compiled: Compiled
    ) -> tuple[list[str], bool]:
        return self.deps.engine.lookup_organizations(
            request.anchor_id, request.subject, request.right, ts, after=after, limit=limit, compiled=compiled
        )

    def _explain(self, request: LookupRequest, found: str, ts: float, compiled: Compiled) -> LookupExplanation:
        decision = self.deps.engine.explain(request.anchor_id, found, request.subject, request.right, ts, compiled)
        return LookupExplanation(found, decision.reason, decision.path)
