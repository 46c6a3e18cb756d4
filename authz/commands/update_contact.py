"""UpdateContact: "Modifier les informations personnelles et les coordonnées d'un individu
autorisé ou d'un contact".

The fields named by the mask change; the form's one box (`changes_accurate`) is required;
the contact receives an email confirming the change, in their language, queued in the same
transaction (the outbox). "Émettre un nouveau code de liaison" may be ticked in the same
form: a migrated contact without an email gets one, then a code.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from authz.commands.base import (
    Attestation,
    Deps,
    WriteOutcome,
    relation_in_force,
    require_manager,
    require_organization,
    run_write,
)
from authz.commands.forms import CHANGE_FORM, require_boxes
from authz.commands.link_codes import issue_code
from authz.commands.persons import PersonChange, require_person_changeable
from authz.domain.model import Contact, Organization, RelationKind
from authz.domain.validation import (
    LANGUAGES,
    Violations,
    email_problem,
    name_problem,
    phone_problem,
    phone_type_problem,
)
from authz.errors import FailedPrecondition
from authz.mail import render_contact_update_email
from authz.store.interface import AuditRecord, OutboxRow, Transaction

__all__ = ["UPDATABLE_FIELDS", "UpdateContact", "UpdateContactRequest", "UpdateContactResult"]

UPDATABLE_FIELDS = ("first_name", "last_name", "email", "language", "phone", "phone_type")


@dataclass(frozen=True)
class UpdateContactRequest:
    actor_id: str
    organization_id: str
    contact_id: str
    update_mask: tuple[str, ...] = ()
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    language: str = ""
    phone: str = ""
    phone_type: str = ""
    issue_link_code: bool = False
    attestation: Attestation = field(default_factory=Attestation)
    request_id: str = ""


@dataclass
class UpdateContactResult:
    changed_fields: list[str]
    confirmation_sent: bool = False
    link_code_sent: bool = False
    revision: str = ""


def check_update(request: UpdateContactRequest) -> None:
    violations = Violations()
    if not request.update_mask and not request.issue_link_code:
        violations.add("update_mask", f"name at least one of {', '.join(UPDATABLE_FIELDS)}")
    for index, path in enumerate(request.update_mask):
        if path not in UPDATABLE_FIELDS:
            violations.add(f"update_mask.paths[{index}]", f"unknown field {path[:64]!r}: one of {UPDATABLE_FIELDS}")
    mask = set(request.update_mask)
    for name in ("first_name", "last_name"):
        if name in mask:
            violations.check(name, name_problem(getattr(request, name)))
    if "email" in mask:
        # The address link codes are sent to: it may be corrected, not removed.
        violations.check("email", email_problem(request.email))
    if "language" in mask and request.language not in LANGUAGES:
        violations.add("language", 'must be "fr" or "en"')
    if "phone" in mask:
        violations.check("phone", phone_problem(request.phone))
    if "phone_type" in mask:
        violations.check("phone_type", phone_type_problem(request.phone_type))
    violations.raise_if_any("invalid contact update")


class UpdateContact:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def execute(self, request: UpdateContactRequest) -> UpdateContactResult:
        boxes = require_boxes(request.attestation, CHANGE_FORM)
        check_update(request)
        deps = self.deps

        def body(tx: Transaction, now: datetime) -> WriteOutcome:
            organization = require_organization(tx, request.organization_id)
            require_manager(deps, request.actor_id, organization.id, now)
            before = require_person_changeable(tx, organization.id, request.contact_id, _person_change(request), now)
            after = dataclasses.replace(before, **{path: getattr(request, path) for path in request.update_mask})
            changed = [name for name in UPDATABLE_FIELDS if getattr(before, name) != getattr(after, name)]
            if changed:
                tx.update_contact(after)
            confirmations = _confirm(tx, organization, before, after, changed, now) if changed else 0
            link_code_sent = False
            if request.issue_link_code:
                _require_code_possible(tx, organization.id, after, now)
                issue_code(deps, tx, after, organization, request.actor_id, now)
                link_code_sent = True
            audit = AuditRecord(
                at=now,
                actor_id=request.actor_id,
                action="update_contact",
                organization_id=organization.id,
                request_id=request.request_id or None,
                attestation=boxes,
                changes={
                    "contact_id": before.id,
                    "changed_fields": changed,
                    "before": {name: getattr(before, name) for name in changed},
                    "after": {name: getattr(after, name) for name in changed},
                    "link_code_sent": link_code_sent,
                },
            )
            result = UpdateContactResult(changed, bool(confirmations), link_code_sent)
            return WriteOutcome(result, audit, after_commit=[deps.wake_mailer])

        return run_write(
            deps, "update_contact", request, request.request_id, body, UpdateContactResult, actor_id=request.actor_id
        )


def _confirm(
    tx: Transaction, organization: Organization, before: Contact, after: Contact, changed: list[str], now: datetime
) -> int:
    """Queue the confirmation: to the address now on file, and to the former one when it changed."""
    email = render_contact_update_email(
        first_name=after.first_name,
        last_name=after.last_name,
        language=after.language,
        organization_name=organization.name,
        changed_fields=changed,
    )
    recipients = [address for address in dict.fromkeys((after.email, before.email)) if address]
    for recipient in recipients:
        tx.enqueue_mail(OutboxRow(uuid.uuid4().hex, recipient, email.subject, email.body), now)
    return len(recipients)


def _person_change(request: UpdateContactRequest) -> PersonChange:
    """What this form does to the person, for the rule on who may change whom."""
    return PersonChange(
        details=bool(request.update_mask),
        email=request.email if "email" in request.update_mask else None,
        link_code=request.issue_link_code,
    )


def _require_code_possible(tx: Transaction, organization_id: str, contact: Contact, now: datetime) -> None:
    relations = [
        r
        for r in tx.find_relations(organization_id=organization_id, contact_id=contact.id)
        if r.kind is RelationKind.CONTACT
    ]
    if not any(relation_in_force(relation, now) for relation in relations):
        raise FailedPrecondition(f"contact {contact.id!r} is not active in {organization_id!r}")
    if not contact.email:
        raise FailedPrecondition(f"contact {contact.id!r} has no email address to send the code to")
