"""The work a lookup does follows its answer: the number of candidates `check` decides for a
page, counted (never timed), on an organization far past the engine's scan limit."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

import pytest

from authz.domain.model import WILDCARD_SUBJECT, Relation, RelationKind, Right, Role
from authz.engine.index import DecisionEngine
from authz.engine.policy import Policy

START, END = date(2020, 1, 1), date(9999, 12, 31)
TS = datetime(2026, 6, 15, 16, tzinfo=UTC).timestamp()
HOLDERS = 1_000  # contacts with a relation on BIG
DELEGATES = 200  # per association


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.load()


def _contact(relation_id: str, contact: str, organization: str, subjects: dict[str, Right], role: Role) -> Relation:
    return Relation(
        relation_id, RelationKind.CONTACT, organization, START, END, contact_id=contact, role=role, subjects=subjects
    )


def _world() -> list[Relation]:
    """BIG: 1,000 staff, every second one granted profil read, C0777 alone granted scrutin_syndical
    write; ASSOC (authorized by BIG on rapport_mensuel write) and ASSOC2 (profil read) each
    delegate all they hold there to 200 of their staff. WIDE holds a relation on 1,000
    organizations, scrutin_syndical write on one of them."""
    relations: list[Relation] = []
    for n in range(HOLDERS):
        subjects = {"profil": Right.READ} if n % 2 else {}
        if n == 777:
            subjects = {"scrutin_syndical": Right.WRITE}
        relations.append(_contact(f"R{n}", f"C{n:04}", "BIG", subjects, Role.MEMBRE_DU_PERSONNEL))
        wide = {"scrutin_syndical": Right.WRITE} if n == 555 else {"profil": Right.READ}
        relations.append(_contact(f"W{n}", "WIDE", f"O{n:04}", wide, Role.MEMBRE_DU_PERSONNEL))
    for association, subject, right in (("ASSOC", "rapport_mensuel", Right.WRITE), ("ASSOC2", "profil", Right.READ)):
        relations.append(
            Relation(
                f"A-{association}",
                RelationKind.ORGANIZATION,
                "BIG",
                START,
                END,
                grantee_organization_id=association,
                subjects={subject: right},
            )
        )
        for n in range(DELEGATES):
            delegate = f"D{association}{n:03}"
            relations.append(_contact(f"M-{delegate}", delegate, association, {}, Role.MEMBRE_DU_PERSONNEL))
            relations.append(
                Relation(
                    f"G-{delegate}",
                    RelationKind.DELEGATION,
                    "BIG",
                    START,
                    END,
                    contact_id=delegate,
                    via_organization_id=association,
                    subjects={WILDCARD_SUBJECT: Right.WRITE},
                )
            )
    return relations


def _counting(engine: DecisionEngine) -> Callable[[], int]:
    """Count the checks the engine's lookups make (each candidate decided is one check)."""
    decided = 0
    check = engine.check

    def counted(*args: object) -> bool:
        nonlocal decided
        decided += 1
        return check(*args)  # type: ignore[arg-type]

    engine.check = counted  # type: ignore[method-assign]

    def taken() -> int:
        nonlocal decided
        count, decided = decided, 0
        return count

    return taken


def _engine(policy: Policy, scan_limit: int | None = None) -> DecisionEngine:
    engine = DecisionEngine(policy, scan_limit=scan_limit)
    engine.load(_world(), 1)
    return engine


def test_the_one_holder_of_a_rare_right_costs_one_candidate(policy: Policy) -> None:
    engine = _engine(policy)
    decided = _counting(engine)
    assert engine.lookup_principals("BIG", "scrutin_syndical", 2, TS, limit=10) == (["C0777"], False)
    assert decided() == 1
    assert engine.lookup_organizations("WIDE", "scrutin_syndical", 2, TS, limit=10) == (["O0555"], False)
    assert decided() == 1
    # The same answers decided over every holder, as the scan does below the limit: the count above is the saving.
    scanning = _engine(policy, scan_limit=10**9)
    scanned = _counting(scanning)
    assert scanning.lookup_principals("BIG", "scrutin_syndical", 2, TS, limit=10) == (["C0777"], False)
    assert scanned() == HOLDERS + 2 * DELEGATES


def test_a_page_of_a_common_right_decides_about_a_page(policy: Policy) -> None:
    engine = _engine(policy)
    decided = _counting(engine)
    # profil read: 499 granted directly, 200 through ASSOC2's delegations (ASSOC holds no profil).
    page, more = engine.lookup_principals("BIG", "profil", 1, TS, limit=10)
    assert more and len(page) == 10
    assert decided() <= 11  # the page and the one that says more follow
    everyone, more = engine.lookup_principals("BIG", "profil", 1, TS, limit=10_000)
    assert not more and len(everyone) == HOLDERS // 2 - 1 + DELEGATES  # C0777 holds scrutin_syndical instead
    assert decided() == len(everyone)  # no candidate that could not answer: ASSOC's delegates are not asked
    # rapport_mensuel write: only ASSOC's delegations can give it; the next page after a token.
    first, _ = engine.lookup_principals("BIG", "rapport_mensuel", 2, TS, limit=10)
    decided()
    second, more = engine.lookup_principals("BIG", "rapport_mensuel", 2, TS, after=first[-1], limit=10)
    assert more and second[0] > first[-1] and all(c.startswith("DASSOC0") for c in first + second)
    assert decided() == 11
    page, more = engine.lookup_organizations("WIDE", "profil", 1, TS, limit=10)
    assert more and len(page) == 10 and decided() == 11


def test_a_right_written_after_start_up_is_found_through_the_reason_index(policy: Policy) -> None:
    engine = _engine(policy)
    decided = _counting(engine)
    engine.apply([_contact("R3", "C0003", "BIG", {"scrutin_syndical": Right.WRITE}, Role.MEMBRE_DU_PERSONNEL)], 2)
    engine.apply([_contact("NEW", "C9999", "BIG", {}, Role.DIRIGEANT)], 3)  # a new key, holding it by its role
    assert engine.lookup_principals("BIG", "scrutin_syndical", 2, TS, limit=10) == (["C0003", "C0777", "C9999"], False)
    assert decided() == 3
