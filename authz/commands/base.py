"""What every command shares: its dependencies, the write envelope, the common checks."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypeVar

from authz.config import Settings
from authz.deadlines import remaining
from authz.domain.dates import in_force, local_date, parse_date, utc_now
from authz.domain.model import Organization, Relation, Right
from authz.engine.index import DecisionEngine
from authz.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound, PermissionDenied, Unavailable
from authz.store.interface import AuditRecord, Store, Transaction

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


def fingerprint(request: Any) -> str:
    """A stable digest of a request, to tell a retry from a different request with the same id."""
    payload = json.dumps(_plain(request), sort_keys=True, default=str).encode()
    return hashlib.sha256(payload).hexdigest()


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name != "request_id"}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


_DEADLINE_PASSED = "the caller's deadline passed before the write could be made; nothing was written"


@contextmanager
def write_lock_within_deadline(deps: Deps) -> Iterator[None]:
    """Hold the write lock, waited for no longer than the caller will wait: queued writers give up in time."""
    left = remaining()
    if not deps.write_lock.acquire(timeout=-1 if left is None else max(left, 0.0)):
        raise Unavailable(_DEADLINE_PASSED)
    try:
        yield
    finally:
        deps.write_lock.release()


def _before_commit() -> None:
    left = remaining()
    if left is not None and left <= 0:
        # Raising inside the transaction rolls it back: a caller that gave up is never left guessing.
        raise Unavailable(_DEADLINE_PASSED)


def run_write(
    deps: Deps,
    operation: str,
    request: Any,
    request_id: str,
    body: Callable[[Transaction, datetime], WriteOutcome],
    result_type: Callable[..., R],
) -> R:
    """One transaction per command: idempotency, the change, the revision, the audit record.

    The engine learns the change only after commit, inside the write lock, so it applies
    writes in the order the store committed them.
    """
    digest = fingerprint(request) if request_id else ""
    with write_lock_within_deadline(deps):
        outcome: WriteOutcome | None = None
        with deps.store.transaction() as tx:
            if request_id:
                previous = tx.get_idempotent(request_id, operation)
                if previous is not None:
                    stored_digest, response = previous
                    if stored_digest != digest:
                        raise FailedPrecondition(
                            f"request_id {request_id!r} was already used for a different {operation} request"
                        )
                    return result_type(**response)
            now = deps.clock()
            outcome = body(tx, now)
            revision = tx.bump_revision()
            if hasattr(outcome.result, "revision"):
                outcome.result.revision = str(revision)
            tx.add_audit(outcome.audit, revision)
            if request_id:
                tx.put_idempotent(request_id, operation, digest, dataclasses.asdict(outcome.result), now)
            _before_commit()
        deps.engine.apply(outcome.changed, revision)
    for action in outcome.after_commit:
        action()
    return outcome.result  # type: ignore[no-any-return]


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
        raise NotFound(f"organization {organization_id!r} not found")
    return organization


def require_manager(deps: Deps, actor_id: str, organization_id: str, now: datetime) -> None:
    """Rule 2: only a contact holding write on `relations` manages an organization."""
    if not deps.engine.check(actor_id, organization_id, "relations", Right.WRITE, now.timestamp()):
        raise PermissionDenied(f"{actor_id!r} may not manage the relations of {organization_id!r}")


def require_reader(deps: Deps, actor_id: str, organization_id: str, now: datetime) -> None:
    if not deps.engine.check(actor_id, organization_id, "relations", Right.READ, now.timestamp()):
        raise PermissionDenied(f"{actor_id!r} may not read the relations of {organization_id!r}")


def parse_window(start_text: str, end_text: str, today: date, end_of_time: date) -> tuple[date, date]:
    violations: list[FieldViolation] = []
    start = today
    end = end_of_time
    if start_text:
        try:
            start = parse_date(start_text)
        except ValueError:
            violations.append(FieldViolation("start_date", "must be a date YYYY-MM-DD"))
    if end_text:
        try:
            end = parse_date(end_text)
        except ValueError:
            violations.append(FieldViolation("end_date", "must be a date YYYY-MM-DD"))
    if not violations and end < start:
        violations.append(FieldViolation("end_date", "must not be before start_date"))
    if violations:
        raise InvalidArgument("; ".join(f"{v.field} {v.description}" for v in violations), violations)
    return start, end


def parse_subjects(
    pairs: Iterable[tuple[str, Right]], catalogue: Mapping[str, Any], field_path: str = "subjects"
) -> dict[str, Right]:
    subjects: dict[str, Right] = {}
    violations: list[FieldViolation] = []
    for index, (subject, right) in enumerate(pairs):
        if subject not in catalogue:
            violations.append(FieldViolation(f"{field_path}[{index}].subject", f"unknown subject {subject!r}"))
        elif subject in subjects:
            violations.append(FieldViolation(f"{field_path}[{index}].subject", f"{subject!r} is listed twice"))
        if right is Right.NONE:
            violations.append(FieldViolation(f"{field_path}[{index}].right", "must be RIGHT_READ or RIGHT_WRITE"))
        subjects[subject] = right
    if violations:
        raise InvalidArgument("; ".join(f"{v.field}: {v.description}" for v in violations), violations)
    return subjects


def relation_in_force(relation: Relation, at: datetime) -> bool:
    return in_force(relation.start_date, relation.end_date, relation.ended_at, at)


def displayed_end(relation: Relation) -> date:
    """The end date a person sees: the removal day when a relation was removed early."""
    if relation.ended_at is None:
        return relation.end_date
    return max(relation.start_date, min(relation.end_date, local_date(relation.ended_at)))
