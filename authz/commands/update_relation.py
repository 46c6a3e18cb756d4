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

from dataclasses import dataclass, field
from datetime import date, datetime

from authz.commands.base import (
    Attestation,
    Deps,
    WriteOutcome,
    parse_subjects,
    require_manager,
    require_organization,
    run_write,
)
from authz.commands.forms import CHANGE_FORM, require_boxes
from authz.domain.dates import local_date, parse_date
from authz.domain.model import Relation, RelationKind, Right
from authz.domain.validation import management_subject_problem
from authz.errors import FailedPrecondition, InvalidArgument, NotFound
from authz.store.interface import AuditRecord, Transaction

__all__ = ["UpdateRelation", "UpdateRelationRequest", "UpdateRelationResult"]


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

    def execute(self, request: UpdateRelationRequest) -> UpdateRelationResult:
        boxes = require_boxes(request.attestation, CHANGE_FORM)
        if not request.end_date and not request.add_subjects:
            raise InvalidArgument.field("end_date", "nothing to change: give an end date or subjects to add")
        new_end: date | None = None
        if request.end_date:
            try:
                new_end = parse_date(request.end_date)
            except ValueError:
                raise InvalidArgument.field("end_date", "must be a date YYYY-MM-DD") from None
            _refuse_past_end(
                new_end, local_date(self.deps.clock())
            )  # before the lock; again inside at the write's instant
        subjects = parse_subjects(request.add_subjects, self.deps.engine.policy.subjects, "add_subjects")
        deps = self.deps

        def body(tx: Transaction, now: datetime) -> WriteOutcome:
            organization = require_organization(tx, request.organization_id)
            require_manager(deps, request.actor_id, organization.id, now)
            relation = tx.get_relation(request.relation_id)
            if relation is None or not _managed_by(relation, organization.id):
                raise NotFound(f"relation {request.relation_id!r} not found for {organization.id!r}")
            if relation.ended_at is not None:
                raise FailedPrecondition(f"relation {relation.id!r} was removed; add a new relation instead")
            today = local_date(now)
            end = relation.end_date
            if new_end is not None and new_end != relation.end_date:
                if new_end < relation.start_date:
                    raise InvalidArgument.field(
                        "end_date", f"must not be before the start date ({relation.start_date.isoformat()})"
                    )
                _refuse_past_end(new_end, today)
                tx.set_relation_end(relation.id, new_end)
                end = new_end
            added = {s: r for s, r in subjects.items() if relation.subjects.get(s) != r}
            if added:
                _check_subjects(deps, relation, added, now)
                tx.add_subjects(relation.id, added, now)
            changed = tx.get_relation(relation.id)
            assert changed is not None
            audit = AuditRecord(
                at=now,
                actor_id=request.actor_id,
                action="update_relation",
                organization_id=organization.id,
                request_id=request.request_id or None,
                attestation=boxes,
                changes={
                    "relation_id": relation.id,
                    "contact_id": relation.contact_id,
                    "grantee_organization_id": relation.grantee_organization_id,
                    "end_date": {"before": relation.end_date, "after": end} if end != relation.end_date else None,
                    "subjects_added": added,
                },
            )
            result = UpdateRelationResult(relation.id, end.isoformat(), len(added))
            return WriteOutcome(result, audit, changed=[changed])

        return run_write(
            deps, "update_relation", request, request.request_id, body, UpdateRelationResult, actor_id=request.actor_id
        )


def _refuse_past_end(new_end: date, today: date) -> None:
    if new_end < today:
        raise InvalidArgument.field(
            "end_date", f"must not be before today ({today.isoformat()}); to end it now, remove it"
        )


def _managed_by(relation: Relation, organization_id: str) -> bool:
    """The relations an organization's form may change: its own contacts', the authorizations it
    gave other organizations, and the delegations it gave its staff."""
    if relation.kind is RelationKind.DELEGATION:
        return relation.via_organization_id == organization_id
    return relation.organization_id == organization_id


def _check_subjects(deps: Deps, relation: Relation, added: dict[str, Right], now: datetime) -> None:
    problem = management_subject_problem(relation.kind, added)
    if problem is not None:
        raise InvalidArgument.field("add_subjects", problem)
    # More than the organization holds there, on a delegation, is refused by the write envelope's
    # rules (DELEGATION_EXCEEDS), with what it holds.
