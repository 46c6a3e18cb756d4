"""LinkLegacyAccess: link a new account with the legacy portal's credentials, once (rule 11).

A guess is weighed in three steps. First a write (which, as every write, holds the store's
revision row until it commits): the throttle counters are read and the attempt is recorded
(as failed until proven), so guesses sent at once are counted one after the other and
never pass the limit.
Then the password is checked, outside any lock (PBKDF2 takes a while), with the same work
whether the login exists or not, so the time of the answer tells nothing. Last, a second
write links the account, or audits the refusal. Only the link is an authorization change:
the attempt, a refusal and a request to designate are throttle bookkeeping, committed without
a revision (`WriteOutcome.bookkeeping`), so a guess costs no revision and reaches no Watch.

A login the old system shared between several people (rule 11) links only the person who
uses it, each in turn: a call names one contact (`contact_ids` holds at most one) among
those the login maps to, each contact links once, and an account that linked one of the
login's contacts links no other: the others stay for their owners. With one contact
mapped, the designation may be left out.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from authz.commands.base import Deps, WriteOutcome, run_write
from authz.commands.link_codes import ACCOUNT_FAILURE_LIMIT, THROTTLE_WINDOW, THROTTLED_MESSAGE
from authz.commands.profiles import ListProfiles, ListProfilesRequest, Profile
from authz.domain.secrets import decoy_legacy_hash, verify_django_pbkdf2
from authz.errors import FailedPrecondition, FieldViolation, InvalidArgument, ResourceExhausted
from authz.store.interface import AuditRecord, LegacyAccount, Transaction

__all__ = [
    "BAD_LEGACY_CREDENTIALS",
    "LEGACY_LOGIN_FAILURE_LIMIT",
    "LinkLegacyAccess",
    "LinkLegacyAccessRequest",
    "LinkLegacyAccessResult",
]

BAD_LEGACY_CREDENTIALS = "the legacy credentials are not valid, or were already used to link an account"
HASHING_BUSY = "too many legacy sign-ins are being checked right now; nothing was recorded, try again shortly"
ONE_PERSON_PER_CALL = "name one file, your own: a legacy login links one person per call"
ACCOUNT_ALREADY_LINKED_TO_LOGIN = (
    "this account already linked a file of this shared legacy login: each person links their own file, "
    "from their own account"
)
# Wrong passwords an hour against one legacy login, whichever accounts send them: the login is
# the thing being guessed.
LEGACY_LOGIN_FAILURE_LIMIT = 10


@dataclass(frozen=True)
class LinkLegacyAccessRequest:
    account_id: str
    legacy_username: str
    legacy_password: str
    contact_ids: tuple[str, ...] = ()  # the person's own contact(s) among those the login maps to


@dataclass
class LinkLegacyAccessResult:
    contact_ids: list[str]
    revision: str = ""
    # The account's profiles once linked, for the success message (read after the write).
    profiles: list[Profile] = field(default_factory=list)


@dataclass
class _Weighed:
    attempt_id: int
    account: LegacyAccount | None
    revision: str = ""


_Body = Callable[[Transaction, datetime], WriteOutcome]


class LinkLegacyAccess:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        # PBKDF2 is slow on purpose: at most this many run at once, each on the worker thread of
        # its call, so a burst of attempts leaves the other workers to checks and health.
        self._hashing = threading.BoundedSemaphore(deps.settings.max_concurrent_hashing)

    def execute(self, request: LinkLegacyAccessRequest) -> LinkLegacyAccessResult:
        if len(set(request.contact_ids)) > 1:
            # Rule 11: one person per call. Refused before anything is counted or hashed; it tells
            # nothing about the login (the same answer whether it exists or is shared).
            raise InvalidArgument.field("contact_ids", ONE_PERSON_PER_CALL)
        # Refused at once when busy, before anything is recorded: the person simply tries again.
        if not self._hashing.acquire(blocking=False):
            raise ResourceExhausted(HASHING_BUSY, reason="HASHING_BUSY")
        try:
            return self._execute(request)
        finally:
            self._hashing.release()

    def _execute(self, request: LinkLegacyAccessRequest) -> LinkLegacyAccessResult:
        weighed = run_write(self.deps, "link_legacy_access_attempt", request, "", self._weigh(request), _Weighed)
        account = weighed.account
        # The same PBKDF2 work for an unknown login as for a known one.
        stored_hash = account.password_hash if account is not None else decoy_legacy_hash()
        valid = verify_django_pbkdf2(request.legacy_password, stored_hash)
        if account is None or not valid:
            return run_write(
                self.deps, "link_legacy_access", request, "", self._refuse(request), LinkLegacyAccessResult
            )
        # Only a person who knows the password learns that the login is shared, and by whom.
        designated, problem = _designation(account, request.contact_ids)
        if problem is not None:
            return run_write(
                self.deps,
                "link_legacy_access",
                request,
                "",
                self._ask_designation(request, account, weighed, problem),
                LinkLegacyAccessResult,
            )
        result = run_write(
            self.deps,
            "link_legacy_access",
            request,
            "",
            self._link(request, account, weighed, designated),
            LinkLegacyAccessResult,
        )
        result.profiles = ListProfiles(self.deps).execute(ListProfilesRequest(request.account_id))
        return result

    @staticmethod
    def _refuse(request: LinkLegacyAccessRequest) -> _Body:
        def body(tx: Transaction, now: datetime) -> WriteOutcome:
            audit = AuditRecord(
                now, request.account_id, "link_legacy_access_failed", {"username": request.legacy_username}
            )
            return WriteOutcome(
                None,
                audit,
                error=InvalidArgument.field("legacy_password", BAD_LEGACY_CREDENTIALS),
                bookkeeping=True,
            )

        return body

    def _weigh(self, request: LinkLegacyAccessRequest) -> _Body:
        def body(tx: Transaction, now: datetime) -> WriteOutcome:
            username, account_id = request.legacy_username, request.account_id
            since = now - THROTTLE_WINDOW
            limit = None
            if tx.count_failed_attempts(since=since, account_id=account_id) >= ACCOUNT_FAILURE_LIMIT:
                limit = "account"
            elif tx.count_failed_attempts(since=since, legacy_username=username) >= LEGACY_LOGIN_FAILURE_LIMIT:
                limit = "legacy_username"
            if limit is not None:
                # Refused before PBKDF2 runs: a throttled guesser costs no CPU. Audited, not counted.
                audit = AuditRecord(
                    now, account_id, "link_legacy_access_throttled", {"username": username, "limit": limit}
                )
                return WriteOutcome(
                    None, audit, error=ResourceExhausted(THROTTLED_MESSAGE, reason="LINK_THROTTLED"), bookkeeping=True
                )
            account = tx.get_legacy_account(username)
            mapped = account.contact_ids if account is not None else ()
            named = [c for c in request.contact_ids if c in mapped]
            contact_id = named[0] if named else (mapped[0] if mapped else None)
            attempt_id = tx.add_link_attempt(account_id, contact_id, now, False, legacy_username=username)
            audit = AuditRecord(now, account_id, "link_legacy_access_attempt", {"username": username})
            return WriteOutcome(_Weighed(attempt_id, account), audit, bookkeeping=True)

        return body

    @staticmethod
    def _ask_designation(
        request: LinkLegacyAccessRequest, account: LegacyAccount, weighed: _Weighed, problem: FieldViolation
    ) -> _Body:
        def body(tx: Transaction, now: datetime) -> WriteOutcome:
            tx.mark_link_attempt_succeeded(weighed.attempt_id)  # the password was right: not a wrong guess
            choices = []
            for contact_id in account.contact_ids:
                contact = tx.get_contact(contact_id)
                choices.append(f"{contact_id} ({contact.display_name})" if contact is not None else contact_id)
            description = f"{problem.description}: {', '.join(choices)}"
            audit = AuditRecord(
                now,
                request.account_id,
                "link_legacy_access_designation",
                {"username": account.username, "contact_ids": list(request.contact_ids)},
            )
            error = InvalidArgument(f"{problem.field}: {description}", [FieldViolation(problem.field, description)])
            return WriteOutcome(None, audit, error=error, bookkeeping=True)

        return body

    def _link(
        self, request: LinkLegacyAccessRequest, account: LegacyAccount, weighed: _Weighed, designated: list[str]
    ) -> _Body:
        def body(tx: Transaction, now: datetime) -> WriteOutcome:
            # Each contact once: of two right guesses racing, one links; the other is told what any
            # wrong guess is. Checked for all before any is marked, so a refusal marks none.
            current = tx.get_legacy_account(account.username)
            if current is None or any(contact_id in current.used_contact_ids for contact_id in designated):
                return self._refuse(request)(tx, now)
            already = [c for c in tx.linked_contacts(request.account_id) if c in current.contact_ids]
            if already and already != designated:
                # Each person in turn, from their own account: one account does not collect a shared
                # login's files one call at a time.
                tx.mark_link_attempt_succeeded(weighed.attempt_id)  # the password was right
                audit = AuditRecord(
                    now,
                    request.account_id,
                    "link_legacy_access_refused",
                    {"username": account.username, "contact_ids": designated, "already_linked": already},
                )
                error = FailedPrecondition(ACCOUNT_ALREADY_LINKED_TO_LOGIN, reason="LEGACY_LOGIN_ALREADY_LINKED")
                return WriteOutcome(None, audit, error=error)
            for contact_id in designated:
                tx.use_legacy_contact(account.username, contact_id, request.account_id, now)
                tx.link_account(request.account_id, contact_id, "legacy", now)
            tx.mark_link_attempt_succeeded(weighed.attempt_id)
            audit = AuditRecord(
                now,
                request.account_id,
                "link_legacy_access",
                {"username": account.username, "contact_ids": designated},
            )
            return WriteOutcome(LinkLegacyAccessResult(list(designated)), audit)

        return body


def _designation(account: LegacyAccount, named: tuple[str, ...]) -> tuple[list[str], FieldViolation | None]:
    """The contacts to link: those named, all of them among the login's; or its only one."""
    if not named:
        if len(account.contact_ids) == 1:
            return list(account.contact_ids), None
        return [], FieldViolation(
            "contact_ids", "this legacy login was shared by several people: designate your own file among"
        )
    for index, contact_id in enumerate(named):
        if contact_id not in account.contact_ids:
            return [], FieldViolation(
                f"contact_ids[{index}]", "is not one of the files of this legacy login, which are"
            )
    return list(dict.fromkeys(named)), None
