"""Realistic generated data sets, in the import format (docs/IMPORT.md).

The shape follows the guide: organizations (a tenth of them associations, the rest
mostly employers), contacts holding 1 to 3 relations, employers authorizing their
association on some subjects, and a tenth of the relations being delegations from an
association's staff to one of the employers that authorized it. A share of the windows
is in the future or already over, so that dates matter to the decisions.

Deterministic for a given (size, seed): the differential test and the benchmark can
regenerate the same data.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, cast

from authz.domain.model import Role

__all__ = ["CheckCase", "DataSet", "check_cases", "generate"]

SUBJECTS = (
    "acces_aux_donnees",
    "paiements_et_releves",
    "plaintes_cotisations_syndicales",
    "profil",
    "rapport_mensuel",
    "scrutin_syndical",
    "relations",
)
# Management is never held through another organization (docs/DOMAIN.md, rule 2): what an organization
# gives another, or delegates, never includes `relations`.
_SHARED_SUBJECTS = tuple(s for s in SUBJECTS if s != "relations")
_ROLES = (
    (Role.MEMBRE_DU_PERSONNEL.value, 50),
    (Role.REPRESENTANT.value, 15),
    (Role.INDIVIDU_AUTORISE.value, 15),
    (Role.PERSONNE_RESPONSABLE.value, 10),
    (Role.DIRIGEANT.value, 10),
)
_ROLE_NAMES = [name for name, _ in _ROLES]
_ROLE_WEIGHTS = [weight for _, weight in _ROLES]
_RIGHTS = ("read", "write")
_END_OF_TIME = "9999-12-31"


@dataclass(frozen=True, slots=True)
class CheckCase:
    contact_id: str
    organization_id: str
    subject: str
    right: int  # 1 read, 2 write


@dataclass
class DataSet:
    """The import document and what the check generator needs to aim its checks."""

    data: dict[str, Any]
    today: date
    memberships: list[tuple[str, str]] = field(default_factory=list)  # (contact, organization)
    delegated: list[tuple[str, str]] = field(default_factory=list)  # (contact, target organization)
    managers: list[tuple[str, str]] = field(default_factory=list)  # (contact, organization) with write on relations
    organization_ids: list[str] = field(default_factory=list)
    contact_ids: list[str] = field(default_factory=list)

    @property
    def relation_count(self) -> int:
        data = self.data
        return len(data["relations"]) + len(data["organization_relations"]) + len(data["delegations"])


def _window(rng: random.Random, today: date) -> tuple[str, str]:
    """Mostly in force since some years; some over, some future, some ending soon."""
    draw = rng.random()
    if draw < 0.75:
        start = today - timedelta(days=rng.randint(1, 3650))
        return start.isoformat(), _END_OF_TIME
    if draw < 0.85:  # already over
        end = today - timedelta(days=rng.randint(1, 700))
        return (end - timedelta(days=rng.randint(0, 1500))).isoformat(), end.isoformat()
    if draw < 0.95:  # starts later
        start = today + timedelta(days=rng.randint(1, 400))
        return start.isoformat(), _END_OF_TIME
    start = today - timedelta(days=rng.randint(0, 60))  # ends soon: the edges of the window
    return start.isoformat(), (today + timedelta(days=rng.randint(0, 60))).isoformat()


_LEVEL = {"read": 1, "write": 2}


def _subjects(rng: random.Random, low: int, high: int, catalogue: tuple[str, ...] = SUBJECTS) -> list[dict[str, str]]:
    picked = rng.sample(catalogue, rng.randint(low, high))
    return [{"subject": s, "right": rng.choice(_RIGHTS)} for s in picked]


def generate(relations: int, *, seed: int = 1, today: date | None = None) -> DataSet:
    """About `relations` relations over about relations/20 organizations."""
    rng = random.Random(seed)
    today = today or date.today()
    org_count = max(4, relations // 20)
    associations = max(1, org_count // 10)
    organizations = []
    for i in range(org_count):
        kind = "association" if i < associations else rng.choice(("employer", "employer", "employer", "establishment"))
        organizations.append({"id": f"O{i}", "name": f"Organisation {i}", "kind": kind})
    association_ids = [f"O{i}" for i in range(associations)]
    employer_ids = [f"O{i}" for i in range(associations, org_count)] or association_ids

    target_org_relations = max(1, relations // 20)
    target_delegations = relations // 10
    target_contact_relations = max(1, relations - target_org_relations - target_delegations)

    # Employers authorize an association on a few subjects.
    org_relations = []
    authorized: dict[str, list[str]] = {}  # association -> employers that authorized it
    for i in range(target_org_relations):
        grantor = rng.choice(employer_ids)
        grantee = rng.choice(association_ids)
        if grantor == grantee:
            continue
        start, end = _window(rng, today)
        org_relations.append(
            {
                "id": f"A{i}",
                "grantor_id": grantor,
                "grantee_id": grantee,
                "role": "representant",
                "start_date": start,
                "end_date": end,
                "subjects": _subjects(rng, 1, 4, _SHARED_SUBJECTS),
            }
        )
        authorized.setdefault(grantee, []).append(grantor)

    today_text = today.isoformat()
    contacts = []
    contact_relations = []
    memberships: list[tuple[str, str]] = []
    managers: list[tuple[str, str]] = []
    managing = {Role.DIRIGEANT.value, Role.PERSONNE_RESPONSABLE.value}
    staff: dict[str, list[str]] = {}  # association -> contacts with a relation there
    count = 0
    contact_number = 0
    while count < target_contact_relations:
        contact_id = f"C{contact_number}"
        contact_number += 1
        contacts.append({"id": contact_id, "first_name": "Prénom", "last_name": f"Nom {contact_number}"})
        held = min(rng.choice((1, 1, 2, 2, 3)), target_contact_relations - count)
        held_at: set[str] = set()
        while len(held_at) < held:  # associations weigh more: staff of unions are many
            held_at.add(rng.choice(association_ids) if rng.random() < 0.3 else rng.choice(employer_ids))
        for organization_id in sorted(held_at):
            start, end = _window(rng, today)
            role = rng.choices(_ROLE_NAMES, _ROLE_WEIGHTS)[0]
            contact_relations.append(
                {
                    "id": f"R{count}",
                    "contact_id": contact_id,
                    "organization_id": organization_id,
                    "role": role,
                    "start_date": start,
                    "end_date": end,
                    "subjects": _subjects(rng, 0, 3),
                }
            )
            memberships.append((contact_id, organization_id))
            if role in managing and end == _END_OF_TIME and start <= today_text:
                managers.append((contact_id, organization_id))
            if organization_id in authorized:
                staff.setdefault(organization_id, []).append(contact_id)
            count += 1

    # Delegations: an association's staff member on an employer that authorized it, mostly;
    # some exceed what the association holds, which the engine must bound at check time.
    delegations: list[dict[str, Any]] = []
    delegated: list[tuple[str, str]] = []
    vias = sorted(staff)
    # The import refuses a delegation that repeats another or gives more than the association
    # holds today: the generated ones stay within both (the engine still bounds them over time).
    holds: dict[tuple[str, str, str], int] = {}
    for row in org_relations:
        if str(row["start_date"]) <= today_text <= str(row["end_date"]):
            for grant in cast(list[dict[str, str]], row["subjects"]):
                key = (str(row["grantee_id"]), str(row["grantor_id"]), grant["subject"])
                holds[key] = max(holds.get(key, 0), _LEVEL[grant["right"]])
    seen: set[tuple[str, str, str]] = set()
    attempts = 0
    while vias and len(delegations) < target_delegations and attempts < 20 * target_delegations:
        attempts += 1
        i = len(delegations)
        via = rng.choice(vias)
        contact_id = rng.choice(staff[via])
        target = rng.choice(authorized[via])
        start, end = _window(rng, today)
        subjects = _subjects(rng, 0, 3, _SHARED_SUBJECTS)  # none = everything the association holds there
        if end >= today_text:
            kept = [g for g in subjects if holds.get((via, target, g["subject"]), 0) >= _LEVEL[g["right"]]]
            if len(kept) < len(subjects) and not kept:
                continue
            subjects = kept
        if (contact_id, via, target) in seen:
            continue
        seen.add((contact_id, via, target))
        delegations.append(
            {
                "id": f"D{i}",
                "contact_id": contact_id,
                "via_organization_id": via,
                "target_organization_id": target,
                "start_date": start,
                "end_date": end,
                "subjects": subjects,
            }
        )
        delegated.append((contact_id, target))

    return DataSet(
        data={
            "organizations": organizations,
            "contacts": contacts,
            "relations": contact_relations,
            "organization_relations": org_relations,
            "delegations": delegations,
        },
        today=today,
        memberships=memberships,
        delegated=delegated,
        managers=managers,
        organization_ids=[o["id"] for o in organizations],
        contact_ids=[c["id"] for c in contacts],
    )


def check_cases(dataset: DataSet, count: int, *, seed: int = 2) -> list[CheckCase]:
    """Checks as the portal asks them: mostly on the contact's own files, some on others."""
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        draw = rng.random()
        if draw < 0.55 and dataset.memberships:
            contact_id, organization_id = rng.choice(dataset.memberships)
        elif draw < 0.8 and dataset.delegated:
            contact_id, organization_id = rng.choice(dataset.delegated)
        else:
            contact_id, organization_id = rng.choice(dataset.contact_ids), rng.choice(dataset.organization_ids)
        cases.append(CheckCase(contact_id, organization_id, rng.choice(SUBJECTS), rng.choice((1, 2))))
    return cases
