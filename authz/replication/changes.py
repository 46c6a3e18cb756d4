"""Applying the store's change log to a decision engine, in order."""

from __future__ import annotations

from collections.abc import Iterable

from authz.engine.index import DecisionEngine
from authz.store.changes import Change

__all__ = ["apply_changes"]


def apply_changes(engine: DecisionEngine, changes: Iterable[Change]) -> bool:
    """Apply changes in order through `DecisionEngine.apply`; False when one asks for a reload
    (a bulk import) or does not follow on from the engine's revision."""
    for change in changes:
        if change.revision <= engine.revision:
            continue
        if change.relations is None or not engine.apply(change.relations, change.revision):
            return False
    return True
