"""Which decisions a new policy flips, on the data an engine holds: `authz policy diff` and
the summary the server logs and audits on each accepted reload.

A policy decides through two things only: the role defaults and the catalogue (a subject
out of it, removed or retired, is held by no one). So only the subjects whose default
changed for some role, or which joined or left the catalogue, can flip; and for a subject
whose defaults alone changed, only a pair where a role with a changed default is in force.
Those pairs are decided twice by the real check: by the engine under the new policy, and
by a shadow engine sharing its indexes (read only) under the old one. Organizations
hold rights that no default gives, so they flip only with the catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from authz.domain.model import Right, Role
from authz.engine.index import DecisionEngine, Entry
from authz.engine.policy import Policy

__all__ = ["Change", "DiffReport", "Group", "decision_flips"]

_SEP = "\x1f"  # the engine's key separator (holder, organization)
ORGANIZATIONS = "organization-to-organization"


@dataclass(frozen=True, slots=True)
class Change:
    contact_id: str  # the grantee organization, for an organization-to-organization change
    organization_id: str
    subject: str
    before: Right
    after: Right


@dataclass(frozen=True, slots=True)
class Group:
    roles: str  # "dirigeant", "dirigeant+representant", "delegated via ORG-X" or ORGANIZATIONS
    subject: str
    before: Right
    after: Right
    changes: tuple[Change, ...]

    @property
    def contacts(self) -> list[str]:
        return sorted({c.contact_id for c in self.changes})

    @property
    def gained(self) -> bool:
        return self.after > self.before

    @property
    def organizations(self) -> bool:
        return self.roles == ORGANIZATIONS

    def sentence(self, limit: int | None = None) -> str:
        """The group in words; `limit` caps how many places are named."""
        count = len(self.changes) if self.organizations else len(self.contacts)
        noun = "organization" if self.organizations else "contact"
        who = f"{count} {noun}{'s' if count != 1 else ''}" + ("" if self.organizations else f" ({self.roles})")
        verb = "gain" if self.gained else "lose"
        if count == 1:
            verb += "s"
        if self.gained:
            what = f"{self.after.code} on {self.subject}" + (f" (had {self.before.code})" if self.before else "")
        else:
            # Write implies read: losing write entirely also loses read, say so.
            lost = "write and read" if self.before is Right.WRITE and not self.after else self.before.code
            what = f"{lost} on {self.subject}" + (
                f" (keep{'s' if count == 1 else ''} {self.after.code})" if self.after else ""
            )
        if self.organizations:
            own = "the organizations that authorized them"
        elif self.roles.startswith("delegated"):
            own = "their delegated organization"
        else:
            own = "their own organization"
        ordered = sorted(self.changes, key=lambda c: (c.contact_id, c.organization_id))
        shown = ordered if limit is None else ordered[:limit]
        places = ", ".join(f"{c.contact_id} on {c.organization_id}" for c in shown)
        if len(shown) < len(ordered):
            places += f" and {len(ordered) - len(shown)} more"
        return f"{who} {verb} {what} of {own}: {places}"


@dataclass
class DiffReport:
    old_hash: str
    new_hash: str
    at: datetime
    pairs: int
    decisions: int
    groups: list[Group] = field(default_factory=list)

    @property
    def changed_contacts(self) -> list[str]:
        return sorted({c for g in self.groups if not g.organizations for c in g.contacts})

    @property
    def changed_organizations(self) -> list[str]:
        return sorted({c for g in self.groups if g.organizations for c in g.contacts})

    def summary(self) -> str:
        """One line: what the log and the audit of a reload say."""
        if not self.groups:
            return "no decision changes"
        losses = sum(len(g.changes) for g in self.groups if not g.gained)
        gains = sum(len(g.changes) for g in self.groups if g.gained)
        return (
            f"{gains} gain(s) and {losses} loss(es) of a right: {len(self.changed_contacts)} contact(s), "
            f"{len(self.changed_organizations)} organization(s) affected"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "old_policy": self.old_hash,
            "new_policy": self.new_hash,
            "at": self.at.isoformat(),
            "pairs": self.pairs,
            "decisions": self.decisions,
            "changes": [
                {
                    "roles": g.roles,
                    "subject": g.subject,
                    "before": g.before.code,
                    "after": g.after.code,
                    "count": len(g.changes) if g.organizations else len(g.contacts),
                    "contacts": [{"contact_id": c.contact_id, "organization_id": c.organization_id} for c in g.changes],
                    "summary": g.sentence(),
                }
                for g in self.groups
            ],
        }


def _entries(slot: Any) -> tuple[Entry, ...]:
    return (slot,) if type(slot[0]) is int else slot


def _in_force(entry: Entry, day: int, ts: float) -> bool:
    return entry[0] <= day <= entry[1] and ts < entry[2]


def decision_flips(engine: DecisionEngine, old: Policy, at: datetime) -> DiffReport:
    """What changes between `old` and the policy `engine` serves, on the engine's data at `at`."""
    new = engine.policy
    ts = at.timestamp()
    day = engine.day_of(ts)
    catalogue = [*new.subjects, *(s for s in old.subjects if s not in new.subjects)]
    moved = {s for s in catalogue if (s in old.subjects) != (s in new.subjects)}
    by_default: dict[str, set[str]] = {}  # subject -> roles whose default on it changed
    for subject in catalogue:
        if subject in moved:
            continue
        for role in Role:
            if old.default_right(role, subject) != new.default_right(role, subject):
                by_default.setdefault(subject, set()).add(role.value)
    shadow = DecisionEngine(old)
    # Read only, and safe to share: what a key holds is replaced, never mutated.
    shadow._people = engine._people
    shadow._organizations = engine._organizations
    shadow._clock = engine._clock
    people = engine._people.copy()  # a snapshot of the keys: writes may add some meanwhile
    grouped: dict[tuple[str, str, Right, Right], list[Change]] = {}
    decisions = 0

    def level(deciding: DecisionEngine, policy: Policy, holder: str, organization: str, subject: str) -> Right:
        nonlocal decisions
        if subject not in policy.subjects:  # the server answers no one holds it
            return Right.NONE
        for right in (Right.WRITE, Right.READ):
            decisions += 1
            if deciding.check(holder, organization, subject, int(right), ts):
                return right
        return Right.NONE

    for key, slot in people.items():
        contact, organization = key.split(_SEP, 1)
        entries = _entries(slot)
        roles = {e[4] for e in entries if e[5] is None and e[4] is not None and _in_force(e, day, ts)}
        subjects = [*moved, *(s for s, changed in by_default.items() if roles & changed)]
        if not subjects:
            continue
        labels = {*roles, *(f"delegated via {e[5]}" for e in entries if e[5] is not None and _in_force(e, day, ts))}
        for subject in sorted(subjects):
            before = level(shadow, old, contact, organization, subject)
            after = level(engine, new, contact, organization, subject)
            if before != after:
                label = "+".join(sorted(labels)) or "no relation in force"
                grouped.setdefault((label, subject, before, after), []).append(
                    Change(contact, organization, subject, before, after)
                )
    pairs = len(people)
    if moved:
        organizations = engine._organizations.copy()
        pairs += len(organizations)
        for key in organizations:
            grantee, grantor = key.split(_SEP, 1)
            for subject in sorted(moved):
                decisions += 1
                held = Right(engine.organization_right(grantee, grantor, subject, day, ts))
                before = held if subject in old.subjects else Right.NONE
                after = held if subject in new.subjects else Right.NONE
                if before != after:
                    grouped.setdefault((ORGANIZATIONS, subject, before, after), []).append(
                        Change(grantee, grantor, subject, before, after)
                    )
    groups = [
        Group(roles, subject, before, after, tuple(changes))
        for (roles, subject, before, after), changes in grouped.items()
    ]
    groups.sort(key=lambda g: (g.gained, g.organizations, g.roles, g.subject, -int(g.before)))
    return DiffReport(old.content_hash, new.content_hash, at, pairs, decisions, groups)
