"""LookupPrincipals and LookupOrganizations: "who can" and "what can", answered from memory.

The engine's reverse indexes give the candidates (every contact with a relation of any
date on the organization, every organization the contact has one with); `check` decides
each, so a lookup answers exactly the set of CheckAccess answers that would be allowed.

Pages follow the id order. A page token holds the last id given, so the next page starts
after it whatever was written between the pages: an id present in both states is given
exactly once, never skipped, never repeated. Tokens are signed (HMAC-SHA256) with the
deployment's page-token key, as the List* tokens are (authz/commands/paging.py), and bound
to the query they continue: a token is good on any process or server of the deployment.

An unknown organization or contact gets an empty answer, not NOT_FOUND: the answer comes
from memory without a store read (it keeps answering while the store is down, as checks
do), and CheckAccess likewise answers "denied" for ids it does not know.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from authz.commands.base import Deps
from authz.commands.paging import PageCursor, decode_token, encode_token, page_size, page_token_key
from authz.engine.index import Compiled

__all__ = [
    "LookupExplanation",
    "LookupOrganizations",
    "LookupPrincipals",
    "LookupRequest",
    "LookupResult",
]


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


class _Lookup(ABC):
    kind: str  # binds tokens to one of the two lookups

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

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
        # Signed with the deployment's page-token key (authz/commands/paging.py), as the List* tokens are:
        # a token stays valid across restarts, processes and servers of one deployment.
        key = page_token_key(self.deps)
        cursor = decode_token(request.page_token, query, key)
        after = cursor.after if cursor is not None else ""
        engine = self.deps.engine
        # Read once, before deciding: the answer reflects at least this revision, under one policy.
        revision, compiled = str(engine.revision), engine.compiled
        ts = request.at if request.at is not None else self.deps.clock().timestamp()
        found, more = self._find(request, ts, after, size, compiled)
        token = encode_token(PageCursor(query, found[-1]), key) if more and found else ""
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
