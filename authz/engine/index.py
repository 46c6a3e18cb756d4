"""The fast decision engine: a few dictionary look-ups per check, whatever the data size.

Semantics are the Casbin model's (authz/policies/model.conf); the differential test in
tests/unit/test_engine_oracle.py holds this engine to plain pycasbin on generated data.

Every relation in force or not is kept as an `Entry` under the key (holder, organization).
Entries under a key live in a tuple that is replaced, never mutated, so a reader always
sees a whole state without taking a lock. Writers serialize on `_write_lock`.
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from authz.domain.dates import DayClock, local_date
from authz.domain.model import WILDCARD_SUBJECT, Relation, RelationKind, Right, Role
from authz.engine.policy import Policy

__all__ = ["Decision", "DecisionEngine", "Entry"]

_NO_END = math.inf
_EMPTY: tuple[Entry, ...] = ()


class Entry:
    """One relation as the check path needs it: window, role, grants."""

    __slots__ = ("end", "ended", "grants", "holder", "kind", "organization", "relation_id", "role", "start", "via")

    def __init__(self, relation: Relation, grants: Mapping[str, int]) -> None:
        self.relation_id = relation.id
        self.kind = relation.kind
        self.role = relation.role
        self.grants = grants
        self.start = relation.start_date.toordinal()
        self.end = relation.end_date.toordinal()
        self.ended = relation.ended_at.timestamp() if relation.ended_at is not None else _NO_END
        self.via = relation.via_organization_id
        self.holder = relation.holder_id
        self.organization = relation.organization_id

    def in_force(self, day: int, ts: float) -> bool:
        return self.start <= day <= self.end and ts < self.ended


@dataclass(slots=True)
class Decision:
    allowed: bool
    reason: str = ""
    path: list[str] = field(default_factory=list)


class DecisionEngine:
    """Answers checks from memory; kept exact by `apply` after every committed write."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self._defaults = self._compile_defaults(policy)
        self._contacts: dict[tuple[str, str], tuple[Entry, ...]] = {}
        self._organizations: dict[tuple[str, str], tuple[Entry, ...]] = {}
        self._delegations: dict[tuple[str, str], tuple[Entry, ...]] = {}
        # Identical grant maps are shared: most relations carry one of a few subject sets.
        self._grant_maps: dict[tuple[tuple[str, int], ...], Mapping[str, int]] = {}
        self._clock = DayClock()
        self._write_lock = threading.Lock()
        self.revision = 0

    # ------------------------------------------------------------------ policy
    @property
    def policy(self) -> Policy:
        return self._policy

    def set_policy(self, policy: Policy) -> None:
        """Swap the policy in one assignment: checks in flight finish on the old one."""
        self._defaults = self._compile_defaults(policy)
        self._policy = policy

    @staticmethod
    def _compile_defaults(policy: Policy) -> dict[Role | None, Mapping[str, int]]:
        table: dict[Role | None, Mapping[str, int]] = {None: {}}
        for role in Role:
            table[role] = {subject: int(right) for subject, right in policy.role_defaults.get(role, {}).items()}
        return table

    # ------------------------------------------------------------------ writes
    def load(self, relations: Iterable[Relation], revision: int) -> None:
        """Build every index in one pass (start-up)."""
        contacts: dict[tuple[str, str], list[Entry]] = {}
        organizations: dict[tuple[str, str], list[Entry]] = {}
        delegations: dict[tuple[str, str], list[Entry]] = {}
        for relation in relations:
            entry = self._entry(relation)
            target = {RelationKind.CONTACT: contacts, RelationKind.ORGANIZATION: organizations}.get(
                relation.kind, delegations
            )
            target.setdefault((entry.holder, entry.organization), []).append(entry)
        with self._write_lock:
            self._contacts = {key: tuple(entries) for key, entries in contacts.items()}
            self._organizations = {key: tuple(entries) for key, entries in organizations.items()}
            self._delegations = {key: tuple(entries) for key, entries in delegations.items()}
            self.revision = revision

    def apply(self, relations: Iterable[Relation], revision: int) -> None:
        """Reflect committed changes: each relation replaces its previous state."""
        with self._write_lock:
            for relation in relations:
                entry = self._entry(relation)
                index = self._index_for(relation.kind)
                key = (entry.holder, entry.organization)
                kept = tuple(e for e in index.get(key, _EMPTY) if e.relation_id != relation.id)
                index[key] = (*kept, entry)
            if revision > self.revision:
                self.revision = revision

    def _index_for(self, kind: RelationKind) -> dict[tuple[str, str], tuple[Entry, ...]]:
        if kind is RelationKind.CONTACT:
            return self._contacts
        if kind is RelationKind.ORGANIZATION:
            return self._organizations
        return self._delegations

    def _entry(self, relation: Relation) -> Entry:
        items = tuple(sorted((subject, int(right)) for subject, right in relation.subjects.items()))
        grants = self._grant_maps.get(items)
        if grants is None:
            grants = self._grant_maps.setdefault(items, dict(items))
        entry = Entry(relation, grants)
        entry.holder = sys.intern(entry.holder)
        entry.organization = sys.intern(entry.organization)
        if entry.via is not None:
            entry.via = sys.intern(entry.via)
        return entry

    # ------------------------------------------------------------------ checks
    def check(self, contact_id: str, organization_id: str, subject: str, right: int, ts: float) -> bool:
        """The hot path: is `right` (1 read, 2 write) held on `subject` at epoch `ts`?"""
        day = self._clock.ordinal(ts)
        defaults = self._defaults
        key = (contact_id, organization_id)
        for entry in self._contacts.get(key, _EMPTY):
            if (
                entry.start <= day <= entry.end
                and ts < entry.ended
                and (entry.grants.get(subject, 0) >= right or defaults[entry.role].get(subject, 0) >= right)
            ):
                return True
        for entry in self._delegations.get(key, _EMPTY):
            if entry.start <= day <= entry.end and ts < entry.ended:
                grants = entry.grants
                if (
                    max(grants.get(subject, 0), grants.get(WILDCARD_SUBJECT, 0)) >= right
                    and self._is_member(contact_id, entry.via, day, ts)  # type: ignore[arg-type]
                    and self.organization_right(entry.via, organization_id, subject, day, ts) >= right  # type: ignore[arg-type]
                ):
                    return True
        return False

    def _is_member(self, contact_id: str, organization_id: str, day: int, ts: float) -> bool:
        for entry in self._contacts.get((contact_id, organization_id), _EMPTY):
            if entry.start <= day <= entry.end and ts < entry.ended:
                return True
        return False

    def organization_right(self, grantee_id: str, organization_id: str, subject: str, day: int, ts: float) -> int:
        """What an organization holds on a subject of another, at an instant."""
        best = 0
        for entry in self._organizations.get((grantee_id, organization_id), _EMPTY):
            if entry.start <= day <= entry.end and ts < entry.ended:
                level = entry.grants.get(subject, 0)
                if level > best:
                    best = level
        return best

    def day_of(self, ts: float) -> int:
        return self._clock.ordinal(ts)

    # ------------------------------------------------------------------ explain
    def explain(self, contact_id: str, organization_id: str, subject: str, right: int, ts: float) -> Decision:
        """The same decision as `check`, with the reason and the relations behind it."""
        day = self._clock.ordinal(ts)
        wanted = Right(right).code
        considered: list[str] = []
        key = (contact_id, organization_id)
        for entry in self._contacts.get(key, _EMPTY):
            label = self._describe(entry)
            if not entry.in_force(day, ts):
                considered.append(f"{label} (not in force)")
                continue
            granted = entry.grants.get(subject, 0)
            default = self._defaults[entry.role].get(subject, 0)
            if granted >= right:
                return Decision(
                    True, f"{subject} {Right(granted).code} granted on relation {entry.relation_id}", [label]
                )
            if default >= right:
                role = entry.role.value if entry.role else "-"
                return Decision(True, f"role {role} holds {subject} {Right(default).code} by default", [label])
            considered.append(label)
        for entry in self._delegations.get(key, _EMPTY):
            label = self._describe(entry)
            if not entry.in_force(day, ts):
                considered.append(f"{label} (not in force)")
                continue
            via = entry.via or ""
            delegated = max(entry.grants.get(subject, 0), entry.grants.get(WILDCARD_SUBJECT, 0))
            held = self.organization_right(via, organization_id, subject, day, ts)
            member_path = [
                self._describe(e) for e in self._contacts.get((contact_id, via), _EMPTY) if e.in_force(day, ts)
            ]
            org_path = [
                self._describe(e)
                for e in self._organizations.get((via, organization_id), _EMPTY)
                if e.in_force(day, ts)
            ]
            if delegated < right:
                considered.append(
                    f"{label} (delegates {Right(delegated).code if delegated else 'nothing'} on {subject})"
                )
                continue
            if not member_path:
                considered.append(f"{label} (no relation in force with {via})")
                continue
            if held < right:
                considered.append(f"{label} ({via} holds {Right(held).code if held else 'nothing'} on {subject})")
                continue
            return Decision(
                True,
                f"{subject} {wanted} delegated through {via}, which holds {Right(held).code}",
                [label, member_path[0], *org_path[:1]],
            )
        if not considered:
            return Decision(False, f"no relation with {organization_id}", [])
        return Decision(False, f"no relation in force grants {subject} {wanted}", considered)

    def _describe(self, entry: Entry) -> str:
        start = date.fromordinal(entry.start).isoformat()
        end = date.fromordinal(entry.end).isoformat()
        if entry.kind is RelationKind.CONTACT:
            role = entry.role.value if entry.role else "-"
            text = f"relation {entry.relation_id}: {entry.holder} {role} of {entry.organization} ({start}..{end})"
        elif entry.kind is RelationKind.ORGANIZATION:
            text = f"organization relation {entry.relation_id}: {entry.organization} authorizes {entry.holder} ({start}..{end})"
        else:
            text = f"delegation {entry.relation_id}: {entry.holder} on {entry.organization} via {entry.via} ({start}..{end})"
        if entry.ended != _NO_END:
            text += f", removed {datetime.fromtimestamp(entry.ended, UTC).isoformat(timespec='seconds')}"
        return text

    # ------------------------------------------------------------------ listing
    def effective_grants(self, relation: Relation, at: datetime) -> dict[str, Right]:
        """What a relation gives today, subject by subject (ListAuthorizations' rows)."""
        ts = at.timestamp()
        day = local_date(at).toordinal()
        result: dict[str, int] = {}
        if relation.kind is RelationKind.CONTACT:
            for subject, level in self._defaults[relation.role].items():
                result[subject] = max(result.get(subject, 0), level)
            for subject, right in relation.subjects.items():
                result[subject] = max(result.get(subject, 0), int(right))
        elif relation.kind is RelationKind.ORGANIZATION:
            result = {subject: int(right) for subject, right in relation.subjects.items()}
        else:
            via = relation.via_organization_id or ""
            if not self._is_member(relation.holder_id, via, day, ts):
                return {}
            candidates = set(relation.subjects) - {WILDCARD_SUBJECT}
            if WILDCARD_SUBJECT in relation.subjects:
                for entry in self._organizations.get((via, relation.organization_id), _EMPTY):
                    candidates.update(entry.grants)
            for subject in candidates:
                delegated = max(int(relation.subjects.get(subject, 0)), int(relation.subjects.get(WILDCARD_SUBJECT, 0)))
                level = min(delegated, self.organization_right(via, relation.organization_id, subject, day, ts))
                if level:
                    result[subject] = level
        return {subject: Right(level) for subject, level in result.items() if level}

    def stats(self) -> dict[str, int]:
        return {
            "contact_relations": sum(len(v) for v in self._contacts.values()),
            "organization_relations": sum(len(v) for v in self._organizations.values()),
            "delegations": sum(len(v) for v in self._delegations.values()),
        }
