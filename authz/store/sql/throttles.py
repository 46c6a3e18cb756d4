"""Link attempts, counted to slow down guessing, inside a unit of work."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    func,
    select,
    update,
)

from authz.store import tables as t
from authz.store.sql.rows import _OnConnection


class ThrottlesSql(_OnConnection):
    """`Throttles` on the unit of work's connection."""

    def add_link_attempt(
        self,
        account_id: str,
        contact_id: str | None,
        at: datetime,
        success: bool,
        legacy_username: str | None = None,
    ) -> int:
        result = self.c.execute(
            t.link_code_attempts.insert()
            .values(
                account_id=account_id, contact_id=contact_id, at=at, success=success, legacy_username=legacy_username
            )
            .returning(t.link_code_attempts.c.id)
        )
        return int(result.scalar_one())

    def mark_link_attempt_succeeded(self, attempt_id: int) -> None:
        self.c.execute(update(t.link_code_attempts).where(t.link_code_attempts.c.id == attempt_id).values(success=True))

    def last_attempted_contact(self, account_id: str, since: datetime) -> str | None:
        """The contact whose codes this account most recently got wrong since `since` (throttling)."""
        a = t.link_code_attempts.c
        return self.c.execute(
            select(a.contact_id)
            .where(a.account_id == account_id)
            .where(a.at >= since)
            .where(a.success.is_(False))
            .where(a.contact_id.is_not(None))
            .order_by(a.at.desc())
            .limit(1)
        ).scalar()

    def count_failed_attempts(
        self,
        *,
        since: datetime,
        account_id: str | None = None,
        contact_id: str | None = None,
        legacy_username: str | None = None,
    ) -> int:
        a = t.link_code_attempts.c
        query = select(func.count()).select_from(t.link_code_attempts).where(a.at >= since).where(a.success.is_(False))
        if account_id is not None:
            query = query.where(a.account_id == account_id)
        if contact_id is not None:
            query = query.where(a.contact_id == contact_id)
        if legacy_username is not None:
            query = query.where(a.legacy_username == legacy_username)
        return int(self.c.execute(query).scalar_one())
