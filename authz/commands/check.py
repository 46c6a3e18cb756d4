"""CheckAccess and BatchCheckAccess: answered from memory by the engine, never the store."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from authz.engine.index import DecisionEngine

__all__ = ["CheckAccess", "CheckRequest", "CheckResult"]

log = logging.getLogger("authz.check")


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
    def __init__(self, engine: DecisionEngine) -> None:
        self.engine = engine

    def execute(self, request: CheckRequest) -> CheckResult:
        engine = self.engine
        revision = str(engine.revision)
        # Read once, before deciding: a reload swapping the policy meanwhile does not change
        # which policy this check is reported under.
        policy = engine.policy
        policy_hash = policy.content_hash
        if request.subject in policy.retired:
            # Retired in the policy folder: held by no one, whatever grants the store keeps as history.
            return CheckResult(False, f"subject {request.subject!r} is retired", [], revision, policy_hash)
        try:
            if request.explain:
                decision = engine.explain(
                    request.principal_id, request.organization_id, request.subject, request.right, request.at
                )
                return CheckResult(decision.allowed, decision.reason, decision.path, revision, policy_hash)
            allowed = engine.check(
                request.principal_id, request.organization_id, request.subject, request.right, request.at
            )
            return CheckResult(allowed, revision=revision, policy_hash=policy_hash)
        except Exception:
            # Fail closed: a fault inside a decision denies, and is logged, never allows.
            log.exception("decision failed; denying")
            return CheckResult(False, "decision failed; denied", [], revision, policy_hash)
