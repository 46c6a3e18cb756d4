"""The domain's nouns: roles, rights, organizations, contacts, relations.

Plain frozen objects; no storage or transport here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime

__all__ = [
    "END_OF_TIME",
    "MANAGEMENT_SUBJECT",
    "WILDCARD_SUBJECT",
    "Contact",
    "Organization",
    "OrganizationKind",
    "Relation",
    "RelationKind",
    "Right",
    "Role",
]

# The guide's default end date: "9999-12-31".
END_OF_TIME = date(9999, 12, 31)
# Write on this subject is the right to manage an organization's relations (docs/DOMAIN.md, rule 2); it
# is never held through another organization.
MANAGEMENT_SUBJECT = "relations"
# A delegation granted with no subject means "all the organization holds there",
# evaluated at check time, never copied.
WILDCARD_SUBJECT = "*"


class Role(enum.Enum):
    """A contact's function in an organization (the guide's "fonction")."""

    DIRIGEANT = "dirigeant"
    REPRESENTANT = "representant"
    MEMBRE_DU_PERSONNEL = "membre_du_personnel"
    PERSONNE_RESPONSABLE = "personne_responsable"
    INDIVIDU_AUTORISE = "individu_autorise"

    @classmethod
    def parse(cls, value: str) -> Role:
        return cls(value)


class Right(enum.IntEnum):
    """Ordered so that a larger right implies the smaller: write implies read."""

    NONE = 0
    READ = 1
    WRITE = 2

    @property
    def code(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str) -> Right:
        right = cls[value.upper()]
        if right is cls.NONE:
            raise KeyError(value)
        return right


class OrganizationKind(enum.Enum):
    ASSOCIATION = "association"
    LOCAL = "local"
    ESTABLISHMENT = "establishment"
    EMPLOYER = "employer"
    INDIVIDUAL = "individual"


class RelationKind(enum.Enum):
    CONTACT = "contact"  # a contact's relation with an organization
    ORGANIZATION = "organization"  # an organization authorizing another on its subjects
    DELEGATION = "delegation"  # an organization's rights on another, given to one of its staff


@dataclass(frozen=True, slots=True)
class Organization:
    id: str
    name: str
    kind: OrganizationKind


@dataclass(frozen=True, slots=True)
class Contact:
    id: str
    first_name: str
    last_name: str
    email: str
    language: str = "fr"
    phone: str = ""
    phone_type: str = ""  # the principal number's type ("cellulaire", "domicile", "travail"), when given

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


@dataclass(frozen=True, slots=True)
class Relation:
    """One dated relation, of any of the three kinds.

    `organization_id` is always the organization the rights are *on*: the contact's
    organization, the grantor of an organization-to-organization authorization, or the
    target of a delegation. `subjects` holds the grants still in force on the relation.
    `ended_at` is set when the relation was removed: it stops counting at that instant,
    whatever its end date said, and stays in the store as history.
    """

    id: str
    kind: RelationKind
    organization_id: str
    start_date: date
    end_date: date
    contact_id: str | None = None
    grantee_organization_id: str | None = None
    via_organization_id: str | None = None
    role: Role | None = None
    subjects: dict[str, Right] = field(default_factory=dict)
    ended_at: datetime | None = None

    @property
    def holder_id(self) -> str:
        """The contact or organization that holds the rights."""
        holder = self.contact_id if self.kind is not RelationKind.ORGANIZATION else self.grantee_organization_id
        assert holder is not None
        return holder
