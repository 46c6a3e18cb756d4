"""`authz import`: idempotent, and every refused row reported with its reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from authz.cli import DEMO_FILE, main
from authz.domain.secrets import make_django_pbkdf2

from ..conftest import Running
from .helpers import row_counts

GOOD_HASH = make_django_pbkdf2("pw", "salt", iterations=1000)


def test_importing_the_same_file_twice_changes_nothing(demo_any: Running, capsys: pytest.CaptureFixture[str]) -> None:
    before = row_counts(demo_any)
    url = str(demo_any.app.settings.database_url)
    assert main(["import", str(DEMO_FILE), "--database-url", url, "--report", "/dev/null"]) == 0
    assert "nothing new" in capsys.readouterr().out
    assert row_counts(demo_any) == before


def test_bad_rows_are_reported_not_dropped(tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    data = {
        "organizations": [
            {"id": "ORG-1", "name": "Association", "kind": "association"},
            {"id": "ORG-2", "name": "Employeur", "kind": "employer"},
            {"id": "ORG-3", "name": "Bad kind", "kind": "club"},
            {"id": "bad id", "name": "Bad id", "kind": "local"},
        ],
        "contacts": [
            {"id": "C-1", "first_name": "Hélène", "last_name": "Côté", "email": "h@example.org", "language": "fr"},
            {"id": "C-2", "first_name": "Sam", "last_name": "Lee", "email": "s@example.org", "language": "de"},
            {"id": "C-3", "first_name": "", "last_name": "No first name", "email": ""},
        ],
        "relations": [
            {
                "id": "R-1",
                "contact_id": "C-1",
                "organization_id": "ORG-1",
                "role": "personne_responsable",
                "start_date": "2020-01-01",
            },
            {"id": "R-2", "contact_id": "C-404", "organization_id": "ORG-1", "role": "dirigeant"},
            {"id": "R-3", "contact_id": "C-1", "organization_id": "ORG-1", "role": "president"},
            {
                "id": "R-4",
                "contact_id": "C-1",
                "organization_id": "ORG-1",
                "role": "dirigeant",
                "start_date": "2020-02-31",
            },
            {
                "id": "R-5",
                "contact_id": "C-1",
                "organization_id": "ORG-1",
                "role": "dirigeant",
                "start_date": "2021-01-01",
                "end_date": "2020-01-01",
            },
            {
                "id": "R-6",
                "contact_id": "C-1",
                "organization_id": "ORG-1",
                "role": "dirigeant",
                "subjects": [{"subject": "cafeteria", "right": "read"}],
            },
            {
                "id": "R-7",
                "contact_id": "C-1",
                "organization_id": "ORG-1",
                "role": "dirigeant",
                "subjects": [{"subject": "profil", "right": "admin"}],
            },
        ],
        "organization_relations": [
            {
                "id": "OR-1",
                "grantor_id": "ORG-2",
                "grantee_id": "ORG-1",
                "subjects": [{"subject": "paiements_et_releves", "right": "write"}],
            },
            {"id": "OR-2", "grantor_id": "ORG-2", "grantee_id": "ORG-1", "subjects": []},
        ],
        "delegations": [
            {
                "id": "D-1",
                "contact_id": "C-1",
                "via_organization_id": "ORG-1",
                "target_organization_id": "ORG-2",
                "subjects": [{"subject": "paiements_et_releves", "right": "write"}],
            },
            {"id": "D-2", "contact_id": "C-1", "via_organization_id": "ORG-404", "target_organization_id": "ORG-2"},
        ],
        "legacy_accounts": [
            {"username": "old-1", "contact_ids": ["C-1"], "password_hash": GOOD_HASH},
            {"username": "old-2", "contact_ids": ["C-1"], "password_hash": "md5$abc"},
            {"username": "old-3", "contact_ids": ["C-404"], "password_hash": GOOD_HASH},
        ],
        "widgets": [],
    }
    source = tmp_path / "legacy.json"
    source.write_text(json.dumps(data), encoding="utf-8")
    report_path = tmp_path / "report.json"
    assert main(["import", str(source), "--database-url", sqlite_url, "--report", str(report_path)]) == 0
    output = capsys.readouterr().out
    report = json.loads(report_path.read_text(encoding="utf-8"))
    refused = {(row["section"], row["id"]): row["reason"] for row in report["refused"]}
    roles = "dirigeant, representant, membre_du_personnel, personne_responsable, individu_autorise"
    assert refused == {
        ("organizations", "ORG-3"): "kind: 'club' is not one of association, local, establishment, employer, individual",
        ("organizations", "bad id"): "id: may hold only ASCII letters, digits and - _ . : @",
        ("contacts", "C-2"): 'language: must be "fr" or "en"',
        ("contacts", "C-3"): "first_name: must not be empty",
        ("relations", "R-2"): "contact_id: unknown contact 'C-404'",
        ("relations", "R-3"): f"role: 'president' is not one of {roles}",
        ("relations", "R-4"): "start_date: must be a date YYYY-MM-DD",
        ("relations", "R-5"): "end_date: must not be before start_date",
        ("relations", "R-6"): "subjects[0].subject: unknown subject 'cafeteria'",
        ("relations", "R-7"): "subjects[0].right: must be read or write (RIGHT_READ or RIGHT_WRITE)",
        ("organization_relations", "OR-2"): "subjects: must name at least one subject",
        ("delegations", "D-2"): "via_organization_id: unknown organization 'ORG-404'",
        ("legacy_accounts", "old-2"): "password_hash: is not pbkdf2_sha256$iterations$salt$hash",
        ("legacy_accounts", "old-3"): "contact_ids: unknown contact 'C-404'",
        ("widgets", None): "unknown section 'widgets' ignored",
    }
    assert report["accepted"] == {
        "organizations": 2,
        "contacts": 1,
        "relations": 1,
        "organization_relations": 1,
        "delegations": 1,
        "legacy_accounts": 1,
    }
    assert "15 row(s) refused" in output
    # A second run takes nothing new and refuses the same rows.
    assert main(["import", str(source), "--database-url", sqlite_url, "--report", str(report_path)]) == 0
    again = json.loads(report_path.read_text(encoding="utf-8"))
    assert sum(again["accepted"].values()) == 0 and len(again["refused"]) == 15


def test_an_unreadable_file_is_a_clear_error(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    assert main(["import", str(broken), "--database-url", sqlite_url]) == 2
    assert "cannot be read as JSON" in capsys.readouterr().err
