"""The rules that hold after every write, whichever call makes it, checked once at commit.

`run_write` calls `check_write` after the command's body and before the commit: a violation
raises, and the transaction rolls back with nothing written. What is checked is what the write
touched: the relations it changed, the organizations they are on, the contacts who hold them.

The state before the write is the engine's: when the write took the revision row's lock, the
engine was caught up to the store's newest revision, and it learns this write only after the
commit. The state after the write is the engine's with the changed relations put in their keys'
place. So the cost is the keys the write touched, never an organization's history.

The rules:

- A manager remains: an organization where a contact held write on `relations` (role defaults
  or subjects granted, never through another organization) keeps one, now and from the day
  after each end date the write set. The acting contact and the contacts the write touched are
  asked first; the organization's other contacts only when none of them manages after it.
- Management is never held through another organization: an authorization between
  organizations or a delegation never gains `relations`.
- A delegation never gains more than the organization it comes through holds there at the time
  of the write, and it carries no role of its own.
- No one raises their own rights: a write never gives the acting contact a relation, nor adds
  or raises a subject, moves an end date later or a start date earlier, undoes a removal or
  changes the role of one they hold. Ending or narrowing their own is theirs to do.
- One relation per purpose: no second open relation with the same contact, organization and
  role, nor with the same delegate, association and employer, over dates that overlap.
- Ended relations stay ended: ending is the only change to a relation that no longer counts
  (removed, or past its end date); a past check never changes its answer.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta

from authz.domain.dates import day_start, local_date
from authz.domain.model import END_OF_TIME, MANAGEMENT_SUBJECT, WILDCARD_SUBJECT, Relation, RelationKind, Right
from authz.domain.validation import management_subject_problem
from authz.engine.index import DecisionEngine, Entry, relation_entry
from authz.errors import AlreadyExists, FailedPrecondition, FieldViolation, InvalidArgument, PermissionDenied

__all__ = [
    "DELEGATION_EXCEEDS",
    "DELEGATION_ROLE",
    "DUPLICATE_RELATION",
    "LAST_MANAGER",
    "MANAGEMENT_THROUGH_ORGANIZATION",
    "RELATION_ENDED",
    "SELF_GRANT",
    "check_write",
    "duplicate_of",
    "is_open",
    "last_manager_message",
]

LAST_MANAGER = "LAST_MANAGER"
SELF_GRANT = "SELF_GRANT"
DUPLICATE_RELATION = "DUPLICATE_RELATION"
RELATION_ENDED = "RELATION_ENDED"
DELEGATION_EXCEEDS = "DELEGATION_EXCEEDS"
DELEGATION_ROLE = "DELEGATION_ROLE"
MANAGEMENT_THROUGH_ORGANIZATION = "MANAGEMENT_THROUGH_ORGANIZATION"

_END_OF_TIME = END_OF_TIME.toordinal()


def last_manager_message(organization_id: str, since: date | None = None) -> str:
    when = "" if since is None else f" from {since.isoformat()}"
    return (
        f"this change would leave {organization_id!r} with no one to manage its relations{when}: "
        "give another contact write on relations first"
    )


def is_open(entry: Entry, today: int, ts: float) -> bool:
    """Not removed and not past its end date: a relation that counts now or will."""
    _, end, ended, *_ = entry
    return end >= today and ended > ts


def duplicate_of(relation: Relation, entry: Entry, others: Sequence[Entry], today: int, ts: float) -> str | None:
    """The id of an open relation among `others` that `relation` (as `entry`) repeats, or None.

    The same purpose: same contact, organization and role for a contact's relation; same
    delegate, association and employer for a delegation (the caller passes the entries of the
    same holder and organization). Over dates that overlap: a relation that follows another one
    of the same role is a renewal, not a repetition.
    """
    if relation.kind is RelationKind.ORGANIZATION or not is_open(entry, today, ts):
        return None
    start, end, _, _, role, via, relation_id = entry
    delegation = relation.kind is RelationKind.DELEGATION
    for other in others:
        o_start, o_end, _, _, o_role, o_via, other_id = other
        if other_id == relation_id or not is_open(other, today, ts) or o_start > end or start > o_end:
            continue
        if (o_via == via) if delegation else (o_via is None and o_role == role):
            return other_id
    return None


class _Delta:
    """The engine's state with one write's changed relations put in place."""

    def __init__(self, engine: DecisionEngine, changed: Sequence[Relation]) -> None:
        self.engine = engine
        self.people: dict[tuple[str, str], dict[str, Entry]] = {}
        self.organizations: dict[tuple[str, str], dict[str, Entry]] = {}
        for relation in changed:
            index = self.organizations if relation.kind is RelationKind.ORGANIZATION else self.people
            index.setdefault((relation.holder_id, relation.organization_id), {})[relation.id] = relation_entry(relation)

    def before(self, relation: Relation) -> Entry | None:
        organization = relation.kind is RelationKind.ORGANIZATION
        for entry in self.engine.entries(relation.holder_id, relation.organization_id, organization=organization):
            if entry[6] == relation.id:
                return entry
        return None

    def after(self, holder_id: str, organization_id: str, *, organization: bool = False) -> tuple[Entry, ...]:
        live = self.engine.entries(holder_id, organization_id, organization=organization)
        replaced = (self.organizations if organization else self.people).get((holder_id, organization_id))
        if not replaced:
            return live
        return (*(e for e in live if e[6] not in replaced), *replaced.values())


def check_write(engine: DecisionEngine, actor_id: str, changed: Sequence[Relation], now: datetime) -> None:
    """Raise if the write that changed `changed` (as they stand after it) breaks a rule; see the module."""
    if not changed:
        return
    delta = _Delta(engine, changed)
    ts = now.timestamp()
    today = engine.day_of(ts)
    for relation in changed:
        after = relation_entry(relation)
        before = delta.before(relation)
        if actor_id and relation.kind is not RelationKind.ORGANIZATION and relation.contact_id == actor_id:
            _refuse_self_widening(relation, before, after)
        if before is not None:
            _refuse_rewriting_history(relation, before, after, today, ts)
        if relation.kind is not RelationKind.CONTACT:
            _refuse_management_through(relation, before, after)
        if relation.kind is RelationKind.DELEGATION:
            _refuse_delegation_beyond(delta, relation, before, after, today, ts)
        if _may_repeat(before, after, today, ts):
            others = delta.after(relation.holder_id, relation.organization_id)
            first = duplicate_of(relation, after, others, today, ts)
            if first is not None:
                raise AlreadyExists(
                    f"relation {first!r} already gives {relation.holder_id!r} this "
                    f"{'delegation' if relation.kind is RelationKind.DELEGATION else 'role'} on "
                    f"{relation.organization_id!r}: add subjects to it instead of a second relation",
                    reason=DUPLICATE_RELATION,
                )
    _refuse_leaving_without_manager(delta, actor_id, changed, now)


def _may_repeat(before: Entry | None, after: Entry, today: int, ts: float) -> bool:
    """Whether the change can make the relation repeat another: it is new, or revived, or takes
    another role or path, or longer dates. (Adding subjects to one of two copies that old data
    holds is what the rule asks for, so it is not refused.)"""
    if before is None or not is_open(before, today, ts):
        return True
    return before[4:6] != after[4:6] or after[0] < before[0] or after[1] > before[1]


def _refuse_self_widening(relation: Relation, before: Entry | None, after: Entry) -> None:
    what = _widening(before, after)
    if what is not None:
        raise PermissionDenied(
            f"{relation.contact_id!r} may not {what} for themselves (relation {relation.id!r}): "
            "another manager of the organization does it",
            reason=SELF_GRANT,
        )


def _widening(before: Entry | None, after: Entry) -> str | None:
    if before is None:
        return "add a relation"
    start, end, ended, grants, role, via, _ = after
    b_start, b_end, b_ended, b_grants, b_role, b_via, _ = before
    if role != b_role or via != b_via:
        return "change the role of a relation"
    if end > b_end or start < b_start or ended > b_ended:
        return "extend a relation"
    if any(level > b_grants.get(subject, 0) for subject, level in grants.items()):
        return "add or widen a subject"
    return None


def _refuse_rewriting_history(relation: Relation, before: Entry, after: Entry, today: int, ts: float) -> None:
    if is_open(before, today, ts) or before == after:
        return  # still counting, or unchanged: nothing of the past moves
    start, end, ended, grants, role, via, _ = after
    b_start, b_end, b_ended, b_grants, b_role, b_via, _ = before
    if (start, end, grants, role, via) == (b_start, b_end, b_grants, b_role, b_via) and ended <= b_ended:
        return  # ending it (again): the only change an ended relation takes
    raise FailedPrecondition(
        f"relation {relation.id!r} has ended: ending is the only change it takes (history is not "
        "revived or rewritten); add a new relation instead",
        reason=RELATION_ENDED,
    )


def _refuse_management_through(relation: Relation, before: Entry | None, after: Entry) -> None:
    had = before[3].get(MANAGEMENT_SUBJECT, 0) if before is not None else 0
    if after[3].get(MANAGEMENT_SUBJECT, 0) > had:
        problem = management_subject_problem(relation.kind, relation.subjects) or ""
        raise InvalidArgument(problem, [FieldViolation("subjects", problem)], reason=MANAGEMENT_THROUGH_ORGANIZATION)


def _refuse_delegation_beyond(
    delta: _Delta, relation: Relation, before: Entry | None, after: Entry, today: int, ts: float
) -> None:
    if relation.role is not None and (before is None or before[4] != after[4]):
        description = "a delegation carries no role of its own: it gives what it names, through the organization"
        raise InvalidArgument(f"role: {description}", [FieldViolation("role", description)], reason=DELEGATION_ROLE)
    via = relation.via_organization_id or ""
    held = delta.after(via, relation.organization_id, organization=True)
    over = []
    for subject, level in after[3].items():
        if subject == WILDCARD_SUBJECT or level <= (before[3].get(subject, 0) if before is not None else 0):
            continue
        holds = DecisionEngine.granted_level(held, subject, today, ts)
        if holds < level:
            over.append(
                f"{via} holds {Right(holds).code if holds else 'nothing'} on {subject} of "
                f"{relation.organization_id}, not {Right(level).code}"
            )
    if over:
        raise FailedPrecondition(
            "cannot delegate more than the organization holds: " + "; ".join(over), reason=DELEGATION_EXCEEDS
        )


def _refuse_leaving_without_manager(delta: _Delta, actor_id: str, changed: Sequence[Relation], now: datetime) -> None:
    touched: dict[str, list[Relation]] = {}
    for relation in changed:
        if relation.kind is RelationKind.CONTACT:
            touched.setdefault(relation.organization_id, []).append(relation)
    for organization_id, relations in touched.items():
        # Now, and from the day after each end date the write set: an end moved earlier leaves a gap there.
        moments = {now}
        for relation in relations:
            if relation.end_date.toordinal() < _END_OF_TIME:
                following = day_start(relation.end_date + timedelta(days=1))
                if following > now:
                    moments.add(following)
        for moment in sorted(moments):
            if not _managed(delta, organization_id, actor_id, relations, moment, after=True) and _managed(
                delta, organization_id, actor_id, relations, moment, after=False
            ):
                since = None if moment == now else local_date(moment)
                raise FailedPrecondition(last_manager_message(organization_id, since), reason=LAST_MANAGER)


def _managed(
    delta: _Delta, organization_id: str, actor_id: str, relations: list[Relation], moment: datetime, *, after: bool
) -> bool:
    ts = moment.timestamp()
    day = delta.engine.day_of(ts)
    engine = delta.engine
    for contact_id in _candidates(delta, organization_id, actor_id, relations):
        entries = delta.after(contact_id, organization_id) if after else engine.entries(contact_id, organization_id)
        if engine.direct_level(entries, MANAGEMENT_SUBJECT, day, ts) >= Right.WRITE:
            return True
    return False


def _candidates(delta: _Delta, organization_id: str, actor_id: str, relations: list[Relation]) -> Iterator[str]:
    """Who may manage the organization, likeliest first: the actor (a manager, nearly always), the
    contacts the write touched, then every other contact the organization ever had."""
    seen: set[str] = set()
    for contact_id in (actor_id, *(r.contact_id or "" for r in relations)):
        if contact_id and contact_id not in seen:
            seen.add(contact_id)
            yield contact_id
    for contact_id in delta.engine.holders(organization_id):
        if contact_id not in seen:
            seen.add(contact_id)
            yield contact_id
