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

What one relation gives is written once, plainly, in `_grant_level` (the reference
evaluation, with the delegation rule in `_delegation_level`): `explain`, `level` and
`effective_grants` are derived from it, and `check` is its optimized form, held to it by
the differential and property tests.

Lookups ("who can", "what can") use two reverse indexes over the same keys, built in the
same start-up pass and kept by the same `apply`: the contacts holding anything on an
organization, the organizations a contact holds anything on, each sorted by id (the page
order). They give candidates; `check` decides each, so a lookup is exactly the set of
checks that would be allowed.

What a key holds is replaced, never mutated, so a reader always sees a whole state
without taking a lock. Writers serialize on `_write_lock`. The policy and its compiled
role defaults are one `Compiled` object, swapped in one assignment.
"""

from __future__ import annotations

import bisect
import gc
import heapq
import math
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Final, cast

from authz.domain.dates import DayClock, local_date
from authz.domain.index_rows import IndexRow
from authz.domain.model import MANAGEMENT_SUBJECT, WILDCARD_SUBJECT, Relation, RelationKind, Right, Role
from authz.engine.policy import Policy

__all__ = ["SCAN_LIMIT", "Compiled", "Decision", "DecisionEngine", "Entry", "IndexRow", "index_row", "relation_entry"]

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


_CONTACT: Final = RelationKind.CONTACT.value
# Management of an organization's relations is never held through another organization
# (docs/DOMAIN.md, rule 2): delegated paths never give it, whatever they carry.
_MANAGEMENT: Final = MANAGEMENT_SUBJECT
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
# Lookups' reverse indexes: by organization, and by contact, the keys of `_people` ("contact
# \x1f organization") that name it, sorted. They hold the key strings the check index already
# holds, so they add references, not strings; and since the separator sorts below every
# character an id may hold, key order is id order (the page order). A lone key is stored as
# itself, not as a tuple of one (most contacts hold one to three relations).
IdSet = str | tuple[str, ...]
Reverse = dict[str, IdSet]
_NONE: tuple[str, ...] = ()


def _ids(found: IdSet | None) -> tuple[str, ...]:
    """What a reverse index holds for one id, always as a tuple of keys."""
    if found is None:
        return _NONE
    return (found,) if type(found) is str else found  # type: ignore[return-value]


# An organization (or contact) with more keys than this also gets a reason index: its keys
# filed by what in their entries can give a right, so that a lookup decides only the keys
# that may answer, not every holder. Below it, deciding every key is as cheap as the merge.
SCAN_LIMIT = 64
# Reason tags: "g<level><subject>" a direct grant, "r<role>" a role (its defaults are read at
# lookup time, under the caller's policy), "d<via>\x1f<subject>" (by organization) or
# "d<subject>" (by contact) a delegation naming the subject or "*".
Reasons = dict[str, IdSet]


def _tags(entry: Entry, by_organization: bool) -> list[str]:
    """The reason tags under which an entry's key is filed."""
    via = entry[_VIA]
    grants = entry[_GRANTS]
    if via is None:
        tags = [f"g{level}{subject}" for subject, level in grants.items() if level > 0]
        if entry[_ROLE] is not None:
            tags.append("r" + entry[_ROLE])
        return tags
    prefix = "d" + via + _SEP if by_organization else "d"
    return [prefix + subject for subject, level in grants.items() if level > 0]


def _merged(sources: list[tuple[str, ...]], after: str) -> Iterator[str]:
    """The keys of several sorted tuples, in order, each once, after `after`."""
    runs = [map(s.__getitem__, range(bisect.bisect_right(s, after) if after else 0, len(s))) for s in sources]
    if len(runs) == 1:
        yield from runs[0]
        return
    last = None
    for key in heapq.merge(*runs):
        if key != last:
            last = key
            yield key


def _with_id(found: IdSet | None, new: str) -> IdSet:
    """The sorted keys plus `new`, as a new value (readers never see one half-changed)."""
    if found is None:
        return new
    ids = _ids(found)
    at = bisect.bisect_left(ids, new)
    if at < len(ids) and ids[at] == new:
        return found
    return (*ids[:at], new, *ids[at:])


@dataclass(frozen=True, slots=True)
class Compiled:
    """A policy and the role-default table compiled from it, swapped as one object: a check
    reads it once, so it never pairs one policy's defaults with another's hash."""

    policy: Policy
    defaults: Mapping[str | None, Mapping[str, int]]


class DecisionEngine:
    """Answers checks and lookups from memory; kept exact by `apply` after every committed write."""

    def __init__(self, policy: Policy, *, scan_limit: int | None = None) -> None:
        # Read at construction, not at definition: tests set SCAN_LIMIT to 0 to reach the reason indexes.
        self.scan_limit = SCAN_LIMIT if scan_limit is None else scan_limit
        self._compiled = Compiled(policy, self._compile_defaults(policy))
        self._people: Index = {}  # contact relations and delegations, by contact and organization
        self._organizations: Index = {}  # organization-to-organization, by grantee and grantor
        # Lookups' reverse indexes over the keys of `_people`: who holds anything on an
        # organization, and on which organizations a contact holds anything. Keys are never
        # removed (a removal ends a relation, it stays as history), so these only grow.
        self._holders: Reverse = {}
        self._holdings: Reverse = {}
        # Reason indexes of the organizations (and contacts) with more than `scan_limit` keys,
        # and the organizations each organization authorizes (grantor -> grantees), which say
        # which delegations can give a right on it. Grow-only, as the reverse indexes.
        self._org_reasons: dict[str, Reasons] = {}
        self._contact_reasons: dict[str, Reasons] = {}
        self._grantees: Reverse = {}
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
        return self._compiled.policy

    @property
    def compiled(self) -> Compiled:
        """The policy and its defaults as one object: read it once per decision."""
        return self._compiled

    def set_policy(self, policy: Policy) -> None:
        """Swap the policy and its compiled defaults in one assignment."""
        self._compiled = Compiled(policy, self._compile_defaults(policy))

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

    def load_rows(self, rows: Iterable[IndexRow], revision: int, *, lookups: bool = True) -> None:
        """Build every index, the check's and the lookups', in one pass over rows as the store streams them.

        `lookups=False` builds the check's alone: `authz bench --lookups` measures what the
        lookups' indexes add to start-up time and memory with it. Such an engine answers no lookup.
        """
        people: Index = {}
        organizations: Index = {}
        holders: dict[str, IdSet | list[str]] = {}
        holdings: dict[str, IdSet | list[str]] = {}
        grantees: dict[str, IdSet | list[str]] = {}
        # Millions of new tuples would trigger hundreds of cyclic collections, each scanning
        # what was built so far (12 s instead of 7 s at 1M); entries hold no cycles.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._build(rows, people, organizations, holders if lookups else None, holdings)
            _sort_reverse(holders)
            _sort_reverse(holdings)
            if lookups:
                for key in organizations:
                    grantee, grantor = key.split(_SEP)
                    known = grantees.get(grantor)
                    if known is None:
                        grantees[grantor] = [grantee]
                    else:
                        known.append(grantee)  # type: ignore[union-attr]
                _sort_reverse(grantees)
            org_reasons = {
                organization: _reason_index(people.get, _ids(keys), True)  # type: ignore[arg-type]
                for organization, keys in holders.items()
                if len(_ids(keys)) > self.scan_limit  # type: ignore[arg-type]
            }
            contact_reasons = {
                contact: _reason_index(people.get, _ids(keys), False)  # type: ignore[arg-type]
                for contact, keys in holdings.items()
                if len(_ids(keys)) > self.scan_limit  # type: ignore[arg-type]
            }
        finally:
            if collecting:
                gc.enable()
        # What start-up built lives as long as the process: move it out of the collector's
        # sight, or every full collection walks the million entries (0.8 s, a p99 spike).
        gc.freeze()
        with self._write_lock:
            self._people = people
            self._organizations = organizations
            self._holders = cast(Reverse, holders)
            self._holdings = cast(Reverse, holdings)
            self._grantees = cast(Reverse, grantees)
            self._org_reasons = org_reasons
            self._contact_reasons = contact_reasons
            self.revision = revision

    def _build(
        self,
        rows: Iterable[IndexRow],
        people: Index,
        organizations: Index,
        holders: dict[str, IdSet | list[str]] | None,
        holdings: dict[str, IdSet | list[str]],
    ) -> None:
        # This loop runs a million times at start-up: _entry() is inlined, and the strings
        # many entries repeat (roles, ids of the organizations delegations come through,
        # the ids the reverse indexes hold) are deduplicated by a local dict: the driver
        # returns a new string for every row.
        grant_maps = self._grant_maps
        day = self._days.setdefault
        names: dict[str, str] = {}
        name = names.setdefault
        organization_kind = RelationKind.ORGANIZATION.value
        holders_get = (holders if holders is not None else {}).get
        holdings_get = holdings.get
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
            if found is not None:
                target[key] = (*_entries(found), entry)
                continue
            target[key] = entry
            if target is people and holders is not None:
                # A new (contact, organization) pair: the lookups learn it. _add_unsorted() inlined.
                known = holders_get(organization)
                if known is None:
                    holders[organization] = key
                elif type(known) is list:
                    known.append(key)
                else:
                    holders[organization] = [known, key]  # type: ignore[list-item]
                known = holdings_get(holder)
                if known is None:
                    holdings[holder] = key
                elif type(known) is list:
                    known.append(key)
                else:
                    holdings[holder] = [known, key]  # type: ignore[list-item]

    def apply(self, relations: Iterable[Relation], revision: int) -> bool:
        """Reflect one committed revision: each relation replaces its previous state, in every index.

        The single entry point of every change, from the write that made it and from the
        follower of the change log alike (both may bring the same revision). Revisions are
        taken once and in order: one at or below the engine's is already there (True); one
        beyond the next is not applied (False: the caller catches up from the log first).

        Atomic for checks: the new slots are computed aside, then each map takes them in one
        `dict.update`, a single C call during which no other Python thread runs. (A revision
        touching both maps is two such steps; no write today touches both.) The lookups'
        reverse indexes learn new keys right after: a lookup meanwhile answers as of the
        revision before, never a state that was not committed.
        """
        with self._write_lock:
            if revision <= self.revision:
                return True
            if revision != self.revision + 1:
                return False
            people: Index = {}
            organizations: Index = {}
            # Grouped by key first, so a key's entries are scanned once per revision, however many
            # of its relations the revision changed: linear in what the write touched.
            grouped: dict[tuple[bool, str], dict[str, Entry]] = {}
            for relation in relations:
                row = index_row(relation)
                is_person = relation.kind is not RelationKind.ORGANIZATION
                grouped.setdefault((is_person, row[2] + _SEP + row[3]), {})[row[1]] = self._entry(row)
            for (is_person, key), replaced in grouped.items():
                index, pending = (self._people, people) if is_person else (self._organizations, organizations)
                found = index.get(key)
                kept = tuple(e for e in _entries(found) if e[_ID] not in replaced)
                pending[key] = _slot((*kept, *replaced.values()))
                holder, organization = key.split(_SEP, 1)
                # The lookups learn the key and what can make it answer before the check index
                # takes the change: a candidate too many is decided by `check` (a lookup meanwhile
                # answers as of the revision before), a candidate missing would be an omission.
                if is_person:
                    for number, entry in enumerate(replaced.values()):
                        self._learn(holder, organization, key, entry, found is None and number == 0, people)
                elif found is None:
                    self._grantees[organization] = _with_id(self._grantees.get(organization), holder)
            if organizations:
                self._organizations.update(organizations)
            if people:
                self._people.update(people)
            self.revision = revision
            return True

    def _learn(self, holder: str, organization: str, key: str, entry: Entry, new_key: bool, pending: Index) -> None:
        """Keep the lookups' reverse and reason indexes (under the write lock): a new key is
        filed under its organization and contact; an entry's reasons are filed where a reason
        index exists, and a reason index is built for an anchor that grows past `scan_limit`."""
        people = self._people

        def slot_of(k: str) -> Slot | None:
            # This revision's slots where it has them: they are not in the check index yet.
            return pending[k] if k in pending else people.get(k)

        for anchor, reverse, reasons, by_organization in (
            (organization, self._holders, self._org_reasons, True),
            (holder, self._holdings, self._contact_reasons, False),
        ):
            if new_key:
                reverse[anchor] = keys = _with_id(reverse.get(anchor), key)
            else:
                keys = reverse.get(anchor)  # type: ignore[assignment]
            filed = reasons.get(anchor)
            if filed is not None:
                grown = dict(filed)
                for tag in _tags(entry, by_organization):
                    grown[tag] = _with_id(grown.get(tag), key)
                reasons[anchor] = grown
            elif len(_ids(keys)) > self.scan_limit:
                reasons[anchor] = _reason_index(slot_of, _ids(keys), by_organization)

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

    # ------------------------------------------------------------------ what a write changes
    def entries(self, holder_id: str, organization_id: str, *, organization: bool = False) -> tuple[Entry, ...]:
        """What one key holds: a contact's relations and delegations on an organization, or
        (`organization=True`) what one organization was authorized on by another. The write
        envelope's invariants read the state before a write here, and put the write's entries
        (`relation_entry`) in place of these to see the state after it."""
        index = self._organizations if organization else self._people
        return _entries(index.get(holder_id + _SEP + organization_id))

    def direct_level(self, entries: Iterable[Entry], subject: str, day: int, ts: float) -> int:
        """The best right the direct relations among `entries` give on `subject` at an instant:
        subjects granted and role defaults, as `check` counts them. Delegations are left out:
        management, the rule this serves, is never held through another organization."""
        defaults = self._compiled.defaults
        best = 0
        for entry in entries:
            if entry[_VIA] is None and _in_force(entry, day, ts):
                best = max(best, entry[_GRANTS].get(subject, 0), defaults[entry[_ROLE]].get(subject, 0))
        return best

    @staticmethod
    def granted_level(entries: Iterable[Entry], subject: str, day: int, ts: float) -> int:
        """What organization-to-organization `entries` in force give on `subject` (as `organization_right`)."""
        best = 0
        for entry in entries:
            if _in_force(entry, day, ts):
                best = max(best, entry[_GRANTS].get(subject, 0))
        return best

    # ------------------------------------------------------------------ the rule
    def _grant_level(
        self,
        contact_id: str,
        organization_id: str,
        subject: str,
        day: int,
        ts: float,
        entry: Entry,
        defaults: Mapping[str | None, Mapping[str, int]],
    ) -> int:
        """The reference evaluation: what one relation or delegation of a contact gives on
        `subject` of `organization_id` at an instant (0 nothing, 1 read, 2 write).

        Written plainly, once: `level` (the whole decision), `explain`, `effective_grants`
        and the lookups are derived from it; `check` is its optimized form, held to it by
        tests/unit/test_engine_oracle.py and the property suite.
        """
        if not _in_force(entry, day, ts):
            return 0
        if entry[_VIA] is None:
            return max(entry[_GRANTS].get(subject, 0), defaults[entry[_ROLE]].get(subject, 0))
        return self._delegation_level(contact_id, organization_id, subject, day, ts, entry)

    def _delegation_level(
        self, contact_id: str, organization_id: str, subject: str, day: int, ts: float, entry: Entry
    ) -> int:
        """The delegation rule, for a delegation in force: the lesser of what it gives and what
        the organization it comes through holds there now, and only while the contact is in
        force in that organization."""
        if subject == _MANAGEMENT:
            return 0  # management is never held through another organization (rule 2)
        grants = entry[_GRANTS]
        given = max(grants.get(subject, 0), grants.get(WILDCARD_SUBJECT, 0))
        via = entry[_VIA]
        if not given or via is None or not self._is_member(contact_id, via, day, ts):
            return 0
        return min(given, self.organization_right(via, organization_id, subject, day, ts))

    def level(self, contact_id: str, organization_id: str, subject: str, ts: float) -> int:
        """The best right the contact holds on the subject at epoch `ts`, by the reference rule."""
        day = self._clock.ordinal(ts)
        defaults = self._compiled.defaults
        best = 0
        for entry in _entries(self._people.get(contact_id + _SEP + organization_id)):
            best = max(best, self._grant_level(contact_id, organization_id, subject, day, ts, entry, defaults))
        return best

    # ------------------------------------------------------------------ checks
    def check(
        self,
        contact_id: str,
        organization_id: str,
        subject: str,
        right: int,
        ts: float,
        compiled: Compiled | None = None,
    ) -> bool:
        """The hot path: is `right` (1 read, 2 write) held on `subject` at epoch `ts`?

        `compiled`: the policy the caller reports the answer under (default: the current one).
        """
        day = self._clock.ordinal(ts)
        found = self._people.get(contact_id + _SEP + organization_id)
        if found is None:
            return False
        # _entries() inlined: one call less on the hot path.
        entries: tuple[Entry, ...] = (found,) if type(found[0]) is int else found  # type: ignore[assignment]
        for entry in entries:
            if entry[0] <= day <= entry[1] and ts < entry[2]:
                if entry[5] is None:
                    if (
                        entry[3].get(subject, 0) >= right
                        or (compiled or self._compiled).defaults[entry[4]].get(subject, 0) >= right
                    ):
                        return True
                elif self._delegation_level(contact_id, organization_id, subject, day, ts, entry) >= right:
                    return True
        return False

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

    # ------------------------------------------------------------------ lookups
    def lookup_principals(
        self,
        organization_id: str,
        subject: str,
        right: int,
        ts: float,
        *,
        after: str = "",
        limit: int,
        compiled: Compiled | None = None,
    ) -> tuple[list[str], bool]:
        """The contacts `check` allows on the organization, in id order, after the id `after`:
        at most `limit` of them, and whether more follow."""
        cut = -len(organization_id) - 1  # "contact\x1forganization"[:cut] is the contact
        compiled = compiled or self._compiled
        after_key = after + _SEP + organization_id if after else ""
        reasons = self._org_reasons.get(organization_id)
        if reasons is None or right < 1:
            candidates = _merged([_ids(self._holders.get(organization_id))], after_key)
        else:
            tags = self._direct_tags(subject, right, compiled)
            if subject != _MANAGEMENT:
                # A delegation gives nothing beyond what the organization it comes through holds
                # here now: only those organizations' delegations can answer.
                day = self._clock.ordinal(ts)
                for grantee in _ids(self._grantees.get(organization_id)):
                    if self.organization_right(grantee, organization_id, subject, day, ts) >= right:
                        tags += ("d" + grantee + _SEP + subject, "d" + grantee + _SEP + WILDCARD_SUBJECT)
            candidates = _merged([_ids(reasons[tag]) for tag in tags if tag in reasons], after_key)
        return self._matching(
            candidates,
            limit,
            lambda key, c: self.check(key[:cut], organization_id, subject, right, ts, c),
            lambda key: key[:cut],
            compiled,
        )

    @staticmethod
    def _direct_tags(subject: str, right: int, compiled: Compiled) -> list[str]:
        """The reason tags a relation (not a delegation) can give `right` on `subject` through."""
        tags = ["g2" + subject] if right >= 2 else ["g2" + subject, "g1" + subject]
        tags += [
            "r" + role for role, held in compiled.defaults.items() if role is not None and held.get(subject, 0) >= right
        ]
        return tags

    def lookup_organizations(
        self,
        contact_id: str,
        subject: str,
        right: int,
        ts: float,
        *,
        after: str = "",
        limit: int,
        compiled: Compiled | None = None,
    ) -> tuple[list[str], bool]:
        """The organizations where `check` allows the contact, in id order, after the id `after`."""
        cut = len(contact_id) + 1  # "contact\x1forganization"[cut:] is the organization
        compiled = compiled or self._compiled
        after_key = contact_id + _SEP + after if after else ""
        reasons = self._contact_reasons.get(contact_id)
        if reasons is None or right < 1:
            candidates = _merged([_ids(self._holdings.get(contact_id))], after_key)
        else:
            tags = self._direct_tags(subject, right, compiled)
            if subject != _MANAGEMENT:
                tags += ("d" + subject, "d" + WILDCARD_SUBJECT)
            candidates = _merged([_ids(reasons[tag]) for tag in tags if tag in reasons], after_key)
        return self._matching(
            candidates,
            limit,
            lambda key, c: self.check(contact_id, key[cut:], subject, right, ts, c),
            lambda key: key[cut:],
            compiled,
        )

    def holders(self, organization_id: str) -> list[str]:
        """Every contact with a relation or delegation of any date on the organization, in id order."""
        cut = -len(organization_id) - 1
        return [key[:cut] for key in _ids(self._holders.get(organization_id))]

    @staticmethod
    def _matching(
        candidates: Iterator[str],
        limit: int,
        allowed: Callable[[str, Compiled], bool],
        id_of: Callable[[str], str],
        compiled: Compiled,
    ) -> tuple[list[str], bool]:
        # The candidates are keys that may answer (every key of the anchor, or those its reason
        # index files under what can give the right); `check` itself decides, so a lookup
        # answers exactly what the checks would, whatever rule they apply.
        found: list[str] = []
        for candidate in candidates:
            if allowed(candidate, compiled):
                if len(found) == limit:
                    return found, True
                found.append(id_of(candidate))
        return found, False

    # ------------------------------------------------------------------ explain
    def explain(
        self,
        contact_id: str,
        organization_id: str,
        subject: str,
        right: int,
        ts: float,
        compiled: Compiled | None = None,
    ) -> Decision:
        """The same decision as `check`, by the reference rule, with the reason and the relations behind it."""
        defaults = (compiled or self._compiled).defaults
        day = self._clock.ordinal(ts)
        wanted = Right(right).code
        considered: list[str] = []
        key = (contact_id, organization_id)
        mine = _entries(self._people.get(contact_id + _SEP + organization_id))
        # Direct relations first: the simplest reason wins.
        for entry in sorted(mine, key=lambda e: e[_VIA] is not None):
            direct = entry[_VIA] is None
            label = self._describe(RelationKind.CONTACT if direct else RelationKind.DELEGATION, key, entry)
            if not _in_force(entry, day, ts):
                considered.append(f"{label} (not in force)")
                continue
            level = self._grant_level(contact_id, organization_id, subject, day, ts, entry, defaults)
            if direct:
                granted = entry[_GRANTS].get(subject, 0)
                if level >= right and granted >= right:
                    return Decision(True, f"{subject} {Right(granted).code} granted on relation {entry[_ID]}", [label])
                if level >= right:
                    role = entry[_ROLE] or "-"
                    return Decision(True, f"role {role} holds {subject} {Right(level).code} by default", [label])
                considered.append(label)
                continue
            via = entry[_VIA] or ""
            member_path = [
                self._describe(RelationKind.CONTACT, (contact_id, via), e)
                for e in _entries(self._people.get(contact_id + _SEP + via))
                if e[_VIA] is None and _in_force(e, day, ts)
            ]
            org_path = [
                self._describe(RelationKind.ORGANIZATION, (via, organization_id), e)
                for e in _entries(self._organizations.get(via + _SEP + organization_id))
                if _in_force(e, day, ts)
            ]
            held = self.organization_right(via, organization_id, subject, day, ts)
            if level >= right:
                return Decision(
                    True,
                    f"{subject} {wanted} delegated through {via}, which holds {Right(held).code}",
                    [label, *member_path[:1], *org_path[:1]],
                )
            grants = entry[_GRANTS]
            delegated = max(grants.get(subject, 0), grants.get(WILDCARD_SUBJECT, 0))
            if subject == _MANAGEMENT:
                considered.append(f"{label} (management is never held through another organization)")
            elif delegated < right:
                considered.append(
                    f"{label} (delegates {Right(delegated).code if delegated else 'nothing'} on {subject})"
                )
            elif not member_path:
                considered.append(f"{label} (no relation in force with {via})")
            elif held < right:
                considered.append(f"{label} ({via} holds {Right(held).code if held else 'nothing'} on {subject})")
            else:  # the rule refused for a reason of its own
                considered.append(f"{label} (gives {Right(level).code if level else 'nothing'} on {subject})")
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
        """What a relation gives at `at`, subject by subject (ListAuthorizations' rows), by the reference rule."""
        ts = at.timestamp()
        day = local_date(at).toordinal()
        row = index_row(relation)
        if relation.kind is RelationKind.ORGANIZATION:
            entry = _plain_entry(row)
            # `relations` between organizations gives nothing (data from before the rule, or imported).
            return {
                subject: Right(level)
                for subject, level in entry[_GRANTS].items()
                if level and subject != _MANAGEMENT and _in_force(entry, day, ts)
            }
        entry = _plain_entry(row)
        defaults = self._compiled.defaults
        candidates = set(relation.subjects) - {WILDCARD_SUBJECT}
        if relation.kind is RelationKind.CONTACT:
            candidates.update(defaults[entry[_ROLE]])
        elif WILDCARD_SUBJECT in relation.subjects:
            via = relation.via_organization_id or ""
            for found in _entries(self._organizations.get(via + _SEP + relation.organization_id)):
                candidates.update(found[_GRANTS])
        result: dict[str, Right] = {}
        for subject in candidates:
            level = self._grant_level(relation.holder_id, relation.organization_id, subject, day, ts, entry, defaults)
            if level:
                result[subject] = Right(level)
        return result

    def stats(self) -> dict[str, int]:
        return {
            "contact_relations": sum(e[_VIA] is None for slot in self._people.values() for e in _entries(slot)),
            "organization_relations": sum(len(_entries(slot)) for slot in self._organizations.values()),
            "delegations": sum(e[_VIA] is not None for slot in self._people.values() for e in _entries(slot)),
        }


def relation_entry(relation: Relation) -> Entry:
    """A relation as the engine holds it, built aside (nothing of the engine's shared or changed)."""
    return _plain_entry(index_row(relation))


def _plain_entry(row: IndexRow) -> Entry:
    """An entry for a one-off evaluation: nothing shared, no cache of the engine's touched."""
    return (row[6], row[7], row[8], dict(row[9]), row[5], row[4], row[1])


def _reason_index(slot_of: Callable[[str], Slot | None], keys: Iterable[str], by_organization: bool) -> Reasons:
    """The keys of one organization (or contact), in id order, filed by reason tag."""
    filed: dict[str, list[str]] = {}
    for key in keys:
        for entry in _entries(slot_of(key)):
            for tag in _tags(entry, by_organization):
                known = filed.get(tag)
                if known is None:
                    filed[tag] = [key]
                elif known[-1] != key:  # two entries of one key may share a tag
                    known.append(key)
    return {tag: found[0] if len(found) == 1 else tuple(found) for tag, found in filed.items()}


def _sort_reverse(reverse: dict[str, IdSet | list[str]]) -> None:
    """Lists built at start-up become sorted tuples (each (contact, organization) pair came once)."""
    for key, found in reverse.items():
        if type(found) is list:
            reverse[key] = tuple(sorted(found))
