"""`authz import` parses and checks the file in a reader process while the writer writes: the
report, the rows stored and the migration issues kept are the same as with the writer alone,
and a row the reader passed is read from the file again only when the writer refuses it."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from authz.commands import import_data
from authz.commands.import_data import ImportFileError, import_file
from authz.domain.secrets import make_django_pbkdf2
from authz.engine.policy import Policy
from authz.store import migrate, tables
from authz.store.sql import SqlStore, make_engine

NOW = datetime(2026, 3, 10, 17, 0, tzinfo=UTC)
GOOD_HASH = make_django_pbkdf2("pw", "salt", iterations=1000)


def _messy_file(path: Path) -> Path:
    """Rows refused by their own checks and, more to the point, rows that pass them and are
    refused by the writer after all (references, taken keys, the rules), across chunks."""
    organizations = [{"id": f"O{i}", "name": f"Org {i}", "kind": "employer"} for i in range(6)]
    organizations += [{"id": "A", "name": "Association", "kind": "association"}, {"id": "A", "name": "Other"}]
    contacts = [
        {"id": f"C{i}", "first_name": "Prénom", "last_name": f"Nom {i}", "email": f"c{i}@example.org"} for i in range(8)
    ]
    contacts.append({"id": "C0", "first_name": "Autre", "last_name": "Personne", "email": ""})  # taken key
    relations: list[Any] = []
    for i in range(8):
        relations.append({"id": f"R{i}", "contact_id": f"C{i}", "organization_id": "A", "role": "dirigeant"})
        relations.append({"id": f"S{i}", "contact_id": f"C{i}", "organization_id": f"O{i % 6}", "role": "dirigeant"})
    relations += [
        {"id": "R-dup", "contact_id": "C1", "organization_id": "A", "role": "dirigeant"},  # repeats R1
        {"id": "R-ref", "contact_id": "C404", "organization_id": "A", "role": "dirigeant"},  # unknown contact
        {"id": "R-org", "contact_id": "C2", "organization_id": "O404", "role": "representant"},  # unknown org
        {"id": "R0", "contact_id": "C3", "organization_id": "O1", "role": "representant"},  # taken by other content
        {"id": "R-bad", "contact_id": "C2", "organization_id": "A", "role": "president"},  # its own check
        [[[[[[[["too deep"]]]]]]]],
    ]
    authorizations = [
        {
            "id": f"AUT{i}",
            "grantor_id": f"O{i}",
            "grantee_id": "A",
            "subjects": [{"subject": "paiements_et_releves", "right": "read"}],
        }
        for i in range(3)
    ]
    delegations = [
        {
            "id": f"D{i}",
            "contact_id": f"C{i}",
            "via_organization_id": "A",
            "target_organization_id": f"O{i % 3}",
            "subjects": [{"subject": "paiements_et_releves", "right": "write" if i % 2 else "read"}],
        }
        for i in range(6)
    ]
    legacy = [
        {"username": "old-1", "contact_ids": ["C1"], "password_hash": GOOD_HASH},
        {"username": "old-2", "contact_ids": ["C404"], "password_hash": GOOD_HASH},
    ]
    document = {
        "relations": relations,  # before what it refers to: read in a second pass
        "organizations": organizations,
        "contacts": contacts,
        "organization_relations": authorizations,
        "delegations": delegations,
        "legacy_accounts": legacy,
        "widgets": [],
    }
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def _store(path: Path) -> SqlStore:
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    return SqlStore(engine)


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else str(value)


def _stored(store: SqlStore) -> dict[str, Any]:
    with store.engine.connect() as connection:
        return {
            name: sorted(tuple(map(_text, row)) for row in connection.execute(select(*columns)))
            for name, columns in {
                "relations": [tables.relations.c.id, tables.relations.c.contact_id, tables.relations.c.organization_id],
                "subjects": [tables.relation_subjects.c.relation_id, tables.relation_subjects.c.subject],
                "contacts": [tables.contacts.c.id, tables.contacts.c.last_name],
                "issues": [
                    tables.migration_issues.c.section,
                    tables.migration_issues.c.row_index,
                    tables.migration_issues.c.reason,
                    tables.migration_issues.c.organization_id,
                    tables.migration_issues.c.row,
                ],
            }.items()
        }


def _forked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader forked whatever threads this test process holds: it inherits the test's patches."""
    monkeypatch.setattr(import_data, "_reader_context", lambda: multiprocessing.get_context("fork"))


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    _forked(monkeypatch)
    monkeypatch.setattr(import_data, "CHUNK", 3)  # set before the reader is forked: it sees it too
    yield


@pytest.mark.usefixtures("small_chunks")
def test_the_reader_process_gives_what_the_writer_alone_gives(tmp_path: Path) -> None:
    source = _messy_file(tmp_path / "messy.json")
    subjects = Policy.load().subjects
    results = []
    for reader_process in (False, True):
        store = _store(tmp_path / f"{reader_process}.db")
        report = import_file(store, source, subjects, now=NOW, reader_process=reader_process)
        results.append((report.as_dict(), _stored(store)))
        store.close()
    (alone, alone_stored), (with_reader, with_reader_stored) = results
    assert with_reader == alone
    assert with_reader_stored == alone_stored
    reasons = {(row["section"], row["id"]): row["reason"] for row in alone["refused"]}
    # Each kind of refusal the writer makes after the reader's checks is in there.
    assert reasons[("relations", "R-dup")].startswith("repeats relation 'R1'")
    assert reasons[("relations", "R-ref")] == "contact_id: unknown contact 'C404'"
    assert reasons[("relations", "R-org")] == "organization_id: unknown organization 'O404'"
    assert reasons[("relations", "R0")].startswith("id: 'R0' is already taken by a different relation")
    assert reasons[("contacts", "C0")].startswith("id: 'C0' is already taken")
    assert reasons[("delegations", "D1")].startswith("delegates more than A holds on O1")
    assert reasons[("legacy_accounts", "old-2")] == "contact_ids: unknown contact 'C404'"
    # The migration issue keeps the row as the file gave it, read again from the file.
    issues = {(row[0], row[1]): json.loads(row[4]) for row in with_reader_stored["issues"]}
    assert issues[("relations", "17")] == {
        "id": "R-ref",
        "contact_id": "C404",
        "organization_id": "A",
        "role": "dirigeant",
    }


@pytest.mark.usefixtures("small_chunks")
def test_a_clean_file_is_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer reads rows again only for the rows it refuses: none here."""
    walked: list[int] = []
    walk = import_data._RowsAgain._walk

    def counted(path: Path) -> Iterator[Any]:
        for row in walk(path):
            walked.append(1)
            yield row

    monkeypatch.setattr(import_data._RowsAgain, "_walk", staticmethod(counted))
    document = {
        "organizations": [{"id": f"O{i}", "name": f"Org {i}", "kind": "employer"} for i in range(10)],
        "contacts": [{"id": f"C{i}", "first_name": "P", "last_name": "N", "email": ""} for i in range(10)],
        "relations": [
            {"id": f"R{i}", "contact_id": f"C{i}", "organization_id": f"O{i}", "role": "dirigeant"} for i in range(10)
        ],
    }
    source = tmp_path / "clean.json"
    source.write_text(json.dumps(document), encoding="utf-8")
    store = _store(tmp_path / "clean.db")
    report = import_file(store, source, Policy.load().subjects, now=NOW, reader_process=True)
    assert report.accepted["relations"] == 10 and not report.refused
    assert walked == []
    # One refusal by the writer, in the last chunk: the rows are walked up to that chunk's end, once.
    document["relations"].append({"id": "R-x", "contact_id": "C404", "organization_id": "O1", "role": "dirigeant"})
    source.write_text(json.dumps(document), encoding="utf-8")
    report = import_file(_store(tmp_path / "again.db"), source, Policy.load().subjects, now=NOW, reader_process=True)
    assert [row["id"] for row in report.refused] == ["R-x"]
    assert len(walked) == 10 + 10 + 11


@pytest.mark.parametrize("reader_process", [False, True])
def test_a_file_broken_halfway_changes_nothing_either_way(tmp_path: Path, reader_process: bool) -> None:
    rows = ",".join(json.dumps({"id": f"C{i}", "first_name": "P", "last_name": "N", "email": ""}) for i in range(20))
    source = tmp_path / "broken.json"
    source.write_text('{"contacts": [' + rows + ', {"id": "C-last", "first_name": ', encoding="utf-8")
    store = _store(tmp_path / "broken.db")
    with pytest.raises(ImportFileError, match=r"cannot be read as JSON .*; nothing was imported"):
        import_file(store, source, Policy.load().subjects, now=NOW, reader_process=reader_process)
    assert _stored(store)["contacts"] == []
    with pytest.raises(ImportFileError, match=r"cannot be read \(.*\); nothing was imported"):
        import_file(store, tmp_path / "absent.json", Policy.load().subjects, now=NOW, reader_process=reader_process)


def test_a_reader_that_dies_fails_the_import_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def dies(*_: Any) -> None:
        import os

        os._exit(3)  # as a reader killed by the OS would

    _forked(monkeypatch)
    monkeypatch.setattr(import_data, "_reader", dies)
    source = tmp_path / "file.json"
    source.write_text(json.dumps({"organizations": [{"id": "O1", "name": "Org", "kind": "employer"}]}), "utf-8")
    store = _store(tmp_path / "dies.db")
    with pytest.raises(RuntimeError, match="reader process stopped"):
        import_file(store, source, Policy.load().subjects, now=NOW, reader_process=True)
    with store.engine.connect() as connection:
        assert connection.execute(select(tables.organizations.c.id)).all() == []


def test_a_spawned_reader_gives_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where forking is not safe (a process with threads) or not offered, the reader is spawned."""
    monkeypatch.setattr(import_data, "_reader_context", lambda: multiprocessing.get_context("spawn"))
    source = _messy_file(tmp_path / "messy.json")
    subjects = Policy.load().subjects
    results = []
    for reader_process in (False, True):
        store = _store(tmp_path / f"spawn-{reader_process}.db")
        results.append(
            (import_file(store, source, subjects, now=NOW, reader_process=reader_process).as_dict(), _stored(store))
        )
        store.close()
    assert results[1] == results[0]
    assert len(results[0][0]["refused"]) >= 10
