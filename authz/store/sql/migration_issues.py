"""Rows the import refused, kept for the organizations' managers."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from sqlalchemy import (
    select,
    update,
)

from authz.store import tables as t
from authz.store.interface import (
    MigrationIssueRecord,
)
from authz.store.sql.rows import _jsonable, _OnConnection


def _issue_fingerprint(issue: MigrationIssueRecord) -> str:
    payload = json.dumps([issue.section, _jsonable(issue.row), issue.reason], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def _issue(row: Any) -> MigrationIssueRecord:
    return MigrationIssueRecord(
        id=row.id,
        organization_id=row.organization_id,
        section=row.section,
        row_index=row.row_index,
        row_id=row.row_id,
        reason=row.reason,
        row=row.row,
        match_key=row.match_key,
        reported_at=row.reported_at,
        resolved_at=row.resolved_at,
        resolved_by=row.resolved_by,
        resolution=row.resolution,
    )


class MigrationIssuesSql(_OnConnection):
    """`MigrationIssues` on the unit of work's connection."""

    def add_migration_issue(self, issue: MigrationIssueRecord) -> bool:
        m = t.migration_issues.c
        fingerprint = _issue_fingerprint(issue)
        same_organization = (
            m.organization_id.is_(None) if issue.organization_id is None else m.organization_id == issue.organization_id
        )
        if self.c.execute(select(m.id).where(m.fingerprint == fingerprint).where(same_organization)).first():
            return False
        self.c.execute(
            t.migration_issues.insert().values(
                fingerprint=fingerprint,
                organization_id=issue.organization_id,
                section=issue.section,
                row_index=issue.row_index,
                row_id=issue.row_id,
                reason=issue.reason,
                row=_jsonable(issue.row),
                match_key=issue.match_key,
                reported_at=issue.reported_at,
            )
        )
        return True

    def migration_issues_page(
        self, organization_id: str, *, include_resolved: bool, after: int | None, limit: int
    ) -> list[MigrationIssueRecord]:
        m = t.migration_issues.c
        query = select(t.migration_issues).where(m.organization_id == organization_id)
        if not include_resolved:
            query = query.where(m.resolved_at.is_(None))
        if after is not None:
            query = query.where(m.id > after)
        return [_issue(row) for row in self.c.execute(query.order_by(m.id).limit(limit))]

    def resolve_migration_issue(
        self, issue_id: int, organization_id: str, at: datetime, by: str, resolution: str
    ) -> MigrationIssueRecord | None:
        m = t.migration_issues.c
        result = self.c.execute(
            update(t.migration_issues)
            .where(m.id == issue_id)
            .where(m.organization_id == organization_id)
            .where(m.resolved_at.is_(None))
            .values(resolved_at=at, resolved_by=by, resolution=resolution)
        )
        if result.rowcount != 1:
            return None
        return _issue(self.c.execute(select(t.migration_issues).where(m.id == issue_id)).one())

    def resolve_migration_issues_matching(
        self, organization_id: str, match_key: str, at: datetime, by: str
    ) -> list[int]:
        m = t.migration_issues.c
        open_ids = [
            row.id
            for row in self.c.execute(
                select(m.id)
                .where(m.organization_id == organization_id)
                .where(m.match_key == match_key)
                .where(m.resolved_at.is_(None))
            )
        ]
        if open_ids:
            self.c.execute(
                update(t.migration_issues)
                .where(m.id.in_(open_ids))
                .values(resolved_at=at, resolved_by=by, resolution="re-established")
            )
        return open_ids
