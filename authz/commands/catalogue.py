"""GetCatalogue: the subjects and roles of the policy folder, with their labels, for the screens.

Read from the policy this process serves (the same the checks use), so a front-end never
hard-codes the catalogue and follows every edit of the policy folder.
"""

from __future__ import annotations

from dataclasses import dataclass

from authz.commands.base import Deps
from authz.domain.model import MANAGEMENT_SUBJECT, Right, Role

__all__ = ["Catalogue", "CatalogueRole", "CatalogueSubject", "GetCatalogue"]


@dataclass(frozen=True)
class CatalogueSubject:
    code: str
    label_fr: str
    label_en: str
    grantable: bool  # may be granted on a contact's relation
    delegable: bool  # may be given to another organization or delegated


@dataclass(frozen=True)
class CatalogueRole:
    role: Role
    label_fr: str
    label_en: str
    defaults: dict[str, Right]


@dataclass(frozen=True)
class Catalogue:
    subjects: list[CatalogueSubject]
    roles: list[CatalogueRole]
    policy_hash: str


class GetCatalogue:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def execute(self) -> Catalogue:
        policy = self.deps.engine.policy
        subjects = [
            # Management is never held through another organization: it is granted, never delegated.
            CatalogueSubject(code, label.label_fr, label.label_en, True, code != MANAGEMENT_SUBJECT)
            for code, label in sorted(policy.subjects.items())
        ]
        roles = []
        for role in Role:
            label = policy.role_label(role)
            roles.append(
                CatalogueRole(
                    role, label.label_fr, label.label_en, dict(sorted(policy.role_defaults.get(role, {}).items()))
                )
            )
        return Catalogue(subjects, roles, policy.content_hash)
