"""UpdateContact: "Modifier les informations personnelles et les coordonnées d'un individu
autorisé ou d'un contact".

The fields named by the mask change; the form's one box (`changes_accurate`) is required;
the contact receives an email confirming the change, in their language, queued in the same
transaction (the outbox). "Émettre un nouveau code de liaison" may be ticked in the same
form: a migrated contact without an email gets one, then a code.

The same form changes the contact's relations ("Date de fin", sujets ajoutés: `relation_updates`,
applied as UpdateRelation applies them) and every phone number (`phones`, stored in E.164):
one write, one attestation, one audit entry; any problem refuses the whole form, and every
problem of the request is named at once.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from authz.commands.base import (
    Attestation,
    Deps,
    WriteOutcome,
    relation_in_force,
    require_manager,
    require_organization,
    run_write,
)
from authz.commands.forms import CHANGE_FORM, box_violations, refuse_if_any
from authz.commands.link_codes import issue_code
from authz.commands.persons import PersonChange, require_person_changeable
from authz.commands.update_relation import RelationChange, apply_relation_change, parse_relation_change
from authz.domain.model import Contact, Organization, Relation, RelationKind, Right
from authz.domain.phones import DEFAULT_REGION, MAX_PHONES, PhoneNumber, e164
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

__all__ = [
    "MASK_PATHS",
    "MAX_RELATION_UPDATES",
    "UPDATABLE_FIELDS",
    "RelationUpdate",
    "UpdateContact",
    "UpdateContactRequest",
    "UpdateContactResult",
]

UPDATABLE_FIELDS = ("first_name", "last_name", "email", "language", "phone", "phone_type")
# `phones` replaces every number of the contact (the principal one first).
PHONES_PATH = "phones"
MASK_PATHS = (*UPDATABLE_FIELDS, PHONES_PATH)
# One form shows one contact's relations with one organization: a handful, never thousands.
MAX_RELATION_UPDATES = 50


@dataclass(frozen=True)
class RelationUpdate:
    """One relation's change in the contact's form, as UpdateRelation takes it."""

    relation_id: str
    end_date: str = ""
    add_subjects: tuple[tuple[str, Right], ...] = ()


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
    relation_updates: tuple[RelationUpdate, ...] = ()
    phones: tuple[PhoneNumber, ...] = ()  # as typed: `number` in any form, read in `region`


@dataclass
class UpdateContactResult:
    changed_fields: list[str]
    confirmation_sent: bool = False
    link_code_sent: bool = False
    revision: str = ""
    relations_updated: int = 0


def check_update(request: UpdateContactRequest, violations: Violations | None = None) -> list[PhoneNumber]:
    """The contact fields' input rules, recorded in `violations` (raised here when none is given);
    the phones of `phones`, in E.164."""
    raise_here = violations is None
    violations = violations if violations is not None else Violations()
    if not request.update_mask and not request.issue_link_code and not request.relation_updates:
        violations.add("update_mask", f"name at least one of {', '.join(MASK_PATHS)}, or give relation_updates")
    for index, path in enumerate(request.update_mask):
        if path not in MASK_PATHS:
            violations.add(f"update_mask.paths[{index}]", f"unknown field {path[:64]!r}: one of {MASK_PATHS}")
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
        if request.phone and phone_problem(request.phone) is None:
            violations.check("phone", e164(request.phone)[1])
    if "phone_type" in mask:
        violations.check("phone_type", phone_type_problem(request.phone_type))
    phones: list[PhoneNumber] = []
    if PHONES_PATH in mask:
        if mask & {"phone", "phone_type"}:
            violations.add("update_mask", "name phones, or phone and phone_type, not both")
        if len(request.phones) > MAX_PHONES:
            violations.add("phones", f"at most {MAX_PHONES} numbers")
        seen: set[str] = set()
        for index, phone in enumerate(request.phones[:MAX_PHONES]):
            violations.check(f"phones[{index}].type", phone_type_problem(phone.type))
            number, problem = e164(phone.number, phone.region)
            if problem is not None:
                violations.add(
                    f"phones[{index}].number" if "region" not in problem else f"phones[{index}].region", problem
                )
            elif number in seen:
                violations.add(f"phones[{index}].number", "is listed twice")
            seen.add(number)
            phones.append(PhoneNumber(phone.type, number, (phone.region or DEFAULT_REGION).upper()))
    if raise_here:
        violations.raise_if_any("invalid contact update")
    return phones


def _relation_changes(request: UpdateContactRequest, catalogue: Any, violations: Violations) -> list[RelationChange]:
    if len(request.relation_updates) > MAX_RELATION_UPDATES:
        violations.add("relation_updates", f"at most {MAX_RELATION_UPDATES} relations")
    changes = []
    seen: set[str] = set()
    for index, update in enumerate(request.relation_updates[:MAX_RELATION_UPDATES]):
        prefix = f"relation_updates[{index}]."
        violations.id(f"{prefix}relation_id", update.relation_id)
        if update.relation_id in seen:
            violations.add(f"{prefix}relation_id", "is listed twice")
        seen.add(update.relation_id)
        changes.append(
            parse_relation_change(
                violations, prefix, update.relation_id, update.end_date, update.add_subjects, catalogue
            )
        )
    return changes


class UpdateContact:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def execute(self, request: UpdateContactRequest, found: Violations | None = None) -> UpdateContactResult:
        """`found`: problems the caller's edge already found in the request, refused with these."""
        deps = self.deps
        # Every problem of the form at once: the box, the fields, the phones, the relations.
        violations = Violations()
        boxes = box_violations(request.attestation, CHANGE_FORM, violations)
        phones = check_update(request, violations)
        relation_changes = _relation_changes(request, deps.engine.policy.subjects, violations)
        refuse_if_any(violations, "invalid contact update", found)

        def body(tx: Transaction, now: datetime) -> WriteOutcome:
            organization = require_organization(tx, request.organization_id)
            require_manager(deps, request.actor_id, organization.id, now)
            # Rule 15: only a person active here by this organization's own relation; an account's email is its own.
            before = require_person_changeable(tx, organization.id, request.contact_id, _person_change(request), now)
            fields = {path: getattr(request, path) for path in request.update_mask if path in UPDATABLE_FIELDS}
            if fields.get("phone"):
                fields["phone"] = e164(fields["phone"])[0]  # checked above: stored as E.164
            stored_phones = tx.contact_phones(before.id)
            phones_before = stored_phones or _legacy_phones(before)
            phones_after = phones_before
            if PHONES_PATH in request.update_mask:
                phones_after = phones
                principal = phones[0] if phones else PhoneNumber("", "")
                fields.update(phone=principal.number, phone_type=principal.type)
            after = dataclasses.replace(before, **fields)
            moved = (after.phone, after.phone_type) != (before.phone, before.phone_type)
            if PHONES_PATH not in request.update_mask and stored_phones and moved:
                # The principal number changed alone: the list follows it.
                first = [PhoneNumber(after.phone_type, after.phone, "")] if after.phone else []
                phones_after = first + stored_phones[1:]
            changed = [name for name in UPDATABLE_FIELDS if getattr(before, name) != getattr(after, name)]
            if _numbers(phones_after) != _numbers(phones_before):
                changed.append(PHONES_PATH)
                tx.set_contact_phones(before.id, phones_after)
            if changed:
                tx.update_contact(after)
            applied = [
                apply_relation_change(deps, tx, organization.id, change, now, contact_id=before.id)
                for change in relation_changes
            ]
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
                    "before": {name: _value(before, phones_before, name) for name in changed},
                    "after": {name: _value(after, phones_after, name) for name in changed},
                    "link_code_sent": link_code_sent,
                    "relations": [change.audit for change in applied],
                },
            )
            result = UpdateContactResult(changed, bool(confirmations), link_code_sent, relations_updated=len(applied))
            changed_relations: list[Relation] = [change.relation for change in applied]
            return WriteOutcome(result, audit, changed=changed_relations, after_commit=[deps.wake_mailer])

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
        raise FailedPrecondition(
            f"contact {contact.id!r} is not active in {organization_id!r}", reason="CONTACT_INACTIVE"
        )
    if not contact.email:
        raise FailedPrecondition(f"contact {contact.id!r} has no email address to send the code to", reason="NO_EMAIL")


def _legacy_phones(contact: Contact) -> list[PhoneNumber]:
    """A contact whose numbers were never listed: its one principal number, as stored."""
    return [PhoneNumber(contact.phone_type, contact.phone, "")] if contact.phone else []


def _numbers(phones: list[PhoneNumber]) -> list[tuple[str, str]]:
    return [(phone.type, phone.number) for phone in phones]


def _value(contact: Contact, phones: list[PhoneNumber], name: str) -> Any:
    if name == PHONES_PATH:
        return [f"{phone.type}:{phone.number}" if phone.type else phone.number for phone in phones]
    return getattr(contact, name)
