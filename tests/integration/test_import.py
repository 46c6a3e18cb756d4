"""`authz import`: idempotent, and every refused row reported with its reason."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from authz.cli import DEMO_FILE, main
from authz.commands.import_data import MAX_ROW_DEPTH, MAX_ROW_VALUES
from authz.domain.secrets import MAX_LEGACY_ITERATIONS, make_django_pbkdf2
from authz.store import tables
from authz.store.sql import SqlStore

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
    # Refused rows make the import fail (exit 1) unless the operator accepts them.
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    assert main(["import", str(source), "--database-url", elsewhere, "--report", str(report_path)]) == 1
    assert "--allow-refused" in capsys.readouterr().err
    args = ["import", str(source), "--database-url", sqlite_url, "--report", str(report_path), "--allow-refused"]
    assert main(args) == 0
    output = capsys.readouterr().out
    report = json.loads(report_path.read_text(encoding="utf-8"))
    refused = {(row["section"], row["id"]): row["reason"] for row in report["refused"]}
    roles = "dirigeant, representant, membre_du_personnel, personne_responsable, individu_autorise"
    assert refused == {
        (
            "organizations",
            "ORG-3",
        ): "kind: 'club' is not one of association, local, establishment, employer, individual",
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
    assert main([*args[:-1], "--allow-refused"]) == 0
    again = json.loads(report_path.read_text(encoding="utf-8"))
    assert sum(again["accepted"].values()) == 0 and len(again["refused"]) == 15


def test_an_unreadable_file_is_a_clear_error(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    assert main(["import", str(broken), "--database-url", sqlite_url]) == 2
    assert "cannot be read as JSON" in capsys.readouterr().err


# -- hostile rows are refused one by one, with their reason; the rest goes in

ORG = {"id": "ORG-1", "name": "Association", "kind": "association"}
EMPLOYER = {"id": "ORG-2", "name": "Employeur", "kind": "employer"}
CONTACT = {"id": "C-1", "first_name": "Hélène", "last_name": "Côté", "email": "h@example.org", "language": "fr"}


def _import(tmp_path: Path, url: str, text: str, name: str = "hostile.json") -> tuple[int, dict[str, Any], str]:
    """`authz import` on `text`: the exit code, the report (empty when none was written) and stderr."""
    source = tmp_path / name
    source.write_bytes(text.encode("utf-8", "surrogateescape"))  # a lone surrogate writes an invalid byte
    report_path = tmp_path / (name + ".report")
    report_path.unlink(missing_ok=True)
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("authz")),
            "import",
            str(source),
            "--database-url",
            url,
            "--report",
            str(report_path),
            "--allow-refused",  # these inputs are meant to be refused row by row: the run itself succeeds
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.exists() else {}
    return result.returncode, report, result.stderr


def _reasons(report: dict[str, Any]) -> dict[tuple[str, int], str]:
    return {(row["section"], row["index"]): row["reason"] for row in report["refused"]}


def _stored(url: str) -> dict[str, set[str]]:
    store = SqlStore.from_url(url)
    try:
        with store.engine.connect() as connection:
            return {
                "organizations": set(connection.scalars(select(tables.organizations.c.id))),
                "contacts": set(connection.scalars(select(tables.contacts.c.id))),
                "relations": set(connection.scalars(select(tables.relations.c.id))),
                "legacy_accounts": set(connection.scalars(select(tables.legacy_accounts.c.username))),
            }
    finally:
        store.close()


def test_fields_of_the_wrong_type_refuse_their_row_only(tmp_path: Path, sqlite_url: str) -> None:
    relation = {"contact_id": "C-1", "organization_id": "ORG-1", "role": "dirigeant"}
    data = {
        "organizations": [
            ORG,
            {"id": "ORG-3", "name": "Bad kind", "kind": []},
            {"id": 42, "name": "Numbered", "kind": "local"},
            {"id": "ORG-4", "name": {"fr": "Nom"}, "kind": "local"},
            "ORG-5",
            ["ORG-6"],
            None,
        ],
        "contacts": [
            CONTACT,
            {"id": "C-2", "first_name": "Sam", "last_name": "Lee", "email": ["s@example.org"]},
            {"id": "C-3", "first_name": True, "last_name": "Lee"},
            {"id": "C-4", "first_name": "Sam", "last_name": "Lee", "language": 1.5},
        ],
        "relations": [
            {"id": "R-1", **relation, "subjects": [{"subject": "profil", "right": "read"}]},
            {"id": "R-2", **relation, "subjects": [{"subject": {"code": "profil"}, "right": "read"}]},
            {"id": "R-3", **relation, "subjects": {"profil": "read"}},
            {"id": "R-4", **relation, "subjects": ["profil"]},
            {"id": "R-5", **relation, "role": ["dirigeant"]},
            {"id": "R-6", **relation, "start_date": 20200101},
            {"id": "R-7", **relation, "contact_id": {"id": "C-1"}},
            {"id": "R-8", **relation, "subjects": [{"subject": "profil", "right": 2}]},
        ],
        "legacy_accounts": [
            {"username": "old-1", "contact_ids": "C-1", "password_hash": GOOD_HASH},
            {"username": "old-2", "contact_ids": [7], "password_hash": GOOD_HASH},
            {"username": ["old-3"], "contact_ids": ["C-1"], "password_hash": GOOD_HASH},
            {"username": "old-4", "contact_ids": ["C-1"], "password_hash": 600000},
        ],
        "delegations": {"D-1": {}},
    }
    code, report, stderr = _import(tmp_path, sqlite_url, json.dumps(data))
    assert code == 0 and "Traceback" not in stderr, stderr
    assert _reasons(report) == {
        ("organizations", 1): "kind: must be text, not a list",
        ("organizations", 2): "id: must be text, not a number",
        ("organizations", 3): "name: must be text, not an object",
        ("organizations", 4): "must be an object, not 'ORG-5'",
        ("organizations", 5): "must be an object, not a list",
        ("organizations", 6): "must be an object, not null",
        ("contacts", 1): "email: must be text, not a list",
        ("contacts", 2): "first_name: must be text, not a boolean",
        ("contacts", 3): "language: must be text, not a number",
        ("relations", 1): 'subjects[0]: must be an object with a "subject" and a "right" (text)',
        ("relations", 2): "subjects: must be a list, not an object",
        ("relations", 3): 'subjects[0]: must be an object with a "subject" and a "right" (text)',
        ("relations", 4): "role: must be text, not a list",
        ("relations", 5): "start_date: must be text, not a number",
        ("relations", 6): "contact_id: must be text, not an object",
        ("relations", 7): 'subjects[0]: must be an object with a "subject" and a "right" (text)',
        ("legacy_accounts", 0): "contact_ids: must be a list naming at least one contact",
        ("legacy_accounts", 1): "contact_ids[0]: must be text, not a number",
        ("legacy_accounts", 2): "username: must be text, not a list",
        ("legacy_accounts", 3): "password_hash: must be text, not a number",
        ("delegations", -1): "delegations must be a list",
    }
    assert _stored(sqlite_url) == {
        "organizations": {"ORG-1"},
        "contacts": {"C-1"},
        "relations": {"R-1"},
        "legacy_accounts": set(),
    }


def test_deep_nesting_refuses_its_row_and_costs_nothing(tmp_path: Path, sqlite_url: str) -> None:
    """A hundred thousand levels: no RecursionError, no memory blow-up, the row refused, the rest in."""
    deep = "[" * 100_000 + "]" * 100_000
    deep_object = '{"a":' * 100_000 + "1" + "}" * 100_000
    text = (
        '{"organizations": ['
        + json.dumps(ORG)
        + ', {"id": "ORG-3", "name": "Deep", "kind": '
        + deep
        + "}, "
        + deep_object
        + "], "
        + '"widgets": '
        + deep
        + ', "contacts": ['
        + json.dumps(CONTACT)
        + "]}"
    )
    code, report, stderr = _import(tmp_path, sqlite_url, text)
    assert code == 0 and "Traceback" not in stderr, stderr
    assert _reasons(report) == {
        ("organizations", 1): f"the row is nested deeper than {MAX_ROW_DEPTH} levels",
        ("organizations", 2): f"the row is nested deeper than {MAX_ROW_DEPTH} levels",
        ("widgets", -1): "unknown section 'widgets' ignored",
    }
    assert report["refused"][0]["id"] is None  # nothing of a row that was not built is quoted
    assert report["accepted"]["organizations"] == 1 and report["accepted"]["contacts"] == 1


def test_a_row_with_too_many_values_is_refused(tmp_path: Path, sqlite_url: str) -> None:
    huge = {**CONTACT, "id": "C-2", "tags": list(range(MAX_ROW_VALUES + 1))}
    hollow = {**CONTACT, "id": "C-3", "tags": [[]] * (MAX_ROW_VALUES + 1)}
    wide = {**CONTACT, "id": "C-4", **{f"k{i}": {} for i in range(MAX_ROW_VALUES + 1)}}
    fine = {**CONTACT, "id": "C-5", "tags": [[]] * (MAX_ROW_VALUES - 20)}  # unknown fields are ignored
    rows = [CONTACT, huge, hollow, wide, fine]
    code, report, stderr = _import(tmp_path, sqlite_url, json.dumps({"contacts": rows}))
    assert code == 0, stderr
    too_large = f"the row is larger than {MAX_ROW_VALUES:,} values"
    assert _reasons(report) == {("contacts", 1): too_large, ("contacts", 2): too_large, ("contacts", 3): too_large}
    assert _stored(sqlite_url)["contacts"] == {"C-1", "C-5"}


def test_control_characters_and_absurd_work_factors_are_refused(tmp_path: Path, sqlite_url: str) -> None:
    absurd = make_django_pbkdf2("pw", "salt", iterations=1).replace("$1$", f"${MAX_LEGACY_ITERATIONS + 1}$")
    data = {
        "organizations": [ORG, {"id": "ORG-3", "name": "Nom\r\nBcc: x@example.org", "kind": "local"}],
        "contacts": [
            CONTACT,
            {**CONTACT, "id": "C-2", "first_name": "Sam\n"},
            {**CONTACT, "id": "C-3", "last_name": "Lee\rX"},
            {**CONTACT, "id": "C-4", "email": "s@example.org\n"},
            {**CONTACT, "id": "C-5", "email": "s@example.org\r\nBcc: x@example.org"},
            {**CONTACT, "id": "C-6", "first_name": "\u3164"},
        ],
        "legacy_accounts": [
            {"username": "old-1", "contact_ids": ["C-1"], "password_hash": GOOD_HASH},
            {"username": "old-2\n", "contact_ids": ["C-1"], "password_hash": GOOD_HASH},
            {"username": "old-3", "contact_ids": ["C-1"], "password_hash": absurd},
            {"username": "old-4", "contact_ids": ["C-1"], "password_hash": "pbkdf2_sha256$" + "9" * 5000 + "$s$h"},
            {"username": "old-5", "contact_ids": ["C-1"], "password_hash": "pbkdf2_sha256$0$s$h"},
            {"username": "old-6", "contact_ids": ["C-1"], "password_hash": GOOD_HASH + "\n"},
        ],
    }
    code, report, stderr = _import(tmp_path, sqlite_url, json.dumps(data))
    assert code == 0, stderr
    invisible = "must not contain control, invisible or filler characters"
    iterations = f"password_hash: iterations must be between 1 and {MAX_LEGACY_ITERATIONS:,}"
    assert _reasons(report) == {
        ("organizations", 1): f"name: {invisible}",
        ("contacts", 1): f"first_name: {invisible}",
        ("contacts", 2): f"last_name: {invisible}",
        ("contacts", 3): "email: must be a valid email address",
        ("contacts", 4): "email: must be a valid email address",
        ("contacts", 5): f"first_name: {invisible}",
        ("legacy_accounts", 1): f"username: {invisible}",
        ("legacy_accounts", 2): iterations,
        ("legacy_accounts", 3): "password_hash: must be at most 300 characters",
        ("legacy_accounts", 4): iterations,
        ("legacy_accounts", 5): "password_hash: must not contain spaces, control or invisible characters",
    }
    assert _stored(sqlite_url)["legacy_accounts"] == {"old-1"}


def test_a_key_taken_by_different_content_is_reported_not_skipped(tmp_path: Path, sqlite_url: str) -> None:
    relation = {"id": "R-1", "contact_id": "C-1", "organization_id": "ORG-1", "role": "dirigeant"}
    data = {
        "organizations": [ORG, ORG, {**ORG, "name": "Autre nom"}],
        "contacts": [CONTACT, {**CONTACT, "email": "autre@example.org"}],
        "relations": [relation, relation, {**relation, "role": "representant"}],
    }
    code, report, _ = _import(tmp_path, sqlite_url, json.dumps(data))
    assert code == 0
    taken = "is already taken by a different {} (stored before, or earlier in this file)"
    assert _reasons(report) == {
        ("organizations", 2): "id: 'ORG-1' " + taken.format("organization"),
        ("contacts", 1): "id: 'C-1' " + taken.format("contact"),
        ("relations", 2): "id: 'R-1' " + taken.format("relation"),
    }
    assert report["skipped"] == {**report["skipped"], "organizations": 1, "relations": 1}
    # Against the store: the same rows again are skipped; changed ones are refused, and nothing changes.
    changed = {
        "organizations": [{**ORG, "kind": "local"}],
        "contacts": [CONTACT],
        "relations": [{**relation, "subjects": [{"subject": "profil", "right": "write"}]}],
        "legacy_accounts": [{"username": "old-1", "contact_ids": ["C-1"], "password_hash": GOOD_HASH}],
    }
    code, report, _ = _import(tmp_path, sqlite_url, json.dumps(changed), "changed.json")
    assert code == 0
    assert _reasons(report) == {
        ("organizations", 0): "id: 'ORG-1' " + taken.format("organization"),
        ("relations", 0): "id: 'R-1' " + taken.format("relation"),
    }
    assert report["skipped"]["contacts"] == 1 and report["accepted"]["legacy_accounts"] == 1
    relinked = {"legacy_accounts": [{"username": "old-1", "contact_ids": ["C-1", "C-1"], "password_hash": GOOD_HASH}]}
    code, report, _ = _import(tmp_path, sqlite_url, json.dumps(relinked), "relinked.json")
    assert report["skipped"]["legacy_accounts"] == 1 and report["refused"] == []


def test_management_is_never_given_between_organizations_in_an_import(tmp_path: Path, sqlite_url: str) -> None:
    relations = [{"subject": "relations", "right": "write"}, {"subject": "profil", "right": "read"}]
    data = {
        "organizations": [ORG, EMPLOYER],
        "contacts": [CONTACT],
        "relations": [
            {"id": "R-1", "contact_id": "C-1", "organization_id": "ORG-1", "role": "dirigeant", "subjects": relations}
        ],
        "organization_relations": [
            {"id": "OR-1", "grantor_id": "ORG-2", "grantee_id": "ORG-1", "subjects": relations},
            {"id": "OR-2", "grantor_id": "ORG-2", "grantee_id": "ORG-1", "subjects": relations[1:]},
        ],
        "delegations": [
            {
                "id": "D-1",
                "contact_id": "C-1",
                "via_organization_id": "ORG-1",
                "target_organization_id": "ORG-2",
                "subjects": relations[:1],
            },
            {"id": "D-2", "contact_id": "C-1", "via_organization_id": "ORG-1", "target_organization_id": "ORG-2"},
        ],
    }
    code, report, _ = _import(tmp_path, sqlite_url, json.dumps(data))
    assert code == 0
    rule = (
        "subjects: 'relations' (managing the organization's relations) cannot be given by one organization "
        "to another, nor delegated"
    )
    assert _reasons(report) == {("organization_relations", 0): rule, ("delegations", 0): rule}
    assert _stored(sqlite_url)["relations"] == {"R-1", "OR-2", "D-2"}


def test_sections_in_any_order_and_history_are_taken(tmp_path: Path, sqlite_url: str) -> None:
    """Relations before the contacts they name (a second pass reads them), and a start long past."""
    text = json.dumps(
        {
            "relations": [
                {
                    "id": "R-1",
                    "contact_id": "C-1",
                    "organization_id": "ORG-1",
                    "role": "dirigeant",
                    "start_date": "1998-03-01",
                    "end_date": "2004-06-30",
                }
            ],
            "contacts": [CONTACT],
            "legacy_accounts": [{"username": "old-1", "contact_ids": ["C-1"], "password_hash": GOOD_HASH}],
            "organizations": [ORG],
        }
    )
    code, report, _ = _import(tmp_path, sqlite_url, text)
    assert code == 0 and report["refused"] == []
    assert sum(report["accepted"].values()) == 4
    store = SqlStore.from_url(sqlite_url)
    try:
        with store.transaction() as tx:
            relation = tx.get_relation("R-1")
        assert relation is not None and (relation.start_date, relation.end_date) == (
            date(1998, 3, 1),
            date(2004, 6, 30),
        )
    finally:
        store.close()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"organizations": [' + json.dumps(ORG) + '], "contacts": [{"id": "C-1", ', "cannot be read as JSON"),
        ('{"organizations": [' + json.dumps(ORG) + "]} trailing", "cannot be read as JSON"),
        ("[" * 50_000 + "]" * 50_000, "the top level must be an object"),
        ('"just text"', "the top level must be an object"),
        ("", "cannot be read as JSON"),
        ('{"organizations": [{"id": "O\udcff", "name": "x", "kind": "local"}]}', "cannot be read as JSON"),
    ],
)
def test_a_file_that_is_not_a_json_object_changes_nothing(
    tmp_path: Path, sqlite_url: str, text: str, message: str
) -> None:
    code, report, stderr = _import(tmp_path, sqlite_url, text)
    assert code == 2 and report == {}
    assert message in stderr and "nothing was imported" in stderr and "Traceback" not in stderr, stderr
    assert _stored(sqlite_url)["organizations"] == set()  # the rows read before the fault were rolled back


def test_the_parser_is_yajl_in_c() -> None:
    """The pure-Python backends are ten times slower: a wheel without the C parser must not pass unseen."""
    import ijson  # type: ignore[import-untyped]

    assert ijson.backend == "yajl2_c"


def test_refused_ids_are_printed_escaped(tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    hostile = "ORG-\x1b]0;owned\x07\x1b[2J"
    source = tmp_path / "hostile.json"
    source.write_text(json.dumps({"organizations": [{"id": hostile, "name": "x", "kind": "local"}]}), encoding="utf-8")
    assert main(["import", str(source), "--database-url", sqlite_url]) == 1
    output = capsys.readouterr().out
    assert "\x1b" not in output and "\x07" not in output
    assert "ORG-\\x1b]0;owned\\x07\\x1b[2J" in output
    assert (tmp_path / "hostile.import-report.json").exists()  # beside the input


def test_import_demo_from_the_package_reports_in_the_working_folder(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import authz

    monkeypatch.chdir(tmp_path)
    assert main(["import", "--demo", "--database-url", sqlite_url]) == 0
    assert (tmp_path / "demo.import-report.json").exists()
    package = Path(authz.__file__).parent
    assert not list(package.rglob("*.import-report.json"))


def test_ctrl_c_during_a_large_import_leaves_nothing_and_no_traceback(tmp_path: Path) -> None:
    """Ctrl-C reaches the importer and its reader process (one process group): the import rolls
    back, says so in one line and exits 130; the reader leaves quietly."""
    import os
    import signal
    import time

    from authz.bench.import_bench import write_import_file

    source = tmp_path / "large.json"
    write_import_file(source, 60_000)
    database = tmp_path / "large.db"
    command = [sys.executable, "-m", "authz.cli", "import", str(source), "--database-url", f"sqlite:///{database}"]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)

    def reader_running() -> bool:
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(stat[1]) == child.pid:
                    return True
        return False

    deadline = time.monotonic() + 60
    while not reader_running():
        assert child.poll() is None and time.monotonic() < deadline, "the import ended before its reader was seen"
        time.sleep(0.02)
    os.killpg(child.pid, signal.SIGINT)  # as a terminal does
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 130
    assert "interrupted; nothing was imported" in stderr
    assert "Traceback" not in stderr
    store = SqlStore.from_url(f"sqlite:///{database}")
    with store.engine.connect() as connection:
        assert connection.execute(select(tables.contacts.c.id)).first() is None
        names = {row[0] for row in connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'index'")}
    store.close()
    assert {"ix_relations_org_contact", "ix_relations_via", "ix_contacts_email"} <= names
