"""UpdateRelation: "Date de fin d'une relation", and "…ou des sujets autorisés à un contact"
given on the relation the contact already has, instead of a parallel one.

The end date moves earlier or later, never before the start (rule 5) nor before today
(history is not rewritten: to end a relation now, it is removed). Subjects are added to
the relation in place; on a delegation, never more than the organization holds there
(rule 4), and `relations` is never given to an organization or delegated (rule 2). The
form carries one box, `changes_accurate` (rule 9).

An organization keeps someone to manage it: ending a relation earlier is refused when nobody
would manage the organization the day after the new end date, and so is taking `relations`
write from its last holder. The write envelope checks this and the other rules of every write
(no one widens their own relation, a relation that has ended stays ended) at commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from authz.commands.base import (
    Attestation,
    Deps,
    WriteOutcome,
    require_manager,
    require_organization,
    run_write,
)
from authz.commands.forms import CHANGE_FORM, box_violations, refuse_if_any
from authz.domain.dates import local_date, parse_date
from authz.domain.model import Relation, RelationKind, Right
from authz.domain.validation import Violations, management_subject_problem
from authz.errors import FailedPrecondition, InvalidArgument, NotFound
from authz.store.interface import AuditRecord, Transaction

__all__ = [
    "AppliedRelationChange",
    "RelationChange",
    "UpdateRelation",
    "UpdateRelationRequest",
    "UpdateRelationResult",
    "apply_relation_change",
    "parse_relation_change",
]


@dataclass(frozen=True)
class UpdateRelationRequest:
    actor_id: str
    organization_id: str
    relation_id: str
    end_date: str = ""
    add_subjects: tuple[tuple[str, Right], ...] = ()
    attestation: Attestation = field(default_factory=Attestation)
    request_id: str = ""


@dataclass
class UpdateRelationResult:
    relation_id: str
    end_date: str
    subjects_added: int = 0
    revision: str = ""


class UpdateRelation:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def execute(self, request: UpdateRelationRequest, found: Violations | None = None) -> UpdateRelationResult:
        """`found`: problems the caller's edge already found in the request, refused with these."""
        violations = Violations()
        boxes = box_violations(request.attestation, CHANGE_FORM, violations)
        change = parse_relation_change(
            violations,
            "",
            request.relation_id,
            request.end_date,
            request.add_subjects,
            self.deps.engine.policy.subjects,
            today=local_date(self.deps.clock()),  # before the lock; again inside at the write's instant
        )
        refuse_if_any(violations, "invalid relation update", found)
        deps = self.deps

        def body(tx: Transaction, now: datetime) -> WriteOutcome:
            organization = require_organization(tx, request.organization_id)
            require_manager(deps, request.actor_id, organization.id, now)
            applied = apply_relation_change(deps, tx, organization.id, change, now)
            audit = AuditRecord(
                at=now,
                actor_id=request.actor_id,
                action="update_relation",
                organization_id=organization.id,
                request_id=request.request_id or None,
                attestation=boxes,
                changes=applied.audit,
            )
            result = UpdateRelationResult(applied.relation.id, applied.end_date.isoformat(), len(applied.added))
            return WriteOutcome(result, audit, changed=[applied.relation])

        return run_write(
            deps, "update_relation", request, request.request_id, body, UpdateRelationResult, actor_id=request.actor_id
        )


@dataclass(frozen=True)
class RelationChange:
    """One relation's change, its input checked: what UpdateRelation and UpdateContact's
    `relation_updates` apply, the same way."""

    relation_id: str
    end_date: date | None  # None: unchanged
    add_subjects: dict[str, Right]
    field_prefix: str = ""  # where its fields are in the request, for the violations


@dataclass(frozen=True)
class AppliedRelationChange:
    relation: Relation  # as it stands after the change
    end_date: date  # the end date now in force
    added: dict[str, Right]
    audit: dict[str, Any]  # what the audit records of it


def parse_relation_change(
    violations: Violations,
    field_prefix: str,
    relation_id: str,
    end_date: str,
    add_subjects: Iterable[tuple[str, Right]],
    catalogue: Mapping[str, Any],
    today: date | None = None,
) -> RelationChange:
    """The change's input rules, every problem recorded in `violations` (nothing raised); with
    `today`, an end date before it too."""
    pairs = list(add_subjects)
    if not end_date and not pairs:
        violations.add(f"{field_prefix}end_date", "nothing to change: give an end date or subjects to add")
    new_end: date | None = None
    if end_date:
        try:
            new_end = parse_date(end_date)
        except ValueError:
            violations.add(f"{field_prefix}end_date", "must be a date YYYY-MM-DD")
        if new_end is not None and today is not None and new_end < today:
            violations.add(
                f"{field_prefix}end_date", f"must not be before today ({today.isoformat()}); to end it now, remove it"
            )
    subjects = violations.subjects(pairs, catalogue, f"{field_prefix}add_subjects")
    return RelationChange(relation_id, new_end, subjects, field_prefix)


def apply_relation_change(
    deps: Deps, tx: Transaction, organization_id: str, change: RelationChange, now: datetime, contact_id: str = ""
) -> AppliedRelationChange:
    """Apply one relation's change inside the write (`contact_id`: it must be that contact's relation)."""
    prefix = change.field_prefix
    relation = tx.get_relation(change.relation_id)
    if (
        relation is None
        or not _managed_by(relation, organization_id)
        or (contact_id and relation.contact_id != contact_id)
    ):
        raise NotFound(
            f"relation {change.relation_id!r} not found for {organization_id!r}", reason="RELATION_NOT_FOUND"
        )
    if relation.ended_at is not None:
        raise FailedPrecondition(
            f"relation {relation.id!r} was removed; add a new relation instead", reason="RELATION_REMOVED"
        )
    today = local_date(now)
    end = relation.end_date
    new_end = change.end_date
    # What only the relation tells (its start, its kind), every problem at once.
    violations = Violations()
    moved = new_end is not None and new_end != relation.end_date
    if new_end is not None and moved:
        if new_end < relation.start_date:
            violations.add(
                f"{prefix}end_date", f"must not be before the start date ({relation.start_date.isoformat()})"
            )
        if new_end < today:
            violations.add(
                f"{prefix}end_date", f"must not be before today ({today.isoformat()}); to end it now, remove it"
            )
    violations.check(f"{prefix}add_subjects", management_subject_problem(relation.kind, change.add_subjects))
    violations.raise_if_any("invalid relation update")
    if new_end is not None and moved:
        # Someone must still manage the organization the day after: the write envelope's rules check it.
        tx.set_relation_end(relation.id, new_end)
        end = new_end
    added = {s: r for s, r in change.add_subjects.items() if relation.subjects.get(s) != r}
    if added:
        _check_subjects(deps, relation, added, now, prefix)
        tx.add_subjects(relation.id, added, now)
    changed = tx.get_relation(relation.id)
    assert changed is not None
    audit = {
        "relation_id": relation.id,
        "contact_id": relation.contact_id,
        "grantee_organization_id": relation.grantee_organization_id,
        "end_date": {"before": relation.end_date, "after": end} if end != relation.end_date else None,
        "subjects_added": added,
    }
    return AppliedRelationChange(changed, end, added, audit)


def _managed_by(relation: Relation, organization_id: str) -> bool:
    """The relations an organization's form may change: its own contacts', the authorizations it
    gave other organizations, and the delegations it gave its staff."""
    if relation.kind is RelationKind.DELEGATION:
        return relation.via_organization_id == organization_id
    return relation.organization_id == organization_id


def _check_subjects(deps: Deps, relation: Relation, added: dict[str, Right], now: datetime, prefix: str = "") -> None:
    problem = management_subject_problem(relation.kind, added)
    if problem is not None:
        raise InvalidArgument.field(f"{prefix}add_subjects", problem)
    # More than the organization holds there, on a delegation, is refused by the write envelope's
    # rules (DELEGATION_EXCEEDS), with what it holds.
