"""LinkLegacyAccess: link a new account with the legacy portal's credentials, once (rule 11)."""

from __future__ import annotations

from dataclasses import dataclass

from authz.commands.base import Deps, write_lock_within_deadline
from authz.commands.link_codes import THROTTLE_WINDOW, THROTTLED_MESSAGE, throttle_reason
from authz.domain.secrets import verify_django_pbkdf2
from authz.errors import InvalidArgument, ResourceExhausted
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
            # Guesses share the link codes' counters: 10 wrong secrets an hour per account, and 100
            # against the contact the username belongs to (a username names its target exactly).
            contact_id = account.contact_ids[0] if account is not None and account.contact_ids else None
            throttled = throttle_reason(tx, request.account_id, contact_id, deps.clock() - THROTTLE_WINDOW)
        if throttled is not None:
            # Refused before PBKDF2 runs: a throttled guesser costs no CPU. Audited, not counted.
            with write_lock_within_deadline(deps), deps.store.transaction() as tx:
                tx.add_audit(
                    AuditRecord(
                        deps.clock(),
                        request.account_id,
                        "link_legacy_access_throttled",
                        {"username": request.legacy_username, "limit": throttled},
                    ),
                    tx.bump_revision(),
                )
            raise ResourceExhausted(THROTTLED_MESSAGE)
        # PBKDF2 with 600,000 rounds takes a while: verify outside any lock or transaction.
        valid = (
            account is not None
            and account.used_at is None
            and verify_django_pbkdf2(request.legacy_password, account.password_hash)
        )
        with write_lock_within_deadline(deps), deps.store.transaction() as tx:
            now = deps.clock()
            succeeded = (
                valid and account is not None and tx.use_legacy_account(account.username, request.account_id, now)
            )
            tx.add_link_attempt(request.account_id, contact_id, now, bool(succeeded))
            if not succeeded or account is None:
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
