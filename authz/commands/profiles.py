"""ListProfiles: "Sélectionnez un profil", the profiles a linked account may act under."""

from __future__ import annotations

from dataclasses import dataclass

from authz.commands.accounts import bind_read_to_account
from authz.commands.base import Deps
from authz.commands.contacts import chain_active
from authz.domain.model import RelationKind, Role

__all__ = ["ListProfiles", "ListProfilesRequest", "Profile"]


@dataclass(frozen=True)
class ListProfilesRequest:
    account_id: str


@dataclass(frozen=True)
class Profile:
    contact_id: str
    organization_id: str
    organization_name: str
    role: Role | None
    relation_id: str


class ListProfiles:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def execute(self, request: ListProfilesRequest) -> list[Profile]:
        profiles: list[Profile] = []
        with self.deps.store.transaction() as tx:
            bind_read_to_account(tx, account=request.account_id)
            now = self.deps.clock()
            names: dict[str, str] = {}
            for contact_id in tx.linked_contacts(request.account_id):
                for relation in tx.find_relations(contact_id=contact_id):
                    # "Actif" follows the whole chain: a delegation the checks no longer honour is no profile.
                    if relation.kind is RelationKind.ORGANIZATION or not chain_active(self.deps, relation, now):
                        continue
                    if relation.organization_id not in names:
                        organization = tx.get_organization(relation.organization_id)
                        names[relation.organization_id] = organization.name if organization else ""
                    profiles.append(
                        Profile(
                            contact_id,
                            relation.organization_id,
                            names[relation.organization_id],
                            relation.role,
                            relation.id,
                        )
                    )
        return profiles
