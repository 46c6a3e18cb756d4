"""ListAuthorizations: "Autorisations", the effective rights each relation gives.

Rows are computed by the engine the checks use, so CheckAccess and this list agree.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from authz.commands.accounts import bind_read_to_account
from authz.commands.base import Deps, displayed_end, relation_in_force, require_organization, require_reader
from authz.commands.listing import paged_rows
from authz.commands.paging import page_size, page_token_key
from authz.domain.dates import local_date
from authz.domain.model import WILDCARD_SUBJECT, Relation, RelationKind, Right, Role
from authz.store.interface import Transaction

__all__ = [
    "AuthorizationRow",
    "ListAuthorizations",
    "ListAuthorizationsRequest",
    "ListAuthorizationsResult",
    "Origin",
    "managed_by",
]


class Origin(enum.Enum):
    """Why a row is there: what a person may do about it differs."""

    GRANTED = "granted"  # granted explicitly on a contact's relation
    ROLE_DEFAULT = "role_default"  # held by the role: goes only with the relation
    ORGANIZATION = "organization"  # an organization-to-organization authorization
    DELEGATED = "delegated"  # given to a contact through another organization


def managed_by(relation: Relation, organization_id: str) -> bool:
    """The relations an organization's forms may change: its own contacts', the authorizations it
    gave other organizations, and the delegations it gave its staff."""
    if relation.kind is RelationKind.DELEGATION:
        return relation.via_organization_id == organization_id
    return relation.organization_id == organization_id


@dataclass(frozen=True)
class ListAuthorizationsRequest:
    actor_id: str
    organization_id: str
    contact_id: str = ""
    page_size: int = 0
    page_token: str = ""


@dataclass(frozen=True)
class AuthorizationRow:
    subject: str
    right: Right
    organization_id: str
    contact_id: str
    role: Role | None
    active: bool
    relation_id: str
    grantee_organization_id: str
    via_organization_id: str
    organization_name: str = ""
    contact_name: str = ""
    start_date: str = ""
    end_date: str = ""
    origin: Origin = Origin.GRANTED
    removable: bool = False


@dataclass
class ListAuthorizationsResult:
    authorizations: list[AuthorizationRow]
    next_page_token: str


class ListAuthorizations:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def execute(self, request: ListAuthorizationsRequest) -> ListAuthorizationsResult:
        deps = self.deps
        size = page_size(request.page_size, deps.settings.default_page_size, deps.settings.max_page_size)
        with deps.store.transaction() as tx:
            bind_read_to_account(tx, actor_id=request.actor_id)
            now = deps.clock()
            organization = require_organization(tx, request.organization_id)
            require_reader(deps, request.actor_id, organization.id, now)
            engine = deps.engine
            retired = engine.policy.retired  # grants kept as history, shown nowhere
            names: dict[str, str] = {}

            def organization_name(organization_id: str) -> str:
                if organization_id not in names:
                    found = tx.get_organization(organization_id)
                    names[organization_id] = found.name if found else ""
                return names[organization_id]

            contact_names: dict[str, str] = {}

            def contact_name(contact_id: str | None) -> str:
                if not contact_id:
                    return ""
                if contact_id not in contact_names:
                    found = tx.get_contact(contact_id)
                    contact_names[contact_id] = found.display_name if found else ""
                return contact_names[contact_id]

            def rows_of(relation: Relation) -> list[AuthorizationRow]:
                active = relation_in_force(relation, now)
                if active:
                    grants = engine.effective_grants(relation, now)
                    # A delegation whose chain is broken shows what it delegates, inactive.
                    if not grants and relation.kind is RelationKind.DELEGATION:
                        active, grants = False, _inactive_delegation(tx, relation)
                elif relation.kind is RelationKind.DELEGATION:
                    grants = _inactive_delegation(tx, relation)
                else:
                    grants = dict(relation.subjects)
                    if relation.kind is RelationKind.CONTACT and relation.role is not None:
                        for subject, right in engine.policy.role_defaults.get(relation.role, {}).items():
                            grants[subject] = max(grants.get(subject, Right.NONE), right)
                defaults: Mapping[str, Right] = (
                    engine.policy.role_defaults.get(relation.role, {})
                    if relation.kind is RelationKind.CONTACT and relation.role is not None
                    else {}
                )
                # A row can be removed alone when this organization's form may change the relation,
                # the relation is not over, and the subject is granted on it (not by the role, nor
                # by a delegation of everything).
                changeable = managed_by(relation, organization.id) and _not_over(relation, now)
                end = displayed_end(relation).isoformat()
                return [
                    AuthorizationRow(
                        subject=subject,
                        right=right,
                        organization_id=relation.organization_id,
                        contact_id=relation.contact_id or "",
                        role=relation.role,
                        active=active,
                        relation_id=relation.id,
                        grantee_organization_id=relation.grantee_organization_id or "",
                        via_organization_id=relation.via_organization_id or "",
                        organization_name=organization_name(relation.organization_id),
                        contact_name=contact_name(relation.contact_id),
                        start_date=relation.start_date.isoformat(),
                        end_date=end,
                        origin=_origin(relation, subject, defaults),
                        removable=changeable
                        and subject in relation.subjects
                        and _origin(relation, subject, defaults) is not Origin.ROLE_DEFAULT,
                    )
                    for subject, right in sorted(grants.items())
                    # Every subject shown is a catalogue code: a delegation of everything is expanded above.
                    if subject != WILDCARD_SUBJECT and subject not in retired
                ]

            rows, token = paged_rows(
                tx,
                organization.id,
                # "Les sujets autorisés pour votre organisation s'affichent d'abord."
                groups=[(RelationKind.ORGANIZATION,), (RelationKind.CONTACT, RelationKind.DELEGATION)],
                contact_id=request.contact_id or None,
                token=request.page_token,
                size=size,
                rows_of=rows_of,
                key=page_token_key(deps),
            )
        return ListAuthorizationsResult(rows, token)


def _origin(relation: Relation, subject: str, defaults: Mapping[str, Right]) -> Origin:
    if relation.kind is RelationKind.ORGANIZATION:
        return Origin.ORGANIZATION
    if relation.kind is RelationKind.DELEGATION:
        return Origin.DELEGATED
    # The role giving as much as the grant: removing the grant would leave the row as it is.
    granted = relation.subjects.get(subject, Right.NONE)
    return Origin.GRANTED if granted > defaults.get(subject, Right.NONE) else Origin.ROLE_DEFAULT


def _not_over(relation: Relation, now: datetime) -> bool:
    return relation.ended_at is None and relation.end_date >= local_date(now)


def _inactive_delegation(tx: Transaction, relation: Relation) -> dict[str, Right]:
    """What a delegation not in force shows: its subjects, a delegation of everything expanded into
    what the organizations' authorizations between its two ends give (whatever their dates)."""
    grants = {s: r for s, r in relation.subjects.items() if s != WILDCARD_SUBJECT}
    if WILDCARD_SUBJECT in relation.subjects:
        for authorization in tx.find_relations(
            organization_id=relation.organization_id, grantee_organization_id=relation.via_organization_id
        ):
            if authorization.kind is RelationKind.ORGANIZATION and authorization.ended_at is None:
                for subject, right in authorization.subjects.items():
                    grants[subject] = max(grants.get(subject, Right.NONE), right)
    return grants
