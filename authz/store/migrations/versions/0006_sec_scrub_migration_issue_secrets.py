"""Strip secrets from the refused import rows already kept for managers.

Refused `legacy_accounts` rows used to be kept verbatim, their `pbkdf2_sha256$…` password
hash included, and shown by ListMigrationIssues. The import now strips them before anything
is kept; this removes them from the rows stored before.

Revision ID: 0006_sec
Revises: 0005
Create Date: 2026-12-04 23:40:00
"""

from __future__ import annotations

import json
import re
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006_sec"
down_revision = "0005"
branch_labels = None
depends_on = None

# A frozen copy of the rule the import applies (authz.commands.migration_issues.scrub_secrets):
# a migration keeps doing what it did when it was written.
_SECRET_FIELDS = frozenset({"password_hash", "password", "code", "link_code", "token", "secret"})
_REMOVED = "[removed]"
_HASH_LIKE = re.compile(r"[a-z0-9_]*pbkdf2[a-z0-9_]*\$\S*", re.IGNORECASE)


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _REMOVED if str(k).lower() in _SECRET_FIELDS else _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(item) for item in value]
    if isinstance(value, str):
        return _HASH_LIKE.sub(_REMOVED, value)
    return value


def upgrade() -> None:
    issues = sa.table(
        "migration_issues", sa.column("id", sa.Integer), sa.column("row", sa.JSON), sa.column("reason", sa.Text)
    )
    connection = op.get_bind()
    for issue_id, row, reason in connection.execute(sa.select(issues.c.id, issues.c.row, issues.c.reason)).all():
        parsed = json.loads(row) if isinstance(row, str) else row
        clean_row, clean_reason = _scrub(parsed), _scrub(reason)
        if clean_row != parsed or clean_reason != reason:
            connection.execute(
                issues.update().where(issues.c.id == issue_id).values(row=clean_row, reason=clean_reason)
            )


def downgrade() -> None:
    # What was removed is gone: the hashes stay in the legacy system's own export, not here.
    pass
