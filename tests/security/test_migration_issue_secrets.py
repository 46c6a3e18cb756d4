"""Legacy password hashes are never kept in migration issues, nor shown to managers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from authz.commands.import_data import import_data
from authz.commands.migration_issues import scrub_secrets
from authz.domain.secrets import make_django_pbkdf2
from authz.engine.policy import Policy
from authz.store import migrate, tables
from authz.store.sql import make_engine

from ..conftest import POSTGRES_ADMIN_URL, Running

PR, SQC, LOCAL, LOC_DIR, GERARD = "C-PR", "ORG-SQC", "LOC-SQC-MTL", "C-LOC-DIR", "C-LOC-MEM"


def test_a_refused_legacy_login_is_kept_without_its_hash(demo: Running, policy: Policy) -> None:
    secret_hash = make_django_pbkdf2("hunter2-legacy", "leftoversalt")
    leftovers = {
        "legacy_accounts": [
            # Refused: the contact is unknown; and one whose hash is malformed but still a secret.
            {"username": "mtl-ghost", "contact_ids": ["C-NOBODY", GERARD], "password_hash": secret_hash},
            {"username": "mtl-gerard", "contact_ids": [GERARD], "password_hash": "pbkdf2_sha256$x$" + "a" * 20},
        ],
    }
    report = import_data(demo.store, leftovers, policy.subjects)
    assert {r["id"] for r in report.refused} >= {"mtl-ghost", "mtl-gerard"}
    issues = list(demo.client.list_migration_issues(LOC_DIR, LOCAL).issues)
    assert {i.row_id for i in issues} >= {"mtl-ghost", "mtl-gerard"}
    for issue in issues:
        assert "pbkdf2_sha256$" not in issue.row_json and "pbkdf2_sha256$" not in issue.reason
        if issue.section == "legacy_accounts":
            assert json.loads(issue.row_json)["password_hash"] == "[removed]"
    # Nowhere in the stored rows either.
    with demo.store.engine.connect() as connection:
        stored = connection.execute(tables.migration_issues.select()).all()
    assert stored and not any("pbkdf2" in str(tuple(row)) for row in stored)


def test_scrub_secrets_removes_secret_fields_and_hash_like_strings_at_any_depth() -> None:
    row = {
        "username": "u",
        "Password_Hash": "anything",
        "nested": [{"code": "ABCD-EFGH"}, "see pbkdf2_sha256$600000$salt$hash here"],
        "contact_ids": ["C-1"],
    }
    assert scrub_secrets(row) == {
        "username": "u",
        "Password_Hash": "[removed]",
        "nested": [{"code": "[removed]"}, "see [removed] here"],
        "contact_ids": ["C-1"],
    }


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database (no schema yet), on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    request.getfixturevalue("postgres_database")  # skips, or fails in CI, without PostgreSQL
    name = f"authz_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_migration_0006_sec_scrubs_rows_kept_before(empty_database: str) -> None:
    engine = make_engine(empty_database)
    migrate.upgrade(engine, "0005")
    kept = {"username": "old", "contact_ids": ["C1"], "password_hash": "pbkdf2_sha256$600000$s$h"}
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO migration_issues (fingerprint, organization_id, section, row_index, row_id, reason, "
                "row, reported_at) VALUES ('f', NULL, 'legacy_accounts', 0, 'old', "
                "'password_hash pbkdf2_sha256$600000$s$h refused', :row, :at)"
            ),
            {"row": json.dumps(kept), "at": datetime(2026, 1, 1, tzinfo=UTC)},
        )
    migrate.upgrade(engine)
    with engine.connect() as connection:
        row, reason = connection.execute(text("SELECT row, reason FROM migration_issues")).one()
    assert (json.loads(row) if isinstance(row, str) else row) == {
        "username": "old",
        "contact_ids": ["C1"],
        "password_hash": "[removed]",
    }
    assert reason == "password_hash [removed] refused"
    engine.dispose()
