"""GrantRelation: "Ajouter une relation ou des sujets autorisés à un contact".

One form, four outcomes, chosen by who receives the relation and on which organization:
a relation for an existing contact, for a new contact (created, then sent a link code),
an organization-to-organization authorization, or a delegation to a staff member.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

from authz.commands.base import (
    Attestation,
    Deps,
    WriteOutcome,
    parse_window,
    relation_in_force,
    require_manager,
    require_organization,
    run_write,
)
from authz.commands.contacts import is_own_contact
from authz.commands.forms import ADD_FORM, box_violations, refuse_if_any
from authz.commands.link_codes import issue_code
from authz.commands.migration_issues import relation_match_key
from authz.domain.dates import local_date
from authz.domain.model import END_OF_TIME, WILDCARD_SUBJECT, Contact, Relation, RelationKind, Right, Role
from authz.domain.phones import e164
from authz.domain.validation import (
    MANAGEMENT_SUBJECT,
    Violations,
    email_problem,
    language_problem,
    management_subject_problem,
    name_problem,
    phone_problem,
    self_authorization_problem,
)
from authz.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from authz.store.interface import AuditRecord, Transaction

__all__ = ["GrantRelation", "GrantRelationRequest", "GrantRelationResult", "NewContactData"]


@dataclass(frozen=True)
class NewContactData:
    first_name: str
    last_name: str
    email: str
    language: str = "fr"
    phone: str = ""
    # A contact of the organization already has this email: create anyway (the form's confirmation).
    create_anyway: bool = False


@dataclass(frozen=True)
class GrantRelationRequest:
    actor_id: str
    organization_id: str
    contact_id: str = ""
    new_contact: NewContactData | None = None
    grantee_organization_id: str = ""
    target_organization_id: str = ""
    role: Role | None = None
    start_date: str = ""
    end_date: str = ""
    subjects: tuple[tuple[str, Right], ...] = ()
    attestation: Attestation = field(default_factory=Attestation)
    request_id: str = ""


@dataclass
class GrantRelationResult:
    relation_id: str
    contact_id: str = ""
    link_code_sent: bool = False
    revision: str = ""


class GrantRelation:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def execute(self, request: GrantRelationRequest, found: Violations | None = None) -> GrantRelationResult:
        """`found`: problems the caller's edge already found in the request, refused with these."""
        # Every problem the request shows by itself, at once: the boxes, the grantee, the subjects,
        # the dates (checked again in the write, against its own today).
        violations = Violations()
        boxes = box_violations(request.attestation, ADD_FORM, violations)
        grantees = sum(bool(x) for x in (request.contact_id, request.new_contact, request.grantee_organization_id))
        edge = found if found is not None else Violations()
        if grantees != 1 and not edge.reported("grantee", "contact_id", "grantee_organization_id"):
            violations.add("grantee", "exactly one of contact_id, new_contact, grantee_organization_id")
        subjects = violations.subjects(request.subjects, self.deps.engine.policy.subjects)
        _refuse_management_through_organizations(request, violations)
        if request.new_contact is not None:
            _check_new_contact(request.new_contact, violations)
        if request.role is not None and request.target_organization_id not in ("", request.organization_id):
            # Rule 14: the form asks for another organization, not a role; a role would show the
            # employer a fonction the person does not hold there.
            violations.add("role", "a delegation carries no role of its own: leave it unset")
        # The dates as far as they can be judged without the store, before the write lock; the
        # body judges them again at the write's own instant.
        today = local_date(self.deps.clock())
        violations.window(request.start_date, request.end_date, today=today, end_of_time=END_OF_TIME, earliest=today)
        if request.grantee_organization_id:
            if request.target_organization_id and request.target_organization_id != request.organization_id:
                violations.add("target_organization_id", "must be empty for an organization grantee")
            violations.check(
                "grantee_organization_id",
                self_authorization_problem(request.organization_id, request.grantee_organization_id),
            )
            if not request.subjects:
                violations.add("subjects", "name at least one subject to authorize")
        refuse_if_any(violations, "invalid grant", found)
        return run_write(
            self.deps,
            "grant_relation",
            request,
            request.request_id,
            self._body(request, subjects, boxes),
            GrantRelationResult,
            actor_id=request.actor_id,
        )

    def _body(
        self, request: GrantRelationRequest, subjects: dict[str, Right], boxes: dict[str, bool]
    ) -> Callable[[Transaction, datetime], WriteOutcome]:
        deps = self.deps

        def body(tx: Transaction, now: datetime) -> WriteOutcome:
            organization = require_organization(tx, request.organization_id)
            require_manager(deps, request.actor_id, organization.id, now)
            start, end = parse_window(request.start_date, request.end_date, local_date(now))
            target_id = request.target_organization_id or organization.id
            relation_id = f"R-{uuid.uuid4().hex[:20]}"
            after_commit: list[Callable[[], None]] = []
            link_code_sent = False
            contact_id = ""

            if request.grantee_organization_id:
                # Rule 3: the organization (an employer) authorizes another on some of its subjects.
                if target_id != organization.id:
                    raise InvalidArgument.field("target_organization_id", "must be empty for an organization grantee")
                itself = self_authorization_problem(organization.id, request.grantee_organization_id)
                if itself is not None:
                    raise InvalidArgument.field("grantee_organization_id", itself)
                require_organization(tx, request.grantee_organization_id, "grantee_organization_id")
                if not subjects:
                    raise InvalidArgument.field("subjects", "name at least one subject to authorize")
                relation = Relation(
                    id=relation_id,
                    kind=RelationKind.ORGANIZATION,
                    organization_id=organization.id,
                    grantee_organization_id=request.grantee_organization_id,
                    role=request.role,
                    start_date=start,
                    end_date=end,
                    subjects=subjects,
                )
            elif target_id != organization.id:
                relation = self._delegation(tx, request, subjects, relation_id, target_id, start, end, now)
                contact_id = relation.contact_id or ""
            else:
                if request.role is None:
                    raise InvalidArgument.field("role", "choose the relation to add (a role)")
                if request.new_contact is not None:
                    # Rule 7: "Le contact n'existe pas": create the contact, then send a link code.
                    data = request.new_contact
                    if not data.create_anyway:
                        _refuse_known_email(tx, organization.id, data.email)
                    contact = Contact(
                        id=f"C-{uuid.uuid4().hex[:20]}",
                        first_name=data.first_name,
                        last_name=data.last_name,
                        email=data.email,
                        language=data.language or "fr",
                        phone=e164(data.phone)[0] if data.phone else "",  # checked before the write
                    )
                    tx.add_contact(contact, now)
                else:
                    found = tx.get_contact(request.contact_id)
                    if found is None or not is_own_contact(tx, organization.id, found.id):
                        # "Contact dans ce profil": the organization's own contacts only, so no
                        # manager sends link codes to another organization's people.
                        raise NotFound(
                            f"contact {request.contact_id!r} is not a contact of {organization.id!r}",
                            reason="CONTACT_NOT_FOUND",
                        )
                    contact = found
                contact_id = contact.id
                relation = Relation(
                    id=relation_id,
                    kind=RelationKind.CONTACT,
                    organization_id=organization.id,
                    contact_id=contact.id,
                    role=request.role,
                    start_date=start,
                    end_date=end,
                    subjects=subjects,
                )
            tx.add_relation(relation, now, request.actor_id)
            # A grant that re-creates a row the migration could not establish resolves its issue.
            resolved = tx.resolve_migration_issues_matching(
                organization.id, relation_match_key(relation), now, request.actor_id
            )
            if request.new_contact is not None:
                contact_created = tx.get_contact(contact_id)
                assert contact_created is not None
                issue_code(deps, tx, contact_created, organization, request.actor_id, now)
                link_code_sent = True
                after_commit.append(deps.wake_mailer)
            audit = AuditRecord(
                at=now,
                actor_id=request.actor_id,
                action="grant_relation",
                organization_id=organization.id,
                request_id=request.request_id or None,
                attestation=boxes,
                changes={
                    "relation_id": relation.id,
                    "kind": relation.kind,
                    "on_organization_id": relation.organization_id,
                    "contact_id": relation.contact_id,
                    "new_contact": request.new_contact is not None,
                    "grantee_organization_id": relation.grantee_organization_id,
                    "via_organization_id": relation.via_organization_id,
                    "role": relation.role,
                    "start_date": relation.start_date,
                    "end_date": relation.end_date,
                    "subjects": {subject: right for subject, right in relation.subjects.items()},
                    "link_code_sent": link_code_sent,
                    "migration_issues_resolved": resolved,
                },
            )
            result = GrantRelationResult(relation.id, contact_id, link_code_sent)
            return WriteOutcome(result, audit, changed=[relation], after_commit=after_commit)

        return body

    def _delegation(
        self,
        tx: Transaction,
        request: GrantRelationRequest,
        subjects: dict[str, Right],
        relation_id: str,
        target_id: str,
        start: date,
        end: date,
        now: datetime,
    ) -> Relation:
        """Rule 4: give a staff member of the organization a relation to a file it holds rights on."""
        deps = self.deps
        if request.new_contact is not None:
            raise InvalidArgument.field(
                "new_contact", "a delegation is given to an existing contact of the organization"
            )
        require_organization(tx, target_id, "target_organization_id")
        contact = tx.get_contact(request.contact_id)
        if contact is None:
            raise NotFound(f"contact {request.contact_id!r} not found", reason="CONTACT_NOT_FOUND")
        # What is in force, not the contact's whole history with the organization.
        active = [
            relation
            for relation in tx.find_open_relations(
                now, organization_id=request.organization_id, contact_ids=[contact.id]
            )
            if relation.kind is RelationKind.CONTACT and relation_in_force(relation, now)
        ]
        if not active and not tx.relation_exists(
            RelationKind.CONTACT, organization_id=request.organization_id, contact_id=contact.id
        ):
            raise NotFound(
                f"contact {contact.id!r} is not a contact of {request.organization_id!r}", reason="CONTACT_NOT_FOUND"
            )
        if not active:
            raise FailedPrecondition(
                f"contact {contact.id!r} is not active in {request.organization_id!r}", reason="CONTACT_INACTIVE"
            )
        ts = now.timestamp()
        day = deps.engine.day_of(ts)

        def held(subject: str) -> Right:
            return Right(deps.engine.organization_right(request.organization_id, target_id, subject, day, ts))

        if subjects:
            # More than the organization holds is refused by the write envelope's rules (DELEGATION_EXCEEDS).
            granted = subjects
        else:
            if not any(held(subject) for subject in deps.engine.policy.subjects if subject != MANAGEMENT_SUBJECT):
                raise FailedPrecondition(
                    f"{request.organization_id} holds nothing on {target_id} to delegate", reason="NOTHING_TO_DELEGATE"
                )
            # "All the organization holds there", evaluated at each check, never copied.
            granted = {WILDCARD_SUBJECT: Right.WRITE}
        return Relation(
            id=relation_id,
            kind=RelationKind.DELEGATION,
            organization_id=target_id,
            contact_id=contact.id,
            via_organization_id=request.organization_id,
            start_date=start,
            end_date=end,
            subjects=granted,
        )


def _refuse_known_email(tx: Transaction, organization_id: str, email: str) -> None:
    known = tx.organization_contacts_with_email(organization_id, email)
    if known:
        names = ", ".join(f"{contact.display_name} ({contact.id})" for contact in known)
        raise AlreadyExists(
            f"{email} is already the email of a contact of {organization_id}: {names}; pick that contact, "
            "or set new_contact.create_anyway to create another one",
            reason="EMAIL_ALREADY_KNOWN",
        )


def _check_new_contact(data: NewContactData, violations: Violations) -> None:
    for name in ("first_name", "last_name"):
        violations.check(f"new_contact.{name}", name_problem(getattr(data, name)))
    violations.check("new_contact.email", email_problem(data.email))
    violations.check("new_contact.language", language_problem(data.language))
    violations.check("new_contact.phone", phone_problem(data.phone))
    if data.phone and phone_problem(data.phone) is None:
        violations.check("new_contact.phone", e164(data.phone)[1])


def _refuse_management_through_organizations(request: GrantRelationRequest, violations: Violations) -> None:
    """`relations` is never given to another organization, nor delegated."""
    if request.grantee_organization_id:
        kind = RelationKind.ORGANIZATION
    elif request.target_organization_id and request.target_organization_id != request.organization_id:
        kind = RelationKind.DELEGATION
    else:
        return
    problem = management_subject_problem(kind, [subject for subject, _ in request.subjects])
    if problem is not None:
        index = next(i for i, (subject, _) in enumerate(request.subjects) if subject == MANAGEMENT_SUBJECT)
        violations.add(f"subjects[{index}].subject", problem)
