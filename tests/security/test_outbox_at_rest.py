"""Finding 9: a sent link code is nowhere on disk.

The outbox body is encrypted before the database sees it (authz/store/outbox.py OutboxCipher), so
neither the SQLite file, its WAL and shared-memory files, nor PostgreSQL's heap pages (old
row versions included, until vacuum) ever hold a code or the text around it.
"""

from __future__ import annotations

import dataclasses
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from authz.config import ConfigError
from authz.server.app import AuthzApp
from authz.store import tables
from authz.store.sql import open_store

from ..conftest import Clock, Running, settings_for
from ..integration.helpers import codes_for

PR, SQC, LUC = "C-PR", "ORG-SQC", "C-IND"
MARKERS = (b"Code de liaison", b"code qui lie votre compte")


def forms(code: str) -> list[bytes]:
    return [code.encode(), code.replace("-", "").encode()]


def sqlite_files(database: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in database.parent.glob(database.name + "*") if path.is_file()}


def assert_absent(where: str, data: bytes, code: str | None) -> None:
    for needle in (*MARKERS, *(forms(code) if code else [])):
        assert needle not in data, f"{needle!r} found in {where}"


def test_on_sqlite_no_file_of_the_database_holds_the_code(start_server: Callable[..., Running], tmp_path: Path) -> None:
    database = tmp_path / "rest.db"
    server = start_server(f"sqlite:///{database}")
    server.app.relay.stop()  # queued but not sent yet: the body must already be unreadable
    server.client.issue_link_code(PR, SQC, LUC, attest=True)
    pending = sqlite_files(database)
    assert f"{database.name}-wal" in pending
    for name, data in pending.items():
        assert_absent(name, data, None)
    with server.store.engine.connect() as connection:
        stored = connection.execute(select(tables.outbox.c.body)).scalar_one()
    assert stored.startswith("enc1:")
    assert server.app.relay.deliver_pending() == 1
    (code,) = codes_for(server, "luc.cote@")
    for name, data in sqlite_files(database).items():
        if not name.endswith(".outbox-key"):
            assert_absent(name, data, code)
    # The key sits beside the database, readable by its owner only, and is not in the database.
    key_file = database.with_name(database.name + ".outbox-key")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_bytes().strip()
    assert all(key not in data for name, data in sqlite_files(database).items() if name != key_file.name)


def test_on_postgresql_no_row_version_holds_the_code(
    start_server: Callable[..., Running], postgres_database: Callable[[], str]
) -> None:
    server = start_server(postgres_database())
    server.app.relay.stop()
    server.client.issue_link_code(PR, SQC, LUC, attest=True)
    assert server.app.relay.deliver_pending() == 1
    (code,) = codes_for(server, "luc.cote@")
    with server.store.engine.begin() as connection:
        connection.execute(text("CREATE EXTENSION IF NOT EXISTS pageinspect"))
        pages = connection.execute(
            text("SELECT pg_relation_size('outbox') / current_setting('block_size')::int")
        ).scalar_one()
        # Every page of the table as it is on disk: the live row and the dead version the update left.
        raw = b"".join(
            bytes(connection.execute(text("SELECT get_raw_page('outbox', :n)"), {"n": n}).scalar_one())
            for n in range(pages)
        )
    assert pages >= 1 and raw
    assert_absent("the outbox's heap pages", raw, code)


def test_postgresql_without_an_outbox_key_refuses_to_start(
    postgres_database: Callable[[], str], tmp_path: Path
) -> None:
    settings = dataclasses.replace(settings_for(postgres_database(), tmp_path), outbox_key=None)
    store = open_store(settings)  # tools that send no mail still open it
    with pytest.raises(ConfigError, match="AUTHZ_OUTBOX_KEY"):
        AuthzApp(settings, store=store)
    store.close()


def test_a_body_sealed_with_another_key_is_not_sent(
    start_server: Callable[..., Running], tmp_path: Path, clock: Clock
) -> None:
    database = tmp_path / "moved.db"
    server = start_server(f"sqlite:///{database}")
    server.app.relay.stop()
    server.client.issue_link_code(PR, SQC, LUC, attest=True)
    # Another server of the deployment with a different key: it cannot read the message, counts a failure.
    other = start_server(f"sqlite:///{database}", demo=False, outbox_key="lF9h1oS0m5eHc0mV3cYw8wQm9Zq2s7r2lY0dJk3x1aE=")
    other.app.relay.stop()
    assert other.app.relay.deliver_pending() == 0
    with server.store.engine.connect() as connection:
        attempts, error = connection.execute(select(tables.outbox.c.attempts, tables.outbox.c.last_error)).one()
    assert attempts >= 1 and "outbox key" in error
    assert other.app.store.outbox_decrypt_failures == 1  # counted in authz_outbox_failures_total
    # Retried after a backoff (not in a tight loop), by the server holding the right key.
    clock.set(datetime.now(UTC) + timedelta(minutes=10))
    assert server.app.relay.deliver_pending() == 1


def test_the_keys_never_reach_the_settings_log_line() -> None:
    from authz.config import Settings

    outbox_key, page_key = "lF9h1oS0m5eHc0mV3cYw8wQm9Zq2s7r2lY0dJk3x1aE=", "a page-token key of the operator"
    settings = Settings(outbox_key=outbox_key, page_token_key=page_key)
    shown = repr(settings) + str(settings.describe())
    assert outbox_key not in shown and page_key not in shown
    assert settings.describe()["outbox_key"] == "AUTHZ_OUTBOX_KEY"


def test_a_malformed_outbox_key_stops_the_start(tmp_path: Path) -> None:
    settings = settings_for(f"sqlite:///{tmp_path / 'bad-key.db'}", tmp_path, outbox_key="not-a-fernet-key")
    with pytest.raises(ConfigError, match="not a Fernet key") as refused:
        AuthzApp(settings)
    assert "not-a-fernet-key" not in str(refused.value)
