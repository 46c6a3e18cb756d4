"""ListProfiles: "Sélectionnez un profil", the profiles a linked account may act under."""

from __future__ import annotations

from dataclasses import dataclass

from authz.commands.accounts import bind_read_to_account
from authz.commands.base import Deps
from authz.commands.contacts import chain_active
from authz.domain.model import MANAGEMENT_SUBJECT, RelationKind, Right, Role

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
    can_manage: bool = False  # holds write on `relations` there now: "Profil concerné" of the management forms


class ListProfiles:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def execute(self, request: ListProfilesRequest) -> list[Profile]:
        # One profile per contact and organization: two relations to the same place (the same
        # delegation given twice, a contact relation and a delegation) are one choice on the screen.
        # The contact's own relation stands for it when there is one, else the first by id.
        profiles: dict[tuple[str, str], Profile] = {}
        engine = self.deps.engine
        with self.deps.store.transaction() as tx:
            bind_read_to_account(tx, account=request.account_id)
            now = self.deps.clock()
            names: dict[str, str] = {}
            for contact_id in tx.linked_contacts(request.account_id):
                relations = sorted(
                    tx.find_relations(contact_id=contact_id),
                    key=lambda r: (r.kind is not RelationKind.CONTACT, r.id),
                )
                for relation in relations:
                    # "Actif" follows the whole chain: a delegation the checks no longer honour is no profile.
                    if relation.kind is RelationKind.ORGANIZATION or not chain_active(self.deps, relation, now):
                        continue
                    if (contact_id, relation.organization_id) in profiles:
                        continue
                    if relation.organization_id not in names:
                        organization = tx.get_organization(relation.organization_id)
                        names[relation.organization_id] = organization.name if organization else ""
                    profiles[(contact_id, relation.organization_id)] = Profile(
                        contact_id,
                        relation.organization_id,
                        names[relation.organization_id],
                        relation.role,
                        relation.id,
                        engine.check(
                            contact_id, relation.organization_id, MANAGEMENT_SUBJECT, Right.WRITE, now.timestamp()
                        ),
                    )
        return list(profiles.values())
