"""Small helpers for integration tests: row counts, extracting codes from emails."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from authz.store import tables

from ..conftest import Running

CODE = re.compile(r"(?:Code de liaison :|Link code:) ([0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4})")
TABLES = (
    tables.organizations,
    tables.contacts,
    tables.relations,
    tables.relation_subjects,
    tables.link_codes,
    tables.outbox,
    tables.audit_log,
    tables.idempotency_keys,
    tables.account_links,
    tables.store_revision,
)


def row_counts(server: Running) -> dict[str, object]:
    """Every table's row count, plus the columns a removal or a grant would change."""
    with server.store.engine.connect() as connection:
        counts: dict[str, object] = {
            table.name: connection.execute(select(func.count()).select_from(table)).scalar_one() for table in TABLES
        }
        counts["ended"] = connection.execute(
            select(func.count()).select_from(tables.relations).where(tables.relations.c.ended_at.is_not(None))
        ).scalar_one()
        counts["removed_subjects"] = connection.execute(
            select(func.count())
            .select_from(tables.relation_subjects)
            .where(tables.relation_subjects.c.removed_at.is_not(None))
        ).scalar_one()
        counts["revision"] = connection.execute(select(tables.store_revision.c.revision)).scalar_one()
    return counts


def codes_for(server: Running, email: str) -> list[str]:
    """Link codes mailed to `email`, oldest first."""
    return [m.group(1) for body in server.emails() if email in body for m in [CODE.search(body)] if m]
