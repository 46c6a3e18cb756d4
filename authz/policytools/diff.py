"""`authz policy diff OLD NEW`: who would gain or lose what if NEW replaced OLD, on real data.

Every (contact, organization) pair the data makes relevant (each contact relation and
each delegation) is checked for every subject of either catalogue and both rights, under
one `DecisionEngine` per policy over the same relations: the decisions the server would
make before and after the edit. Each pair and subject is summed up as the highest right
held (write, read or nothing) and the changes are grouped by the contact's role there.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from authz.domain.dates import in_force
from authz.domain.model import Relation, RelationKind, Right
from authz.engine.index import DecisionEngine
from authz.engine.policy import Policy

__all__ = ["Change", "DiffReport", "diff_policies", "load_relations"]


@dataclass(frozen=True, slots=True)
class Change:
    contact_id: str
    organization_id: str
    subject: str
    before: Right
    after: Right


@dataclass(frozen=True, slots=True)
class Group:
    roles: str  # "dirigeant", "dirigeant+representant", or "delegated via ORG-X"
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

    def sentence(self) -> str:
        count = len(self.contacts)
        who = f"{count} contact{'s' if count != 1 else ''} ({self.roles})"
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
        own = "their delegated organization" if self.roles.startswith("delegated") else "their own organization"
        places = ", ".join(
            f"{c.contact_id} on {c.organization_id}"
            for c in sorted(self.changes, key=lambda c: (c.contact_id, c.organization_id))
        )
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
        return sorted({c for g in self.groups for c in g.contacts})

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
                    "count": len(g.contacts),
                    "contacts": [{"contact_id": c.contact_id, "organization_id": c.organization_id} for c in g.changes],
                    "summary": g.sentence(),
                }
                for g in self.groups
            ],
        }


def load_relations(data_file: Path | None, database_url: str | None, catalogue: Iterable[str]) -> list[Relation]:
    """The relations of an import-format JSON file (through the importer, so the same rows
    are refused as `authz import` would), or of a database."""
    from authz.commands.import_data import import_file
    from authz.config import Settings
    from authz.store.sql import open_store

    if database_url is not None:
        store = open_store(Settings(database_url=database_url))
        try:
            return list(store.load_relations())
        finally:
            store.close()
    assert data_file is not None
    with tempfile.TemporaryDirectory(prefix="authz-diff-") as folder:
        store = open_store(Settings(database_url=f"sqlite:///{Path(folder) / 'diff.db'}"))
        try:
            report = import_file(store, data_file, catalogue)
            if report.refused:
                first = report.refused[0]
                raise ValueError(
                    f"{data_file}: {len(report.refused)} row(s) refused, e.g. {first['section']}[{first['index']}]: "
                    f"{first['reason']}"
                )
            return list(store.load_relations())
        finally:
            store.close()


def diff_policies(old: Policy, new: Policy, relations: Iterable[Relation], at: datetime) -> DiffReport:
    relations = list(relations)
    before_engine, after_engine = DecisionEngine(old), DecisionEngine(new)
    before_engine.load(relations, 0)
    after_engine.load(relations, 0)
    ts = at.timestamp()
    roles: dict[tuple[str, str], set[str]] = {}
    for relation in relations:
        if relation.kind is RelationKind.ORGANIZATION or relation.contact_id is None:
            continue
        key = (relation.contact_id, relation.organization_id)
        labels = roles.setdefault(key, set())
        if not in_force(relation.start_date, relation.end_date, relation.ended_at, at):
            continue
        if relation.kind is RelationKind.CONTACT and relation.role is not None:
            labels.add(relation.role.value)
        elif relation.kind is RelationKind.DELEGATION:
            labels.add(f"delegated via {relation.via_organization_id}")
    subjects = list(dict.fromkeys([*old.subjects, *new.subjects]))
    grouped: dict[tuple[str, str, Right, Right], list[Change]] = {}
    decisions = 0
    for (contact, organization), labels in sorted(roles.items()):
        for subject in subjects:
            levels = []
            for policy, engine in ((old, before_engine), (new, after_engine)):
                level = Right.NONE
                # A subject out of a catalogue is refused by the server (INVALID_ARGUMENT): nothing held.
                if subject in policy.subjects:
                    for right in (Right.WRITE, Right.READ):
                        decisions += 1
                        if engine.check(contact, organization, subject, int(right), ts):
                            level = right
                            break
                levels.append(level)
            before, after = levels
            if before != after:
                role_label = "+".join(sorted(labels)) or "no relation in force"
                grouped.setdefault((role_label, subject, before, after), []).append(
                    Change(contact, organization, subject, before, after)
                )
    groups = [
        Group(roles, subject, before, after, tuple(changes))
        for (roles, subject, before, after), changes in grouped.items()
    ]
    groups.sort(key=lambda g: (g.gained, g.roles, g.subject, -int(g.before)))
    return DiffReport(old.content_hash, new.content_hash, at, len(roles), decisions, groups)
