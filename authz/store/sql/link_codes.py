"""Link codes, inside a unit of work."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    select,
    update,
)

from authz.store import tables as t
from authz.store.interface import (
    LinkCodeRecord,
)
from authz.store.sql.rows import _OnConnection


class LinkCodesSql(_OnConnection):
    """`LinkCodes` on the unit of work's connection."""

    def add_link_code(self, record: LinkCodeRecord) -> None:
        self.c.execute(
            t.link_codes.insert().values(
                id=record.id,
                contact_id=record.contact_id,
                organization_id=record.organization_id,
                lookup=record.lookup,
                salt=record.salt,
                code_hash=record.code_hash,
                issued_by=record.issued_by,
                issued_at=record.issued_at,
                expires_at=record.expires_at,
            )
        )

    def void_link_codes(self, contact_id: str, at: datetime) -> int:
        result = self.c.execute(
            update(t.link_codes)
            .where(t.link_codes.c.contact_id == contact_id)
            .where(t.link_codes.c.used_at.is_(None))
            .where(t.link_codes.c.voided_at.is_(None))
            .values(voided_at=at)
        )
        return int(result.rowcount)

    def find_link_code(self, lookup: str) -> LinkCodeRecord | None:
        row = self.c.execute(select(t.link_codes).where(t.link_codes.c.lookup == lookup)).first()
        if row is None:
            return None
        return LinkCodeRecord(
            id=row.id,
            contact_id=row.contact_id,
            organization_id=row.organization_id,
            lookup=row.lookup,
            salt=row.salt,
            code_hash=row.code_hash,
            issued_by=row.issued_by,
            issued_at=row.issued_at,
            expires_at=row.expires_at,
            used_at=row.used_at,
            voided_at=row.voided_at,
        )

    def use_link_code(self, code_id: str, account_id: str, at: datetime) -> bool:
        # The conditional update is what makes a code single-use under concurrency:
        # of two redemptions racing, only one sees used_at still empty.
        result = self.c.execute(
            update(t.link_codes)
            .where(t.link_codes.c.id == code_id)
            .where(t.link_codes.c.used_at.is_(None))
            .where(t.link_codes.c.voided_at.is_(None))
            .values(used_at=at, used_by_account=account_id)
        )
        return result.rowcount == 1
