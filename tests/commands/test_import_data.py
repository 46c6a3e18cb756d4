"""The import keeps the rules of every write for what it adds: a repeated relation or a delegation
beyond what the association holds is refused and kept as a migration issue, never silently taken."""

from __future__ import annotations

from typing import Any

from authz.commands.import_data import import_data
from authz.engine.policy import Policy

from .conftest import NOW, World


def _issues(world: World, organization_id: str) -> list[str]:
    with world.store.transaction() as tx:
        return [
            issue.reason
            for issue in tx.migration_issues_page(organization_id, include_resolved=False, after=None, limit=50)
        ]


def _delegation(row_id: str, subjects: list[dict[str, str]], **extra: Any) -> dict[str, Any]:
    return {"id": row_id, "contact_id": "C-REP", "via_organization_id": "ORG-SQC",
            "target_organization_id": "EMP-ABC", "start_date": "2025-01-01", "subjects": subjects, **extra}  # fmt: skip


def test_a_relation_repeating_one_in_force_is_a_migration_issue(world: World, command_policy: Policy) -> None:
    document = {
        "relations": [
            {"id": "R-REP-AGAIN", "contact_id": "C-REP", "organization_id": "ORG-SQC", "role": "representant",
             "start_date": "2025-01-01"},
            {"id": "R-REP-OLD", "contact_id": "C-REP", "organization_id": "ORG-SQC", "role": "representant",
             "start_date": "2010-01-01", "end_date": "2012-12-31"},
        ],
        "delegations": [
            _delegation("D-1", [{"subject": "rapport_mensuel", "right": "read"}]),
            _delegation("D-2", [{"subject": "paiements_et_releves", "right": "read"}]),
        ],
    }  # fmt: skip
    report = import_data(world.store, document, command_policy.subjects, now=NOW)
    refused = {row["id"]: row["reason"] for row in report.refused}
    assert set(refused) == {"R-REP-AGAIN", "D-2"}  # history does not repeat what is in force
    assert "'R-REP'" in refused["R-REP-AGAIN"] and "'D-1'" in refused["D-2"]
    assert report.accepted["relations"] == 1 and report.accepted["delegations"] == 1
    assert any("R-REP" in reason for reason in _issues(world, "ORG-SQC"))


def test_a_delegation_beyond_what_the_association_holds_is_a_migration_issue(
    world: World, command_policy: Policy
) -> None:
    # EMP-ABC authorizes the association to write paiements_et_releves and to read rapport_mensuel.
    document = {
        "delegations": [
            _delegation("D-OVER", [{"subject": "rapport_mensuel", "right": "write"}]),
            _delegation("D-PAST", [{"subject": "scrutin_syndical", "right": "write"}], end_date="2024-12-31",
                        start_date="2020-01-01"),
            _delegation("D-ROLE", [], role="dirigeant", start_date="2020-01-01", end_date="2020-01-02"),
        ]
    }  # fmt: skip
    report = import_data(world.store, document, command_policy.subjects, now=NOW)
    assert [row["id"] for row in report.refused] == ["D-OVER"]
    assert "ORG-SQC holds on EMP-ABC: rapport_mensuel write (holds read)" in report.refused[0]["reason"]
    with world.store.transaction() as tx:
        kept = tx.get_relation("D-ROLE")
    assert kept is not None and kept.role is None  # a delegation's role is left out
    assert _issues(world, "ORG-SQC") or _issues(world, "EMP-ABC")
