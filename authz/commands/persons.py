"""Who may change what of a person (rule 15): one person, several organizations.

A contact is one person, who may have relations with several organizations. Every call
that changes a person's details or sends them a link code asks this module first, so the
rule lives in one place:

- a manager changes a person only while that person is active in the manager's own
  organization by a relation *of that organization* (not through a delegation it receives,
  not once the relation has ended);
- the email of a person who has linked an account is theirs: no manager changes it;
- while no account is linked, a manager may enter or correct it only if the person is
  active in no other organization (else another organization's codes would go where this
  one says);
- a refused change says why (a stable reason), never "not found", for a person the
  organization sees in its lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from authz.commands.base import relation_in_force
from authz.commands.contacts import relations_shown_to
from authz.domain.model import Contact, Relation, RelationKind
from authz.errors import FailedPrecondition, NotFound, PermissionDenied
from authz.store.interface import Transaction

__all__ = [
    "EMAIL_OWNED_BY_ACCOUNT",
    "PERSON_ACTIVE_ELSEWHERE",
    "PERSON_NOT_ACTIVE_HERE",
    "PersonChange",
    "require_person_changeable",
]

PERSON_NOT_ACTIVE_HERE = "PERSON_NOT_ACTIVE_HERE"
EMAIL_OWNED_BY_ACCOUNT = "EMAIL_OWNED_BY_ACCOUNT"
PERSON_ACTIVE_ELSEWHERE = "PERSON_ACTIVE_ELSEWHERE"


@dataclass(frozen=True, slots=True)
class PersonChange:
    """What a call is about to do to a person."""

    details: bool = False  # any detail (names, language, phones, email)
    email: str | None = None  # the new email address, when the call sets one
    link_code: bool = False  # a link code is sent to the person


def _own_relation_in_force(relation: Relation, organization_id: str, now: datetime) -> bool:
    return (
        relation.kind is RelationKind.CONTACT
        and relation.organization_id == organization_id
        and relation_in_force(relation, now)
    )


def _active_elsewhere(relations: list[Relation], organization_id: str, now: datetime) -> list[str]:
    """Other organizations the person acts on now: their own relations there, or a delegation
    that did not come through this organization."""
    others = set()
    for relation in relations:
        if not relation_in_force(relation, now) or relation.organization_id == organization_id:
            continue
        own = relation.kind is RelationKind.CONTACT
        delegated_by_another = (
            relation.kind is RelationKind.DELEGATION and relation.via_organization_id != organization_id
        )
        if own or delegated_by_another:
            others.add(relation.organization_id)
    return sorted(others)


def require_person_changeable(
    tx: Transaction, organization_id: str, contact_id: str, change: PersonChange, now: datetime
) -> Contact:
    """The person, when `organization_id`'s manager may make `change` to them now; else raise.

    NotFound only for a person the organization has never seen (its lists do not show
    them); every other refusal names its reason. The caller has already checked that the
    actor manages `organization_id`.
    """
    contact = tx.get_contact(contact_id)
    if contact is None or not relations_shown_to(tx, organization_id, contact_id):
        raise NotFound(f"contact {contact_id!r} is not a contact of {organization_id!r}")
    relations = tx.find_relations(contact_id=contact_id)
    if not any(_own_relation_in_force(relation, organization_id, now) for relation in relations):
        raise FailedPrecondition(
            f"contact {contact_id!r} is not active in {organization_id!r} by a relation of its own "
            "(ended, removed, or acting on it only through another organization's delegation): "
            "only an organization the person is active in changes their details or sends them a code",
            reason=PERSON_NOT_ACTIVE_HERE,
        )
    if change.email is not None and change.email != contact.email:
        if tx.accounts_linked_to(contact_id):
            raise PermissionDenied(
                f"contact {contact_id!r} has linked an account: the email address is theirs, "
                "changed only in their account's settings",
                reason=EMAIL_OWNED_BY_ACCOUNT,
            )
        elsewhere = _active_elsewhere(relations, organization_id, now)
        if elsewhere:
            raise PermissionDenied(
                f"contact {contact_id!r} is also active in {len(elsewhere)} other organization(s): "
                "their email address is not one organization's to change",
                reason=PERSON_ACTIVE_ELSEWHERE,
            )
    return contact
