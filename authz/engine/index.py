"""The fast decision engine: a few dictionary look-ups per check, whatever the data size.

Semantics are the Casbin model's (authz/policies/model.conf); the differential test in
tests/unit/test_engine_oracle.py holds this engine to plain pycasbin on generated data.

Every relation, in force or not, is kept as one plain tuple (an `Entry`) under the key
"holder\x1forganization": a contact's relations and delegations in one map, the
organization-to-organization authorizations in another. Why this shape: at a million
relations each check is a handful of CPU cache misses, and every object touched is one
more; a single string key is one object to compare (a tuple key is three), one map
answers both direct and delegated rights, and a key holding a single relation (nearly
all) stores the entry itself rather than a tuple of one. It is also what makes a
million relations fit in a few hundred megabytes: an entry is 7 references, its dates
are shared int objects and its grants a shared map.

What a key holds is replaced, never mutated, so a reader always sees a whole state
without taking a lock. Writers serialize on `_write_lock`.
"""

from __future__ import annotations

import gc
import math
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Final, cast

from authz.domain.dates import DayClock, local_date
from authz.domain.model import WILDCARD_SUBJECT, Relation, RelationKind, Right, Role
from authz.engine.policy import Policy

__all__ = ["Decision", "DecisionEngine", "Entry", "IndexRow", "index_row"]

_NO_END: Final = math.inf

# One relation as the check path needs it:
# (start ordinal, end ordinal, removed-at epoch or inf, grants, role code or None, via, relation id)
Entry = tuple[int, int, float, Mapping[str, int], str | None, str | None, str]
_START: Final = 0
_END: Final = 1
_ENDED: Final = 2
_GRANTS: Final = 3
_ROLE: Final = 4
_VIA: Final = 5
_ID: Final = 6
_EMPTY: tuple[Entry, ...] = ()
# What a key holds: the entry itself when it is alone, else a tuple of entries.
Slot = Entry | tuple[Entry, ...]
# Ids never hold control characters (authz.domain.ids refuses them): a safe separator.
_SEP: Final = "\x1f"

# One relation as the store streams it at start-up (SqlStore.load_index_rows):
# (kind code, relation id, holder, organization, via, role code, start ordinal, end ordinal,
#  removed-at epoch or inf, granted subjects as (subject, right) pairs)
IndexRow = tuple[str, str, str, str, str | None, str | None, int, int, float, tuple[tuple[str, int], ...]]

_CONTACT: Final = RelationKind.CONTACT.value
# Management of an organization's relations is never held through another organization
# (DOMAIN.md rule 2): delegated paths never give it, whatever they carry.
_MANAGEMENT: Final = "relations"
_ORGANIZATION: Final = RelationKind.ORGANIZATION.value


def index_row(relation: Relation) -> IndexRow:
    """A domain relation in the shape `load_rows` takes."""
    return (
        relation.kind.value,
        relation.id,
        relation.holder_id,
        relation.organization_id,
        relation.via_organization_id,
        relation.role.value if relation.role is not None else None,
        relation.start_date.toordinal(),
        relation.end_date.toordinal(),
        relation.ended_at.timestamp() if relation.ended_at is not None else _NO_END,
        tuple((subject, int(right)) for subject, right in relation.subjects.items()),
    )


def _in_force(entry: Entry, day: int, ts: float) -> bool:
    return entry[_START] <= day <= entry[_END] and ts < entry[_ENDED]


def _entries(slot: Slot | None) -> tuple[Entry, ...]:
    """What a key holds, always as a tuple of entries."""
    if slot is None:
        return _EMPTY
    if type(slot[0]) is int:  # an entry starts with its start day; a tuple of entries with an entry
        return (slot,)
    return cast(tuple[Entry, ...], slot)


def _slot(entries: tuple[Entry, ...]) -> Slot:
    return entries[0] if len(entries) == 1 else entries


@dataclass(slots=True)
class Decision:
    allowed: bool
    reason: str = ""
    path: list[str] = field(default_factory=list)


Index = dict[str, Slot]


class DecisionEngine:
    """Answers checks from memory; kept exact by `apply` after every committed write."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self._defaults = self._compile_defaults(policy)
        self._people: Index = {}  # contact relations and delegations, by contact and organization
        self._organizations: Index = {}  # organization-to-organization, by grantee and grantor
        # Identical grant maps are shared: most relations carry one of a few subject sets.
        self._grant_maps: dict[tuple[tuple[str, int], ...], Mapping[str, int]] = {}
        # Day ordinals above 256 are separate int objects: one per distinct day, not per entry.
        self._days: dict[int, int] = {}
        self._clock = DayClock()
        self._write_lock = threading.Lock()
        self.revision = 0

    # ------------------------------------------------------------------ policy
    @property
    def policy(self) -> Policy:
        return self._policy

    def set_policy(self, policy: Policy) -> None:
        """Swap the policy: defaults first, then the policy whose hash answers carry.

        Two assignments, so a check landing between them is decided under the new
        defaults while reporting the old hash; each check still sees one whole table.
        """
        self._defaults = self._compile_defaults(policy)
        self._policy = policy

    @staticmethod
    def _compile_defaults(policy: Policy) -> dict[str | None, Mapping[str, int]]:
        table: dict[str | None, Mapping[str, int]] = {None: {}}
        for role in Role:
            table[role.value] = {subject: int(right) for subject, right in policy.role_defaults.get(role, {}).items()}
        return table

    # ------------------------------------------------------------------ writes
    def load(self, relations: Iterable[Relation], revision: int) -> None:
        """Build every index in one pass (start-up)."""
        self.load_rows((index_row(relation) for relation in relations), revision)

    def load_rows(self, rows: Iterable[IndexRow], revision: int) -> None:
        """Build every index in one pass from rows as the store streams them."""
        people: Index = {}
        organizations: Index = {}
        # Millions of new tuples would trigger hundreds of cyclic collections, each scanning
        # what was built so far (12 s instead of 7 s at 1M); entries hold no cycles.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._build(rows, people, organizations)
        finally:
            if collecting:
                gc.enable()
        # What start-up built lives as long as the process: move it out of the collector's
        # sight, or every full collection walks the million entries (0.8 s, a p99 spike).
        gc.freeze()
        with self._write_lock:
            self._people = people
            self._organizations = organizations
            self.revision = revision

    def _build(self, rows: Iterable[IndexRow], people: Index, organizations: Index) -> None:
        # This loop runs a million times at start-up: _entry() is inlined, and the strings
        # many entries repeat (roles, ids of the organizations delegations come through)
        # are deduplicated by a local dict: the driver returns a new string for every row.
        grant_maps = self._grant_maps
        day = self._days.setdefault
        names: dict[str, str] = {}
        name = names.setdefault
        organization_kind = RelationKind.ORGANIZATION.value
        for kind, relation_id, holder, organization, via, role, start, end, ended, subjects in rows:
            grants = grant_maps.get(subjects)
            if grants is None:
                grants = grant_maps.setdefault(tuple(sorted(subjects)), dict(subjects))
                grant_maps[subjects] = grants
            entry: Entry = (
                day(start, start),
                day(end, end),
                ended,
                grants,
                name(role, role) if role is not None else None,
                name(via, via) if via is not None else None,
                relation_id,
            )
            target = organizations if kind == organization_kind else people
            key = holder + _SEP + organization
            found = target.get(key)
            if found is None:
                target[key] = entry
            else:
                target[key] = (*_entries(found), entry)

    def apply(self, relations: Iterable[Relation], revision: int) -> bool:
        """Reflect one committed revision: each relation replaces its previous state.

        The single entry point of every change, from the write that made it and from the
        follower of the change log alike (both may bring the same revision). Revisions are
        taken once and in order: one at or below the engine's is already there (True); one
        beyond the next is not applied (False: the caller catches up from the log first).

        Atomic for readers: the new slots are computed aside, then each map takes them in one
        `dict.update`, a single C call during which no other Python thread runs. (A revision
        touching both maps is two such steps; no write today touches both.)
        """
        with self._write_lock:
            if revision <= self.revision:
                return True
            if revision != self.revision + 1:
                return False
            people: Index = {}
            organizations: Index = {}
            for relation in relations:
                row = index_row(relation)
                if relation.kind is RelationKind.ORGANIZATION:
                    index, pending = self._organizations, organizations
                else:
                    index, pending = self._people, people
                key = row[2] + _SEP + row[3]
                current = pending[key] if key in pending else index.get(key)
                kept = tuple(e for e in _entries(current) if e[_ID] != relation.id)
                pending[key] = _slot((*kept, self._entry(row)))
            if organizations:
                self._organizations.update(organizations)
            if people:
                self._people.update(people)
            self.revision = revision
            return True

    def _entry(self, row: IndexRow) -> Entry:
        subjects = row[9]
        grants = self._grant_maps.get(subjects)
        if grants is None:
            grants = self._grant_maps.setdefault(tuple(sorted(subjects)), dict(subjects))
            self._grant_maps.setdefault(subjects, grants)
        days = self._days
        start = days.setdefault(row[6], row[6])
        end = days.setdefault(row[7], row[7])
        via = row[4]
        return (start, end, row[8], grants, row[5], sys.intern(via) if via is not None else None, row[1])

    # ------------------------------------------------------------------ checks
    def check(self, contact_id: str, organization_id: str, subject: str, right: int, ts: float) -> bool:
        """The hot path: is `right` (1 read, 2 write) held on `subject` at epoch `ts`?"""
        day = self._clock.ordinal(ts)
        found = self._people.get(contact_id + _SEP + organization_id)
        if found is None:
            return False
        # _entries() inlined: one call less on the hot path.
        entries: tuple[Entry, ...] = (found,) if type(found[0]) is int else found  # type: ignore[assignment]
        for entry in entries:
            if entry[0] <= day <= entry[1] and ts < entry[2]:
                if entry[5] is None:
                    if entry[3].get(subject, 0) >= right or self._defaults[entry[4]].get(subject, 0) >= right:
                        return True
                elif self._delegated(contact_id, organization_id, subject, right, day, ts, entry):
                    return True
        return False

    def _delegated(
        self, contact_id: str, organization_id: str, subject: str, right: int, day: int, ts: float, entry: Entry
    ) -> bool:
        """A delegation in force: the lesser of what it gives and what the organization it
        comes through holds now, and only while the contact is in force there."""
        grants = entry[_GRANTS]
        via = entry[_VIA]
        return (
            via is not None
            and subject != _MANAGEMENT
            and max(grants.get(subject, 0), grants.get(WILDCARD_SUBJECT, 0)) >= right
            and self._is_member(contact_id, via, day, ts)
            and self.organization_right(via, organization_id, subject, day, ts) >= right
        )

    def _is_member(self, contact_id: str, organization_id: str, day: int, ts: float) -> bool:
        for entry in _entries(self._people.get(contact_id + _SEP + organization_id)):
            if entry[_VIA] is None and entry[0] <= day <= entry[1] and ts < entry[2]:
                return True
        return False

    def organization_right(self, grantee_id: str, organization_id: str, subject: str, day: int, ts: float) -> int:
        """What an organization holds on a subject of another, at an instant."""
        best = 0
        for entry in _entries(self._organizations.get(grantee_id + _SEP + organization_id)):
            if entry[0] <= day <= entry[1] and ts < entry[2]:
                level = entry[3].get(subject, 0)
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
        mine = _entries(self._people.get(contact_id + _SEP + organization_id))
        for entry in (e for e in mine if e[_VIA] is None):
            label = self._describe(RelationKind.CONTACT, key, entry)
            if not _in_force(entry, day, ts):
                considered.append(f"{label} (not in force)")
                continue
            granted = entry[_GRANTS].get(subject, 0)
            default = self._defaults[entry[_ROLE]].get(subject, 0)
            if granted >= right:
                return Decision(True, f"{subject} {Right(granted).code} granted on relation {entry[_ID]}", [label])
            if default >= right:
                role = entry[_ROLE] or "-"
                return Decision(True, f"role {role} holds {subject} {Right(default).code} by default", [label])
            considered.append(label)
        for entry in (e for e in mine if e[_VIA] is not None):
            label = self._describe(RelationKind.DELEGATION, key, entry)
            if not _in_force(entry, day, ts):
                considered.append(f"{label} (not in force)")
                continue
            if subject == _MANAGEMENT:
                considered.append(f"{label} (management is never held through another organization)")
                continue
            via = entry[_VIA] or ""
            grants = entry[_GRANTS]
            delegated = max(grants.get(subject, 0), grants.get(WILDCARD_SUBJECT, 0))
            held = self.organization_right(via, organization_id, subject, day, ts)
            member_key = (contact_id, via)
            member_path = [
                self._describe(RelationKind.CONTACT, member_key, e)
                for e in _entries(self._people.get(contact_id + _SEP + via))
                if e[_VIA] is None and _in_force(e, day, ts)
            ]
            org_key = (via, organization_id)
            org_path = [
                self._describe(RelationKind.ORGANIZATION, org_key, e)
                for e in _entries(self._organizations.get(via + _SEP + organization_id))
                if _in_force(e, day, ts)
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

    @staticmethod
    def _describe(kind: RelationKind, key: tuple[str, str], entry: Entry) -> str:
        holder, organization = key
        start = date.fromordinal(entry[_START]).isoformat()
        end = date.fromordinal(entry[_END]).isoformat()
        relation_id = entry[_ID]
        if kind is RelationKind.CONTACT:
            text = f"relation {relation_id}: {holder} {entry[_ROLE] or '-'} of {organization} ({start}..{end})"
        elif kind is RelationKind.ORGANIZATION:
            text = f"organization relation {relation_id}: {organization} authorizes {holder} ({start}..{end})"
        else:
            text = f"delegation {relation_id}: {holder} on {organization} via {entry[_VIA]} ({start}..{end})"
        if entry[_ENDED] != _NO_END:
            text += f", removed {datetime.fromtimestamp(entry[_ENDED], UTC).isoformat(timespec='seconds')}"
        return text

    # ------------------------------------------------------------------ listing
    def effective_grants(self, relation: Relation, at: datetime) -> dict[str, Right]:
        """What a relation gives today, subject by subject (ListAuthorizations' rows)."""
        ts = at.timestamp()
        day = local_date(at).toordinal()
        result: dict[str, int] = {}
        if relation.kind is RelationKind.CONTACT:
            role = relation.role.value if relation.role is not None else None
            for subject, level in self._defaults[role].items():
                result[subject] = max(result.get(subject, 0), level)
            for subject, right in relation.subjects.items():
                result[subject] = max(result.get(subject, 0), int(right))
        elif relation.kind is RelationKind.ORGANIZATION:
            # `relations` between organizations gives nothing (data from before the rule, or imported).
            result = {subject: int(right) for subject, right in relation.subjects.items() if subject != _MANAGEMENT}
        else:
            via = relation.via_organization_id or ""
            if not self._is_member(relation.holder_id, via, day, ts):
                return {}
            candidates = set(relation.subjects) - {WILDCARD_SUBJECT, _MANAGEMENT}
            if WILDCARD_SUBJECT in relation.subjects:
                for entry in _entries(self._organizations.get(via + _SEP + relation.organization_id)):
                    candidates.update(entry[_GRANTS])
                candidates.discard(_MANAGEMENT)
            for subject in candidates:
                delegated = max(int(relation.subjects.get(subject, 0)), int(relation.subjects.get(WILDCARD_SUBJECT, 0)))
                level = min(delegated, self.organization_right(via, relation.organization_id, subject, day, ts))
                if level:
                    result[subject] = level
        return {subject: Right(level) for subject, level in result.items() if level}

    def stats(self) -> dict[str, int]:
        return {
            "contact_relations": sum(e[_VIA] is None for slot in self._people.values() for e in _entries(slot)),
            "organization_relations": sum(len(_entries(slot)) for slot in self._organizations.values()),
            "delegations": sum(e[_VIA] is not None for slot in self._people.values() for e in _entries(slot)),
        }
