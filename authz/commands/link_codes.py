"""Issuing and redeeming link codes (rule 10): "Émettre un nouveau code de liaison"."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from authz.commands.base import (
    Attestation,
    Deps,
    WriteOutcome,
    require_manager,
    require_organization,
    run_write,
)
from authz.commands.forms import LINK_CODE_FORM, require_boxes
from authz.commands.persons import PersonChange, require_person_changeable
from authz.commands.profiles import ListProfiles, ListProfilesRequest, Profile
from authz.domain.model import Contact, Organization
from authz.domain.secrets import code_lookup, hash_link_code, new_link_code, normalize_link_code, verify_link_code
from authz.errors import FailedPrecondition, InvalidLinkCode, ResourceExhausted
from authz.mail import render_link_code_email, render_link_moved_email
from authz.store.interface import AuditRecord, LinkCodeRecord, OutboxRow, Transaction

__all__ = [
    "ACCOUNT_FAILURE_LIMIT",
    "CONTACT_FAILURE_LIMIT",
    "THROTTLED_MESSAGE",
    "THROTTLE_WINDOW",
    "IssueLinkCode",
    "IssueLinkCodeRequest",
    "IssueLinkCodeResult",
    "RedeemLinkCode",
    "RedeemLinkCodeRequest",
    "RedeemLinkCodeResult",
    "issue_code",
    "throttle_reason",
]

ACCOUNT_FAILURE_LIMIT = 10
CONTACT_FAILURE_LIMIT = 100
THROTTLE_WINDOW = timedelta(hours=1)
# One message whichever limit: it does not tell a prober whether a contact is being targeted.
THROTTLED_MESSAGE = "too many wrong codes; try again later"


def issue_code(
    deps: Deps, tx: Transaction, contact: Contact, organization: Organization, actor_id: str, now: datetime
) -> datetime:
    """Void the contact's earlier codes, store a new one as a salted hash, queue its email.

    The code exists in clear only in this function and in the outbox row the same
    transaction writes: it never reaches the caller, the audit log or the logs.
    """
    tx.void_link_codes(contact.id, now)
    code = new_link_code()
    salt, digest = hash_link_code(code)
    expires_at = now + timedelta(seconds=deps.settings.link_code_ttl_seconds)
    tx.add_link_code(
        LinkCodeRecord(
            id=uuid.uuid4().hex,
            contact_id=contact.id,
            organization_id=organization.id,
            lookup=code_lookup(code),
            salt=salt,
            code_hash=digest,
            issued_by=actor_id,
            issued_at=now,
            expires_at=expires_at,
        )
    )
    email = render_link_code_email(
        first_name=contact.first_name,
        last_name=contact.last_name,
        language=contact.language,
        organization_name=organization.name,
        code=code,
        expires_at=expires_at,
    )
    # Retried until the code itself expires: an email after that would carry a dead code.
    tx.enqueue_mail(OutboxRow(uuid.uuid4().hex, contact.email, email.subject, email.body, expires_at=expires_at), now)
    return expires_at


@dataclass(frozen=True)
class IssueLinkCodeRequest:
    actor_id: str
    organization_id: str
    contact_id: str
    request_id: str = ""
    attestation: Attestation = field(default_factory=Attestation)


@dataclass
class IssueLinkCodeResult:
    expires_at: str  # ISO 8601, kept as text so a replayed response is the same
    revision: str = ""


class IssueLinkCode:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def execute(self, request: IssueLinkCodeRequest) -> IssueLinkCodeResult:
        boxes = require_boxes(request.attestation, LINK_CODE_FORM)

        def body(tx: Transaction, now: datetime) -> WriteOutcome:
            organization = require_organization(tx, request.organization_id)
            require_manager(self.deps, request.actor_id, organization.id, now)
            # Rule 15: only for a person active here by a relation of this organization's own.
            contact = require_person_changeable(
                tx, organization.id, request.contact_id, PersonChange(link_code=True), now
            )
            if not contact.email:
                raise FailedPrecondition(
                    f"contact {contact.id!r} has no email address to send the code to", reason="NO_EMAIL"
                )
            expires_at = issue_code(self.deps, tx, contact, organization, request.actor_id, now)
            audit = AuditRecord(
                at=now,
                actor_id=request.actor_id,
                action="issue_link_code",
                organization_id=organization.id,
                request_id=request.request_id or None,
                attestation=boxes,
                changes={"contact_id": contact.id, "expires_at": expires_at},
            )
            return WriteOutcome(
                IssueLinkCodeResult(expires_at.isoformat()), audit, after_commit=[self.deps.wake_mailer]
            )

        return run_write(
            self.deps,
            "issue_link_code",
            request,
            request.request_id,
            body,
            IssueLinkCodeResult,
            actor_id=request.actor_id,
        )


@dataclass(frozen=True)
class RedeemLinkCodeRequest:
    account_id: str
    code: str


@dataclass
class RedeemLinkCodeResult:
    contact_id: str
    organization_id: str
    revision: str = ""
    # The account's profiles once linked, for the success message (read after the write).
    profiles: list[Profile] = field(default_factory=list)


class RedeemLinkCode:
    """Redeem a code: single use, bound to its contact, throttled, every attempt audited.

    Throttling counts wrong attempts in the last hour: 10 per account, 100 per contact.
    A wrong code names no contact by itself, so an attempt is held against a contact when
    the code typed is one of that contact's (used, voided or expired), or when the same
    account has, within the window, typed one of that contact's codes before: it is after
    that contact. While throttled, even the right code is refused, and the refusal is
    audited but not counted, so the window does pass.
    """

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def execute(self, request: RedeemLinkCodeRequest) -> RedeemLinkCodeResult:
        code = normalize_link_code(request.code)
        lookup = code_lookup(code) if code is not None else None
        account_id = request.account_id

        def body(tx: Transaction, now: datetime) -> WriteOutcome:
            since = now - THROTTLE_WINDOW
            # The counters are read and the attempt recorded in one write, which holds the revision
            # row's lock (run_write): guesses sent at once, to any process, are weighed one after the
            # other, never past the limit.
            record = tx.find_link_code(lookup) if lookup is not None else None
            contact_id = record.contact_id if record is not None else tx.last_attempted_contact(account_id, since)
            throttled = throttle_reason(tx, account_id, contact_id, since)
            if throttled is not None:
                audit = AuditRecord(
                    now, account_id, "redeem_link_code_throttled", {"contact_id": contact_id, "limit": throttled}
                )
                return WriteOutcome(
                    None, audit, error=ResourceExhausted(THROTTLED_MESSAGE, reason="LINK_THROTTLED"), bookkeeping=True
                )
            # The conditional update in use_link_code, not a lock, is what makes a code single-use.
            valid = (
                code is not None
                and record is not None
                and record.used_at is None
                and record.voided_at is None
                and now < record.expires_at
                and verify_link_code(code, record.salt, record.code_hash)
                and tx.use_link_code(record.id, account_id, now)
            )
            tx.add_link_attempt(account_id, contact_id, now, bool(valid))
            if not valid or record is None:
                audit = AuditRecord(now, account_id, "redeem_link_code_failed", {"contact_id": contact_id})
                # A wrong guess is throttle bookkeeping, not an authorization change: no revision.
                return WriteOutcome(None, audit, error=InvalidLinkCode(), bookkeeping=True)
            tx.link_account(account_id, record.contact_id, "link_code", now)
            # Rule 15: the code binds the redeeming account to the person; the link moves, and the
            # person is told at the address on file (theirs: no manager changes a linked person's email).
            moved_from = tx.unlink_contact(record.contact_id, keep_account=account_id)
            after_commit = []
            if moved_from:
                _tell_link_moved(tx, record.contact_id, now)
                after_commit.append(self.deps.wake_mailer)
            audit = AuditRecord(
                now,
                account_id,
                "redeem_link_code",
                {"contact_id": record.contact_id, "account_id": account_id, "moved_from": moved_from},
                organization_id=record.organization_id,
            )
            return WriteOutcome(
                RedeemLinkCodeResult(record.contact_id, record.organization_id), audit, after_commit=after_commit
            )

        result = run_write(self.deps, "redeem_link_code", request, "", body, RedeemLinkCodeResult)
        result.profiles = ListProfiles(self.deps).execute(ListProfilesRequest(account_id))
        return result


def _tell_link_moved(tx: Transaction, contact_id: str, now: datetime) -> None:
    contact = tx.get_contact(contact_id)
    if contact is None or not contact.email:
        return
    email = render_link_moved_email(
        first_name=contact.first_name, last_name=contact.last_name, language=contact.language
    )
    tx.enqueue_mail(OutboxRow(uuid.uuid4().hex, contact.email, email.subject, email.body), now)


def throttle_reason(tx: Transaction, account_id: str, contact_id: str | None, since: datetime) -> str | None:
    """Which limit this attempt is over ("account" or "contact"), or None when it may be tried."""
    if tx.count_failed_attempts(since=since, account_id=account_id) >= ACCOUNT_FAILURE_LIMIT:
        return "account"
    if contact_id is not None and tx.count_failed_attempts(since=since, contact_id=contact_id) >= CONTACT_FAILURE_LIMIT:
        return "contact"
    return None
