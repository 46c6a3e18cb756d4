"""ListAuthorizations: "Autorisations", the effective rights each relation gives.

Rows are computed by the engine the checks use, so CheckAccess and this list agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from authz.commands.accounts import bind_read_to_account
from authz.commands.base import Deps, relation_in_force, require_organization, require_reader
from authz.commands.listing import paged_rows
from authz.commands.paging import page_size, page_token_key
from authz.domain.model import WILDCARD_SUBJECT, Relation, RelationKind, Right, Role

__all__ = ["AuthorizationRow", "ListAuthorizations", "ListAuthorizationsRequest", "ListAuthorizationsResult"]


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

            def rows_of(relation: Relation) -> list[AuthorizationRow]:
                active = relation_in_force(relation, now)
                if active:
                    grants = engine.effective_grants(relation, now)
                    # A delegation whose chain is broken shows what it delegates, inactive.
                    if not grants and relation.kind is RelationKind.DELEGATION:
                        active, grants = False, dict(relation.subjects)
                else:
                    grants = dict(relation.subjects)
                    if relation.kind is RelationKind.CONTACT and relation.role is not None:
                        for subject, right in engine.policy.role_defaults.get(relation.role, {}).items():
                            grants[subject] = max(grants.get(subject, Right.NONE), right)
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
                    )
                    for subject, right in sorted(grants.items())
                    if (subject != WILDCARD_SUBJECT or not active) and subject not in retired
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
