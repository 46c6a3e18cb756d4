"""A throw-away PostgreSQL database, for benchmarks that need servers of their own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text

__all__ = ["scratch_database"]


@contextmanager
def scratch_database(admin_url: str, prefix: str = "authz_scratch") -> Iterator[str]:
    """Create an empty database on the server of `admin_url`, yield its URL, then drop it
    (connections still open to it included)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
