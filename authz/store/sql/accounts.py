"""Accounts linked to contacts, and legacy logins, inside a unit of work."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    and_,
    select,
    update,
)

from authz.store import tables as t
from authz.store.interface import (
    LegacyAccount,
)
from authz.store.sql.rows import _OnConnection


class AccountsSql(_OnConnection):
    """`Accounts` on the unit of work's connection."""

    def link_account(self, account_id: str, contact_id: str, method: str, at: datetime) -> bool:
        exists = self.c.execute(
            select(t.account_links.c.account_id).where(
                and_(t.account_links.c.account_id == account_id, t.account_links.c.contact_id == contact_id)
            )
        ).first()
        if exists:
            return False
        self.c.execute(
            t.account_links.insert().values(account_id=account_id, contact_id=contact_id, method=method, linked_at=at)
        )
        return True

    def linked_contacts(self, account_id: str) -> list[str]:
        rows = self.c.execute(
            select(t.account_links.c.contact_id)
            .where(t.account_links.c.account_id == account_id)
            .order_by(t.account_links.c.contact_id)
        )
        return [row.contact_id for row in rows]

    def accounts_linked_to(self, contact_id: str) -> list[str]:
        rows = self.c.execute(
            select(t.account_links.c.account_id)
            .where(t.account_links.c.contact_id == contact_id)
            .order_by(t.account_links.c.account_id)
        )
        return [row.account_id for row in rows]

    def unlink_contact(self, contact_id: str, *, keep_account: str) -> list[str]:
        others = [account for account in self.accounts_linked_to(contact_id) if account != keep_account]
        if others:
            self.c.execute(
                t.account_links.delete().where(
                    and_(t.account_links.c.contact_id == contact_id, t.account_links.c.account_id.in_(others))
                )
            )
        return others

    def get_legacy_account(self, username: str) -> LegacyAccount | None:
        row = self.c.execute(select(t.legacy_accounts).where(t.legacy_accounts.c.username == username)).first()
        if row is None:
            return None
        rows = list(
            self.c.execute(
                select(t.legacy_account_contacts.c.contact_id, t.legacy_account_contacts.c.used_at)
                .where(t.legacy_account_contacts.c.username == username)
                .order_by(t.legacy_account_contacts.c.contact_id)
            )
        )
        return LegacyAccount(
            row.username,
            row.password_hash,
            tuple(c.contact_id for c in rows),
            row.used_at,
            used_contact_ids=tuple(c.contact_id for c in rows if c.used_at is not None),
        )

    def add_legacy_account(self, account: LegacyAccount) -> None:
        self.c.execute(
            t.legacy_accounts.insert().values(username=account.username, password_hash=account.password_hash)
        )
        if account.contact_ids:
            self.c.execute(
                t.legacy_account_contacts.insert(),
                [{"username": account.username, "contact_id": contact_id} for contact_id in account.contact_ids],
            )

    def use_legacy_account(self, username: str, account_id: str, at: datetime) -> bool:
        result = self.c.execute(
            update(t.legacy_accounts)
            .where(t.legacy_accounts.c.username == username)
            .where(t.legacy_accounts.c.used_at.is_(None))
            .values(used_at=at, used_by_account=account_id)
        )
        return result.rowcount == 1

    def use_legacy_contact(self, username: str, contact_id: str, account_id: str, at: datetime) -> bool:
        lc = t.legacy_account_contacts.c
        result = self.c.execute(
            update(t.legacy_account_contacts)
            .where(lc.username == username)
            .where(lc.contact_id == contact_id)
            .where(lc.used_at.is_(None))
            .values(used_at=at, used_by_account=account_id)
        )
        return result.rowcount == 1
