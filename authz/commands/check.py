"""CheckAccess and BatchCheckAccess: answered from memory by the engine, never the store.

Two ways in. `plain` is the hot path: a well-formed check without `explain`, straight to the
engine, no object built and nothing logged; it answers None for anything it does not take
(a field to report, an explanation, a fault), and the caller then builds a `CheckRequest`
for `execute`, which explains and fails closed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from authz.domain.validation import is_plain_id
from authz.engine.index import Compiled, DecisionEngine

__all__ = ["INSTANT_RANGE", "CheckAccess", "CheckRequest", "CheckResult"]

log = logging.getLogger("authz.check")

# Epoch seconds a check may be asked at: years 0001 to 9999, with a day of margin for the zone.
INSTANT_RANGE = (-62135510400.0, 253402128000.0)
_RIGHTS = (1, 2)  # read, write
_FAILED = "decision failed; denied"


@dataclass(frozen=True, slots=True)
class CheckRequest:
    principal_id: str
    organization_id: str
    subject: str
    right: int
    at: float  # epoch seconds
    explain: bool = False


@dataclass(slots=True)
class CheckResult:
    allowed: bool
    reason: str = ""
    path: list[str] = field(default_factory=list)
    revision: str = ""
    policy_hash: str = ""  # the policy folder's content hash the decision was made under


class CheckAccess:
    def __init__(self, engine: DecisionEngine, token: Callable[[int], str] = str) -> None:
        self.engine = engine
        self.token = token  # a revision as the revision token answers carry

    def plain(
        self, principal_id: str, organization_id: str, subject: str, right: int, at: float, compiled: Compiled
    ) -> bool | None:
        """The hot path, or None when the check needs the general one (`execute`).

        `compiled`: the policy the caller reports the answer under, read once by the caller.
        """
        if (
            right not in _RIGHTS
            or subject not in compiled.policy.subjects
            or is_plain_id(principal_id) is None
            or is_plain_id(organization_id) is None
            or not INSTANT_RANGE[0] <= at <= INSTANT_RANGE[1]
        ):
            return None
        try:
            return self.engine.check(principal_id, organization_id, subject, right, at, compiled)
        except Exception:  # the general path logs it and denies
            return None

    def execute_many(self, requests: list[CheckRequest]) -> list[CheckResult]:
        """A batch, in order; a fault logs one traceback for the whole batch, however many items it hits."""
        faults = 0
        results = []
        for request in requests:
            result = self.execute(request, log_fault=faults == 0)
            faults += result.reason == _FAILED
            results.append(result)
        if faults > 1:
            log.error("%d more decisions of the same batch failed; denied", faults - 1)
        return results

    def execute(self, request: CheckRequest, *, log_fault: bool = True) -> CheckResult:
        engine = self.engine
        revision = self.token(engine.revision)
        # Read once, before deciding, and decided under: a reload swapping the policy meanwhile
        # changes neither the defaults this check uses nor the hash it reports.
        compiled = engine.compiled
        policy_hash = compiled.policy.content_hash
        if request.subject in compiled.policy.retired:
            # Retired in the policy folder: held by no one, whatever grants the store keeps as history.
            return CheckResult(False, f"subject {request.subject!r} is retired", [], revision, policy_hash)
        try:
            if request.explain:
                decision = engine.explain(
                    request.principal_id, request.organization_id, request.subject, request.right, request.at, compiled
                )
                return CheckResult(decision.allowed, decision.reason, decision.path, revision, policy_hash)
            allowed = engine.check(
                request.principal_id, request.organization_id, request.subject, request.right, request.at, compiled
            )
            return CheckResult(allowed, revision=revision, policy_hash=policy_hash)
        except Exception:
            # Fail closed: a fault inside a decision denies, and is logged once per call, never allows.
            if log_fault:
                log.exception("decision failed; denying")
            return CheckResult(False, _FAILED, [], revision, policy_hash)
