"""RevokeRelation: "Retirer une relation ou des sujets autorisés à un contact" (rule 6).

Removal ends things, it never erases them: a relation gets `ended_at`, a subject gets
`removed_at`, and both stay in the store as history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from authz.commands.base import (
    Attestation,
    Deps,
    WriteOutcome,
    require_manager,
    require_organization,
    run_write,
)
from authz.commands.forms import CHANGE_FORM, box_violations, refuse_if_any
from authz.domain.model import Relation, RelationKind
from authz.domain.validation import Violations
from authz.errors import FailedPrecondition, NotFound
from authz.store.interface import AuditRecord, Transaction

__all__ = ["RevokeRelation", "RevokeRelationRequest", "RevokeRelationResult"]


@dataclass(frozen=True)
class RevokeRelationRequest:
    actor_id: str
    organization_id: str
    contact_id: str = ""
    grantee_organization_id: str = ""
    all_relations: bool = False
    relation_ids: tuple[str, ...] = ()
    subjects_relation_id: str = ""
    subjects: tuple[str, ...] = ()
    attestation: Attestation = field(default_factory=Attestation)
    request_id: str = ""

    @property
    def scope(self) -> str:
        if self.all_relations:
            return "all_relations"
        if self.relation_ids:
            return "relations"
        if self.subjects_relation_id:
            return "subjects"
        return ""


@dataclass
class RevokeRelationResult:
    relations_ended: int = 0
    subjects_removed: int = 0
    revision: str = ""


class RevokeRelation:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def execute(self, request: RevokeRelationRequest, found: Violations | None = None) -> RevokeRelationResult:
        """`found`: problems the caller's edge already found in the request, refused with these."""
        # Every problem the request shows by itself, at once.
        violations = Violations()
        boxes = box_violations(request.attestation, CHANGE_FORM, violations)  # the removal form's one box (rule 9)
        edge = found if found is not None else Violations()
        grantee_reported = edge.reported("grantee", "contact_id", "grantee_organization_id")
        if bool(request.contact_id) == bool(request.grantee_organization_id) and not grantee_reported:
            violations.add("grantee", "exactly one of contact_id, grantee_organization_id")
        if not request.scope and not edge.reported("scope", "all_relations"):
            violations.add("scope", "choose all_relations, relations or subjects")
        if request.scope == "subjects":
            policy = self.deps.engine.policy
            # A retired subject is still known: its grants stay in the store as history and may be removed.
            for i, s in enumerate(request.subjects):
                if s not in policy.subjects and s not in policy.retired:
                    violations.add(f"subjects.subjects[{i}]", f"unknown subject {s!r}")
            if not request.subjects:
                violations.add("subjects.subjects", "name at least one subject to remove")
        refuse_if_any(violations, "invalid removal", found)
        return run_write(
            self.deps,
            "revoke_relation",
            request,
            request.request_id,
            self._body(request, boxes),
            RevokeRelationResult,
            actor_id=request.actor_id,
        )

    @staticmethod
    def _owns(request: RevokeRelationRequest, relation: Relation) -> bool:
        """Whether this organization's form may remove `relation` of the grantee (as `_owned` finds them)."""
        organization_id = request.organization_id
        if request.grantee_organization_id:
            return (
                relation.kind is RelationKind.ORGANIZATION
                and relation.organization_id == organization_id
                and relation.grantee_organization_id == request.grantee_organization_id
            )
        if relation.contact_id != request.contact_id or relation.kind is RelationKind.ORGANIZATION:
            return False
        return relation.organization_id == organization_id or (
            relation.kind is RelationKind.DELEGATION and relation.via_organization_id == organization_id
        )

    def _named(self, tx: Transaction, request: RevokeRelationRequest) -> dict[str, Relation]:
        """The relations the request names, read by id: what the grantee ended long ago is not read."""
        ids = request.relation_ids if request.scope == "relations" else (request.subjects_relation_id,)
        found = {relation_id: tx.get_relation(relation_id) for relation_id in dict.fromkeys(ids)}
        named = {rid: r for rid, r in found.items() if r is not None and self._owns(request, r)}
        if len(named) < len(found) and not self._owned(tx, request):
            # The grantee has nothing here at all: say so, as the all-relations scope does.
            grantee = request.contact_id or request.grantee_organization_id
            raise NotFound(f"{grantee!r} has no relation with {request.organization_id!r}")
        return named

    def _owned(
        self, tx: Transaction, request: RevokeRelationRequest, open_at: datetime | None = None
    ) -> list[Relation]:
        """Every relation of the grantee that this organization's form may remove; with `open_at`,
        only those not removed by then (the ones a removal still changes)."""
        organization_id = request.organization_id
        if open_at is not None:
            if request.grantee_organization_id:
                candidates = tx.find_open_relations(
                    open_at, organization_id=organization_id, grantee_organization_ids=[request.grantee_organization_id]
                )
            else:
                candidates = tx.find_open_relations(
                    open_at, organization_id=organization_id, contact_ids=[request.contact_id]
                ) + tx.find_open_relations(
                    open_at, via_organization_id=organization_id, contact_ids=[request.contact_id]
                )
            return [r for r in dict((r.id, r) for r in candidates).values() if self._owns(request, r)]
        if request.grantee_organization_id:
            return [
                r
                for r in tx.find_relations(
                    organization_id=organization_id, grantee_organization_id=request.grantee_organization_id
                )
                if r.kind is RelationKind.ORGANIZATION
            ]
        mine = tx.find_relations(organization_id=organization_id, contact_id=request.contact_id)
        # Delegations the contact holds through this organization go with its relations (the guide:
        # "y compris celles de vos clients").
        through = tx.find_relations(via_organization_id=organization_id, contact_id=request.contact_id)
        return [r for r in mine if r.kind is not RelationKind.ORGANIZATION] + [
            r for r in through if r.kind is RelationKind.DELEGATION
        ]

    def _body(
        self, request: RevokeRelationRequest, boxes: dict[str, bool]
    ) -> Callable[[Transaction, datetime], WriteOutcome]:
        deps = self.deps

        def body(tx: Transaction, now: datetime) -> WriteOutcome:
            organization = require_organization(tx, request.organization_id)
            require_manager(deps, request.actor_id, organization.id, now)
            grantee = request.contact_id or request.grantee_organization_id
            if request.scope == "all_relations":
                # What is in force, not the grantee's whole history: ending an ended relation changes nothing.
                owned = {relation.id: relation for relation in self._owned(tx, request, open_at=now)}
                if not owned and not self._owned(tx, request):
                    raise NotFound(f"{grantee!r} has no relation with {organization.id!r}", reason="RELATION_NOT_FOUND")
            else:
                owned = self._named(tx, request)
            ended: list[str] = []
            removed: list[str] = []
            touched: list[str] = []
            if request.scope == "all_relations":
                for relation in owned.values():
                    if tx.end_relation(relation.id, now):
                        ended.append(relation.id)
                touched = ended
            elif request.scope == "relations":
                for index, relation_id in enumerate(request.relation_ids):
                    if relation_id not in owned:
                        raise NotFound(
                            f"relations.relation_ids[{index}]: relation {relation_id!r} not found for {grantee!r}",
                            reason="RELATION_NOT_FOUND",
                        )
                for relation_id in dict.fromkeys(request.relation_ids):
                    if tx.end_relation(relation_id, now):
                        ended.append(relation_id)
                touched = ended
            else:
                target = owned.get(request.subjects_relation_id)
                if target is None:
                    raise NotFound(
                        f"relation {request.subjects_relation_id!r} not found for {grantee!r}",
                        reason="RELATION_NOT_FOUND",
                    )
                defaults = (
                    deps.engine.policy.role_defaults.get(target.role, {})
                    if target.role is not None and target.kind is RelationKind.CONTACT
                    else {}
                )
                for subject in dict.fromkeys(request.subjects):
                    if subject not in target.subjects and subject in defaults:
                        # Listed under the relation, but held by its role: removing it means changing the role.
                        raise FailedPrecondition(
                            f"subject {subject!r} comes with the role {target.role.value if target.role else ''} "
                            f"of relation {target.id!r}: it cannot be removed alone; end the relation to take it away",
                            reason="ROLE_DEFAULT_SUBJECT",
                        )
                    if subject not in target.subjects:
                        raise NotFound(
                            f"subject {subject!r} is not granted on relation {target.id!r}",
                            reason="SUBJECT_NOT_GRANTED",
                        )
                if tx.remove_subjects(target.id, list(dict.fromkeys(request.subjects)), now):
                    removed = list(dict.fromkeys(request.subjects))
                touched = [target.id]
            # The write envelope keeps rule 2 on these: the last manager can neither leave nor be removed.
            changed = [r for r in (tx.get_relation(relation_id) for relation_id in touched) if r is not None]
            audit = AuditRecord(
                at=now,
                actor_id=request.actor_id,
                action="revoke_relation",
                organization_id=organization.id,
                request_id=request.request_id or None,
                attestation=boxes,
                changes={
                    "scope": request.scope,
                    "contact_id": request.contact_id or None,
                    "grantee_organization_id": request.grantee_organization_id or None,
                    "relations_ended": ended,
                    "relation_id": request.subjects_relation_id or None,
                    "subjects_removed": removed,
                },
            )
            return WriteOutcome(RevokeRelationResult(len(ended), len(removed)), audit, changed=changed)

        return body
