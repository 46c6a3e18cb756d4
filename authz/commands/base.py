"""What every command shares: its dependencies, the write envelope, the common checks."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from authz.calls import account_id, account_required, caller_name, remaining
from authz.commands.invariants import check_write
from authz.config import Settings
from authz.domain.dates import in_force, local_date, utc_now
from authz.domain.model import END_OF_TIME, MANAGEMENT_SUBJECT, Organization, Relation, Right
from authz.domain.validation import Violations
from authz.engine.index import DecisionEngine
from authz.errors import (
    AuthzError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from authz.replication.changes import apply_changes
from authz.replication.tokens import TokenFormat
from authz.store.changes import Change
from authz.store.interface import AuditRecord, Store, Transaction

if TYPE_CHECKING:
    from authz.replication.follower import Follower

__all__ = [
    "Attestation",
    "Deps",
    "WriteOutcome",
    "parse_subjects",
    "parse_window",
    "relation_in_force",
    "require_attestation",
    "require_manager",
    "require_organization",
    "require_reader",
    "run_write",
    "write_lock_within_deadline",
]

R = TypeVar("R")


def _noop() -> None:
    return None


@dataclass
class Deps:
    """Everything a command may use, passed in; defaults filled here and nowhere else."""

    store: Store
    engine: DecisionEngine
    settings: Settings = field(default_factory=Settings)
    clock: Callable[[], datetime] = utc_now
    # Writes are serialized in-process so the engine applies them in commit order.
    write_lock: threading.Lock = field(default_factory=threading.Lock)
    wake_mailer: Callable[[], None] = _noop
    # -- revision tokens ("<revision>.<store id>") and this process's follower of the log.
    tokens: TokenFormat | None = None
    follower: Follower | None = None
    # Told each committed revision before the write answers: sibling worker processes catch up to it.
    published: Callable[[int], None] | None = None


@dataclass(frozen=True, slots=True)
class Attestation:
    authorizes_acting: bool = False
    changes_accurate: bool = False

    def as_dict(self) -> dict[str, bool]:
        return {"authorizes_acting": self.authorizes_acting, "changes_accurate": self.changes_accurate}


@dataclass
class WriteOutcome:
    """What a command's transaction body hands back to the envelope."""

    result: Any
    audit: AuditRecord
    changed: list[Relation] = field(default_factory=list)
    after_commit: list[Callable[[], None]] = field(default_factory=list)
    # Raised once the transaction has committed: what the body recorded (a refused guess) stays.
    error: AuthzError | None = None
    # Only throttle bookkeeping and its audit (an attempt counted, a guess refused): no
    # authorization changed, so no revision is taken and nothing goes to the change log or Watch.
    bookkeeping: bool = False


def fingerprint(request: Any) -> str:
    """A stable digest of a request, to tell a retry from a different request with the same id.

    Lists are compared as sets of items: the same subjects or relations in another order are
    the same request.
    """
    payload = json.dumps(_plain(request), sort_keys=True, default=str).encode()
    return hashlib.sha256(payload).hexdigest()


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name != "request_id"}
    if isinstance(value, list | tuple):
        return sorted((_plain(item) for item in value), key=lambda item: json.dumps(item, sort_keys=True, default=str))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def idempotency_key(request_id: str, actor_id: str) -> str:
    """`request_id` as the store keeps it: scoped by the calling service and the acting person,
    so that another caller or actor reusing an id is a different request, not a conflict."""
    scoped = "\x1f".join((caller_name(), actor_id, request_id))
    return hashlib.sha256(scoped.encode()).hexdigest()


_DEADLINE_PASSED = "the caller's deadline passed before the write could be made; nothing was written"
_RELOADING = "this process is reloading the store's state; nothing was written, try again"
_CATCH_UP_PAGE = 500
_PRUNE_EVERY = 256  # revisions between two retention passes over the change log
_LOCK_BUSY = "the service is busy with other writes; nothing was written, try again"


@contextmanager
def write_lock_within_deadline(deps: Deps) -> Iterator[None]:
    """Hold the write lock, waited for no longer than the caller will (or the server's own bound)."""
    left = remaining()
    wait = deps.settings.write_wait_seconds if left is None else max(min(left, deps.settings.write_wait_seconds), 0.0)
    if not deps.write_lock.acquire(timeout=wait):
        if left is not None and left <= wait:
            raise Unavailable(_DEADLINE_PASSED, reason="DEADLINE_PASSED")
        raise Unavailable(_LOCK_BUSY, reason="WRITES_BUSY")
    try:
        yield
    finally:
        deps.write_lock.release()


def _before_commit() -> None:
    left = remaining()
    if left is not None and left <= 0:
        # Raising inside the transaction rolls it back: a caller that gave up is never left guessing.
        raise Unavailable(_DEADLINE_PASSED, reason="DEADLINE_PASSED")


def run_write(
    deps: Deps,
    operation: str,
    request: Any,
    request_id: str,
    body: Callable[[Transaction, datetime], WriteOutcome],
    result_type: Callable[..., R],
    *,
    actor_id: str = "",
) -> R:
    """The one path of every write: where it begins, commits, bumps the revision, audits and tells the engine.

    In one transaction: the revision row's lock first, then this process's engine caught up
    to the store's newest revision (so the body's permission checks see every write committed
    by any process or host, and none can commit before this one ends); the idempotency record
    of `request_id` (scoped by caller and actor), the command's change, the revision, the
    change log row (the changed relations as they stand after the write, numbered by the
    revision), the audit record. After commit, inside the write lock, the engine learns the
    change through `DecisionEngine.apply`, so it applies writes in the order the store
    committed them. A body may record something and still fail (a refused guess is recorded
    and audited): it sets `WriteOutcome.error`, raised after commit.

    Before the revision is taken, the rules every write keeps are checked on what it changed
    (authz/commands/invariants.py); a violation rolls it back. A body that only kept throttle
    bookkeeping sets `WriteOutcome.bookkeeping`: committed and audited under the newest
    revision, with no new one, no change log row, nothing for the engine or Watch.
    """
    try:
        return _write_once(deps, operation, request, request_id, body, result_type, actor_id)
    except _Reloading as behind:
        # The engine needs the whole state again (a bulk import, or the log beyond reach): rolled
        # back, the write waits for this process's reload within its deadline, then runs once more.
        if deps.follower is None:
            raise Unavailable(_RELOADING, reason="RELOADING") from None
        left = remaining()
        wait = deps.settings.write_wait_seconds if left is None else min(left, deps.settings.write_wait_seconds)
        try:
            deps.follower.catch_up(behind.revision, timeout=max(wait, 0.0))
        except Unavailable:
            raise Unavailable(_RELOADING, reason="RELOADING") from None
    try:
        return _write_once(deps, operation, request, request_id, body, result_type, actor_id)
    except _Reloading:
        raise Unavailable(_RELOADING, reason="RELOADING") from None


class _Reloading(Exception):
    """The engine is too far behind the store for the change log: it must load the state whole."""

    def __init__(self, revision: int) -> None:
        super().__init__(revision)
        self.revision = revision


def _write_once(
    deps: Deps,
    operation: str,
    request: Any,
    request_id: str,
    body: Callable[[Transaction, datetime], WriteOutcome],
    result_type: Callable[..., R],
    actor_id: str,
) -> R:
    digest = fingerprint(request) if request_id else ""
    key = idempotency_key(request_id, actor_id) if request_id else ""
    with write_lock_within_deadline(deps):
        outcome: WriteOutcome | None = None
        with deps.store.transaction() as tx:
            # Early, not at bump_revision: held from here, no write of any process commits before
            # this one, so the state caught up to now is the state this write decides on.
            newest = tx.lock_revision()
            _catch_up(deps, tx, newest)
            if account_required():
                _require_account_acts(tx, actor_id, request)
            if key:
                previous = tx.get_idempotent(key, operation)
                if previous is not None:
                    stored_digest, response = previous
                    if stored_digest != digest:
                        raise FailedPrecondition(
                            f"request_id {request_id!r} was already used for a different {operation} request",
                            reason="REQUEST_ID_REUSED",
                        )
                    return result_type(**response)
            now = deps.clock()
            outcome = body(tx, now)
            if outcome.bookkeeping:
                if outcome.changed:
                    raise AssertionError(f"{operation}: a bookkeeping write changed relations")
                revision = newest  # the state it leaves is the state of the newest revision
            else:
                # The rules of every write, once, on what it changed; raising rolls it back.
                check_write(deps.engine, actor_id, outcome.changed, now)
                # The row is locked since lock_revision: the number taken here is the next one, and it
                # becomes visible only with this commit, after every smaller one.
                revision = tx.bump_revision()
                tx.append_change(Change(revision, now, operation, tuple(outcome.changed)))
                if revision % _PRUNE_EVERY == 0:
                    tx.prune_changes(now - timedelta(seconds=deps.settings.change_log_retention_seconds))
            tx.add_audit(dataclasses.replace(outcome.audit, caller=caller_name() or None), revision)
            if hasattr(outcome.result, "revision"):
                outcome.result.revision = deps.tokens.token(revision) if deps.tokens else str(revision)
            if key and outcome.error is None:
                tx.put_idempotent(key, operation, digest, dataclasses.asdict(outcome.result), now)
            _before_commit()
        if not outcome.bookkeeping and not deps.engine.apply(outcome.changed, revision) and deps.follower is not None:
            deps.follower.wake()  # a reload moved the engine meanwhile: the follower brings this write in
        if deps.published is not None:
            deps.published(revision)
    if outcome.error is not None:
        raise outcome.error
    for action in outcome.after_commit:
        action()
    return outcome.result  # type: ignore[no-any-return]


def _require_account_acts(tx: Transaction, actor_id: str, request: Any) -> None:
    """A caller configured with `require_account` names the end-user account with each write:
    the actor must be one of its linked profiles, or the account the request is for."""
    account = account_id()
    if not account:
        raise PermissionDenied(
            "this caller must name the end-user account (x-authz-account) with each write", reason="ACCOUNT_REQUIRED"
        )
    if actor_id:
        if actor_id not in tx.linked_contacts(account):
            raise PermissionDenied(
                f"{actor_id!r} is not a profile linked to the account that is acting", reason="NOT_A_LINKED_PROFILE"
            )
    elif getattr(request, "account_id", account) != account:
        raise PermissionDenied("the request is for another account than the one that is acting", reason="OTHER_ACCOUNT")


def _catch_up(deps: Deps, tx: Transaction, newest: int) -> None:
    """Bring this process's engine to the store's revision `newest`, read through `tx`."""
    engine = deps.engine
    while engine.revision < newest:
        page = tx.changes_after(engine.revision, _CATCH_UP_PAGE)
        if page.expired or not page.changes or not apply_changes(engine, page.changes):
            # Too far behind for the log (retention), or a bulk import: the engine reloads.
            if deps.follower is not None:
                deps.follower.wake()
            raise _Reloading(newest)


def require_attestation(attestation: Attestation) -> None:
    missing = []
    if not attestation.authorizes_acting:
        missing.append(FieldViolation("attestation.authorizes_acting", "must be attested (true)"))
    if not attestation.changes_accurate:
        missing.append(FieldViolation("attestation.changes_accurate", "must be attested (true)"))
    if missing:
        raise InvalidArgument("both attestations are required for a change", missing)


def require_organization(tx: Transaction, organization_id: str, field_path: str = "organization_id") -> Organization:
    organization = tx.get_organization(organization_id)
    if organization is None:
        raise NotFound(f"{field_path}: organization {organization_id!r} not found", reason="ORGANIZATION_NOT_FOUND")
    return organization


def require_manager(deps: Deps, actor_id: str, organization_id: str, now: datetime) -> None:
    """Rule 2: only a contact holding write on `relations` manages an organization."""
    if not deps.engine.check(actor_id, organization_id, MANAGEMENT_SUBJECT, Right.WRITE, now.timestamp()):
        raise PermissionDenied(
            f"{actor_id!r} may not manage the relations of {organization_id!r}", reason="NOT_A_MANAGER"
        )


def require_reader(deps: Deps, actor_id: str, organization_id: str, now: datetime) -> None:
    if not deps.engine.check(actor_id, organization_id, MANAGEMENT_SUBJECT, Right.READ, now.timestamp()):
        raise PermissionDenied(f"{actor_id!r} may not read the relations of {organization_id!r}", reason="NOT_A_READER")


def parse_window(start_text: str, end_text: str, today: date, *, allow_past: bool = False) -> tuple[date, date]:
    """Rule 5's window; through the API a start date is today or later (history is not rewritten)."""
    violations = Violations()
    window = violations.window(
        start_text, end_text, today=today, end_of_time=END_OF_TIME, earliest=None if allow_past else today
    )
    violations.raise_if_any("invalid dates")
    return window


def parse_subjects(
    pairs: Iterable[tuple[str, Right]], catalogue: Mapping[str, Any], field_path: str = "subjects"
) -> dict[str, Right]:
    violations = Violations()
    subjects = violations.subjects(pairs, catalogue, field_path)
    violations.raise_if_any("invalid subjects")
    return subjects


def relation_in_force(relation: Relation, at: datetime) -> bool:
    return in_force(relation.start_date, relation.end_date, relation.ended_at, at)


def displayed_end(relation: Relation) -> date:
    """The end date a person sees: the removal day when a relation was removed early."""
    if relation.ended_at is None:
        return relation.end_date
    return max(relation.start_date, min(relation.end_date, local_date(relation.ended_at)))
