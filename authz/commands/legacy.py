"""LinkLegacyAccess: link a new account with the legacy portal's credentials, once (rule 11)."""

from __future__ import annotations

from dataclasses import dataclass

from authz.commands.base import Deps
from authz.domain.secrets import verify_django_pbkdf2
from authz.errors import InvalidArgument
from authz.store.interface import AuditRecord

__all__ = ["BAD_LEGACY_CREDENTIALS", "LinkLegacyAccess", "LinkLegacyAccessRequest", "LinkLegacyAccessResult"]

BAD_LEGACY_CREDENTIALS = "the legacy credentials are not valid, or were already used to link an account"


@dataclass(frozen=True)
class LinkLegacyAccessRequest:
    account_id: str
    legacy_username: str
    legacy_password: str


@dataclass
class LinkLegacyAccessResult:
    contact_ids: list[str]
    revision: str = ""


class LinkLegacyAccess:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def execute(self, request: LinkLegacyAccessRequest) -> LinkLegacyAccessResult:
        deps = self.deps
        with deps.store.transaction() as tx:
            account = tx.get_legacy_account(request.legacy_username)
        # PBKDF2 with 600,000 rounds takes a while: verify outside any lock or transaction.
        valid = (
            account is not None
            and account.used_at is None
            and verify_django_pbkdf2(request.legacy_password, account.password_hash)
        )
        with deps.write_lock, deps.store.transaction() as tx:
            now = deps.clock()
            if not valid or account is None or not tx.use_legacy_account(account.username, request.account_id, now):
                tx.add_audit(
                    AuditRecord(
                        now, request.account_id, "link_legacy_access_failed", {"username": request.legacy_username}
                    ),
                    tx.bump_revision(),
                )
                failed = True
            else:
                failed = False
                for contact_id in account.contact_ids:
                    tx.link_account(request.account_id, contact_id, "legacy", now)
                revision = tx.bump_revision()
                tx.add_audit(
                    AuditRecord(
                        now,
                        request.account_id,
                        "link_legacy_access",
                        {"username": account.username, "contact_ids": list(account.contact_ids)},
                    ),
                    revision,
                )
                deps.engine.revision = max(deps.engine.revision, revision)
        if failed or account is None:
            raise InvalidArgument.field("legacy_password", BAD_LEGACY_CREDENTIALS)
        return LinkLegacyAccessResult(list(account.contact_ids), str(revision))
