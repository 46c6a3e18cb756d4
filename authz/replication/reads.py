"""Consistency chosen per read: minimize_latency, at_least_as_fresh, fully_consistent."""

from __future__ import annotations

from dataclasses import dataclass

from authz.engine.index import DecisionEngine
from authz.replication.follower import Follower

__all__ = ["Freshness", "ReadConsistency", "freshest"]


@dataclass(frozen=True, slots=True)
class ReadConsistency:
    """What a read asks for: a revision it must see (`at_least`), or the store's newest (`fully`).

    Neither: minimize_latency, answered from memory now.
    """

    at_least: int | None = None
    fully: bool = False
    field_path: str = "consistency"


def freshest(requirements: list[ReadConsistency]) -> ReadConsistency:
    """One requirement that satisfies them all: the store's newest if any asks for it, else the
    highest revision asked for (a batch catches up once, to what its freshest item needs)."""
    fully = [r for r in requirements if r.fully]
    if fully:
        return fully[0]
    tokens = [r for r in requirements if r.at_least is not None]
    if not tokens:
        return ReadConsistency()
    return max(tokens, key=lambda r: r.at_least or 0)


class Freshness:
    """Makes this process's engine fresh enough for a read, or refuses to answer.

    Already fresh (the usual case with a token: the follower applies a write within
    milliseconds): one integer comparison. Behind: one catch-up pass (a range read of the
    log) within the caller's deadline, else UNAVAILABLE; never an answer from older state.
    """

    def __init__(self, engine: DecisionEngine, follower: Follower) -> None:
        self.engine = engine
        self.follower = follower

    def ensure(self, requirement: ReadConsistency, timeout: float) -> None:
        """`timeout`: how long this read may wait to catch up (bounded: see `calls.bounded_wait`)."""
        if requirement.fully:
            self.follower.catch_up(None, timeout, requirement.field_path)
        elif requirement.at_least is not None and self.engine.revision < requirement.at_least:
            self.follower.catch_up(requirement.at_least, timeout, requirement.field_path)

    def ensure_all(self, requirements: list[ReadConsistency], timeout: float) -> None:
        """Several requirements (a batch and its items), met by one catch-up to the freshest.

        A token beyond the store's newest revision is still refused, with its own field path,
        when the freshest requirement was `fully_consistent` (that pass stops at the newest).
        """
        self.ensure(freshest(requirements), timeout)
        highest = freshest([r for r in requirements if not r.fully])
        if highest.at_least is not None and self.engine.revision < highest.at_least:
            self.ensure(highest, timeout)
