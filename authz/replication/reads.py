"""Consistency chosen per read: minimize_latency, at_least_as_fresh, fully_consistent."""

from __future__ import annotations

from dataclasses import dataclass

from authz.engine.index import DecisionEngine
from authz.replication.follower import Follower

__all__ = ["Freshness", "ReadConsistency"]


@dataclass(frozen=True, slots=True)
class ReadConsistency:
    """What a read asks for: a revision it must see (`at_least`), or the store's newest (`fully`).

    Neither: minimize_latency, answered from memory now.
    """

    at_least: int | None = None
    fully: bool = False
    field_path: str = "consistency"


class Freshness:
    """Makes this process's engine fresh enough for a read, or refuses to answer.

    Already fresh (the usual case with a token: the follower applies a write within
    milliseconds): one integer comparison. Behind: one catch-up pass (a range read of the
    log) within the caller's deadline, else UNAVAILABLE; never an answer from older state.
    """

    def __init__(self, engine: DecisionEngine, follower: Follower) -> None:
        self.engine = engine
        self.follower = follower

    def ensure(self, requirement: ReadConsistency, timeout: float | None) -> None:
        if requirement.fully:
            self.follower.catch_up(None, timeout, requirement.field_path)
        elif requirement.at_least is not None and self.engine.revision < requirement.at_least:
            self.follower.catch_up(requirement.at_least, timeout, requirement.field_path)
