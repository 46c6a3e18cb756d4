"""`authz policy diff`: exactly the decisions an edit flips, on the demo data or any data set."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from authz.cli import DEMO_FILE, main
from authz.commands.import_data import import_file
from authz.config import Settings
from authz.engine.policy import Policy
from authz.store.sql import open_store
from tests.policies.helpers import DIRIGEANT_MANAGES, SHIPPED, copy_policy, edit

AT = "2025-06-01"


def demo_contacts_with_role(role: str, on: date) -> set[tuple[str, str]]:
    data = json.loads(DEMO_FILE.read_text(encoding="utf-8"))
    return {
        (r["contact_id"], r["organization_id"])
        for r in data["relations"]
        if r["role"] == role and r.get("start_date", "0000") <= on.isoformat() <= r.get("end_date", "9999-12-31")
    }


@pytest.fixture
def no_dirigeant_manager(tmp_path: Path) -> Path:
    folder = copy_policy(tmp_path / "new")
    edit(folder, "policy.csv", DIRIGEANT_MANAGES, "")
    return folder


def test_dirigeant_no_longer_managing_lists_exactly_the_demo_dirigeants(
    no_dirigeant_manager: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "diff", str(SHIPPED), str(no_dirigeant_manager), "--at", AT, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    dirigeants = demo_contacts_with_role("dirigeant", date.fromisoformat(AT))
    assert len(dirigeants) >= 3
    assert [(c["roles"], c["subject"], c["before"], c["after"]) for c in report["changes"]] == [
        ("dirigeant", "relations", "write", "none")
    ]
    (change,) = report["changes"]
    assert {(c["contact_id"], c["organization_id"]) for c in change["contacts"]} == dirigeants
    assert change["count"] == len(dirigeants)

    assert main(["policy", "diff", str(SHIPPED), str(no_dirigeant_manager), "--at", AT]) == 0
    out = capsys.readouterr().out
    people = ", ".join(f"{c} on {o}" for c, o in sorted(dirigeants))
    assert (
        f"  {len(dirigeants)} contacts (dirigeant) lose write and read on relations of their own organization: {people}"
        in out
    )
    assert f"{len(dirigeants)} contact(s) affected: {', '.join(sorted(c for c, _ in dirigeants))}" in out


def test_the_same_policy_changes_nothing(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["policy", "diff", str(SHIPPED), str(copy_policy(tmp_path / "copy")), "--fail-on-change"]) == 0
    assert "no decision changes" in capsys.readouterr().out


def test_fail_on_change_and_gains_on_another_data_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = {
        "organizations": [
            {"id": "ORG-A", "name": "A", "kind": "association"},
            {"id": "EMP-B", "name": "B", "kind": "employer"},
        ],
        "contacts": [{"id": f"C-{i}", "first_name": "X", "last_name": str(i), "email": ""} for i in range(4)],
        "relations": [
            {"id": "R-0", "contact_id": "C-0", "organization_id": "ORG-A", "role": "representant"},
            {
                "id": "R-1",
                "contact_id": "C-1",
                "organization_id": "ORG-A",
                "role": "representant",
                "subjects": [{"subject": "rapport_mensuel", "right": "write"}],
            },
            {"id": "R-2", "contact_id": "C-2", "organization_id": "ORG-A", "role": "membre_du_personnel"},
            {
                "id": "R-3",
                "contact_id": "C-3",
                "organization_id": "ORG-A",
                "role": "representant",
                "start_date": "2020-01-01",
                "end_date": "2021-01-01",
            },
        ],
    }
    path = tmp_path / "data.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    folder = copy_policy(tmp_path / "new")
    edit(folder, "policy.csv", "g2, write, read\n", "g2, write, read\ng, representant, rapport_mensuel, read\n")
    assert main(["policy", "diff", str(SHIPPED), str(folder), "--data", str(path), "--fail-on-change"]) == 1
    out = capsys.readouterr().out
    # C-1 already writes it through its relation; C-3's relation has ended; C-2 is not a representant.
    assert "  1 contact (representant) gains read on rapport_mensuel of their own organization: C-0 on ORG-A" in out
    assert "1 contact(s) affected: C-0" in out


def test_diff_reads_a_database(tmp_path: Path, no_dirigeant_manager: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'prod.db'}"
    store = open_store(Settings(database_url=url))
    try:
        assert not import_file(store, DEMO_FILE, Policy.load().subjects).refused
    finally:
        store.close()
    assert (
        main(["policy", "diff", str(SHIPPED), str(no_dirigeant_manager), "--database", url, "--at", AT, "--json"]) == 0
    )
    (change,) = json.loads(capsys.readouterr().out)["changes"]
    dirigeants = demo_contacts_with_role("dirigeant", date.fromisoformat(AT))
    assert {(c["contact_id"], c["organization_id"]) for c in change["contacts"]} == dirigeants


def test_a_subject_taken_out_of_the_catalogue_is_lost_by_everyone_who_held_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = copy_policy(tmp_path / "new")
    edit(folder, "subjects.csv", "scrutin_syndical,Scrutin syndical,Union vote\n", "")
    edit(folder, "policy.csv", "g, dirigeant, scrutin_syndical, write\n", "")
    edit(folder, "policy.csv", "g, personne_responsable, scrutin_syndical, read\n", "")
    assert main(["policy", "diff", str(SHIPPED), str(folder), "--at", AT, "--json"]) == 0
    changes = json.loads(capsys.readouterr().out)["changes"]
    assert {c["subject"] for c in changes} == {"scrutin_syndical"}
    assert {(c["roles"], c["before"]) for c in changes} >= {
        ("dirigeant", "write"),
        ("personne_responsable", "read"),
        ("representant", "write"),
    }


def test_retiring_a_subject_lists_the_organizations_that_lose_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = copy_policy(tmp_path / "new")
    edit(folder, "subjects.csv", "rapport_mensuel,Rapport mensuel,Monthly report\n", "")
    edit(folder, "policy.csv", "g, dirigeant, rapport_mensuel, write\n", "")
    edit(folder, "policy.csv", "g, personne_responsable, rapport_mensuel, read\n", "")
    (folder / "retired.csv").write_text(
        "code,label_fr,label_en,retired_on\nrapport_mensuel,Rapport mensuel,Monthly report,2025-01-31\n",
        encoding="utf-8",
    )
    assert main(["policy", "diff", str(SHIPPED), str(folder), "--at", AT, "--json"]) == 0
    changes = json.loads(capsys.readouterr().out)["changes"]
    organizations = {
        (c["contact_id"], c["organization_id"], change["before"])
        for change in changes
        if change["roles"] == "organization-to-organization"
        for c in change["contacts"]
    }
    # The demo's employers authorize ORG-SQC: EMP-XYZ with write, EMP-ABC with read.
    assert organizations == {("ORG-SQC", "EMP-XYZ", "write"), ("ORG-SQC", "EMP-ABC", "read")}
    assert any(c["roles"] == "delegated via ORG-SQC" for c in changes)
    assert main(["policy", "diff", str(SHIPPED), str(folder), "--at", AT]) == 0
    out = capsys.readouterr().out
    assert (
        "  1 organization loses write and read on rapport_mensuel of the organizations that authorized them: "
        "ORG-SQC on EMP-XYZ" in out
    )
    assert "1 organization(s) affected: ORG-SQC" in out
