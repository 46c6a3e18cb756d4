"""The plain row in which relations travel from the store to the decision engine."""

from __future__ import annotations

__all__ = ["IndexRow"]

# One relation as the store streams it at start-up (`Store.snapshot`) and the engine indexes it:
# (kind code, relation id, holder, organization, via, role code, start ordinal, end ordinal,
#  removed-at epoch or inf, granted subjects as (subject, right) pairs). Plain values, no domain
# objects: at a million relations, building a `Relation` each costs seconds.
IndexRow = tuple[str, str, str, str, str | None, str | None, int, int, float, tuple[tuple[str, int], ...]]
