"""`authz import FILE`: the legacy migration and the way to load any data set (the format of docs/IMPORT.md).

The file is streamed (ijson on yajl's C parser): rows are read one at a time, checked with the
rules of authz/domain/validation.py, and written a chunk at a time through the store's bulk
methods (authz/store/interface.py), so memory stays flat whatever the size of the file. Whether
a referenced contact or organization exists, or a key is already taken, is asked of the store
per chunk, not kept in memory. A large file is parsed and checked in a second process while
this one writes (`import_file`'s reader process, below): the same steps, split in two.

Every row that cannot be taken goes to the report with its reason, whatever it holds (wrong
types, nesting, control characters): the rest goes in, in one transaction, and a file that
turns out not to be JSON halfway changes nothing. A row whose key is already stored with the
same content is skipped, so a second import of the same file changes nothing; a key already
taken by different content is refused, never silently skipped.

What the import adds keeps the rules of every write (authz/commands/invariants.py): a relation
that repeats one in force, or a delegation giving more than the association holds on the
employer at the time of the import, is refused and kept as a migration issue for the
organization's managers. A delegation row's `role` is checked and then left out: a delegation
carries no role of its own (the old system recorded the staff member's fonction there), and
what it gives does not depend on it.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import pickle
import queue
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

import ijson  # type: ignore[import-untyped]

from authz.commands.invariants import duplicate_of, is_open
from authz.commands.migration_issues import MigrationIssues
from authz.domain.dates import local_date, utc_now
from authz.domain.model import (
    END_OF_TIME,
    WILDCARD_SUBJECT,
    Contact,
    Organization,
    OrganizationKind,
    Relation,
    RelationKind,
    Right,
    Role,
)
from authz.domain.validation import (
    MAX_ORGANIZATION_NAME,
    Violations,
    email_problem,
    id_problem,
    is_plain_id,
    language_problem,
    legacy_hash_problem,
    management_subject_problem,
    name_problem,
    phone_problem,
    self_authorization_problem,
    username_problem,
)
from authz.engine.index import DecisionEngine, Entry, relation_entry
from authz.store.changes import Change
from authz.store.interface import AuditRecord, ImportBatch, ImportKind, LegacyAccount, Store, Transaction

__all__ = ["CHUNK", "MAX_ROW_DEPTH", "MAX_ROW_VALUES", "ImportFileError", "ImportReport", "import_data", "import_file"]

_SECTIONS = ("organizations", "contacts", "relations", "organization_relations", "delegations", "legacy_accounts")
# The sections whose rows a section refers to: those must be read first.
_NEEDS = {
    "organizations": (),
    "contacts": (),
    "relations": ("organizations", "contacts"),
    "organization_relations": ("organizations",),
    "delegations": ("organizations", "contacts", "organization_relations"),  # what the association holds
    "legacy_accounts": ("contacts",),
}
_KIND: dict[str, ImportKind] = {
    "organizations": "organizations",
    "contacts": "contacts",
    "relations": "relations",
    "organization_relations": "relations",
    "delegations": "relations",
    "legacy_accounts": "legacy_accounts",
}
_KEY_FIELD = {"legacy_accounts": "username"}  # the others are keyed by "id"
_NOUN: dict[ImportKind, str] = {
    "organizations": "organization",
    "contacts": "contact",
    "relations": "relation",
    "legacy_accounts": "legacy account",
}

CHUNK = 5_000  # rows checked against the store and written together
_KNOWN_ORGANIZATIONS = 200_000  # organization ids an import remembers as stored
_BATCHES_AHEAD = 4  # batches the reader process may send before the writer takes them
# A file smaller than this is read by the writer itself: starting a reader process (0.2 s of
# CPU when it must be spawned) costs more than it saves on a few thousand rows.
_READER_FROM_BYTES = 4 * 2**20
# A row is an object (1) holding lists (2) of objects (3): nothing legitimate nests deeper than this.
MAX_ROW_DEPTH = 6
# Values in one row (a subject list is tens at most): past this the row is refused, not built.
MAX_ROW_VALUES = 10_000
_SHOWN = 64  # characters of a bad value quoted in a reason
_BY_VALUE: dict[type[Role] | type[OrganizationKind], dict[str, Any]] = {
    options: {option.value: option for option in options} for options in (Role, OrganizationKind)
}
_RIGHTS = {right.code: right for right in (Right.READ, Right.WRITE)}  # the usual spelling, without Right.parse


@dataclass
class ImportReport:
    accepted: dict[str, int] = field(default_factory=lambda: {s: 0 for s in _SECTIONS})
    skipped: dict[str, int] = field(default_factory=lambda: {s: 0 for s in _SECTIONS})
    refused: list[dict[str, Any]] = field(default_factory=list)
    revision: int = 0

    def refuse(self, section: str, index: int, row: Any, reason: str) -> None:
        identifier = None
        if isinstance(row, dict):
            value = row.get(_KEY_FIELD.get(section, "id"))
            identifier = value[:200] if isinstance(value, str) else None
        self.refused.append({"section": section, "index": index, "id": identifier, "reason": reason})

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "skipped": self.skipped, "refused": self.refused, "revision": self.revision}


class _Refused(Exception):
    pass


class ImportFileError(ValueError):
    """The file cannot be imported at all (not JSON, not an object, unreadable): nothing was written."""


def _shown(value: Any) -> str:
    """A bad value as a reason quotes it: text cut short, anything else by its JSON type."""
    if isinstance(value, str):
        return repr(value[:_SHOWN] + ("…" if len(value) > _SHOWN else ""))
    return {dict: "an object", list: "a list", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


# -- reading: one row at a time


@dataclass(slots=True)
class _Row:
    index: int
    value: Any  # what the file holds (None when it was not built)
    problem: str | None  # why it was not built (too deep or too large)


def _value(events: Iterator[tuple[str, Any]], event: str, value: Any) -> tuple[Any, str | None]:
    """The JSON value that starts with (event, value), built from the parser's events.

    Past MAX_ROW_DEPTH levels or MAX_ROW_VALUES values the rest is read and dropped, not
    built: a hostile row costs the time to read it, never memory or recursion.
    """
    if event == "start_map":
        root: Any = {}
    elif event == "start_array":
        root = []
    else:
        return value, None
    stack: list[tuple[Any, Any]] = []
    current, key = root, None
    depth, count, problem = 1, 0, None
    for event, value in events:
        if event == "map_key":
            key = value
        elif event == "end_map" or event == "end_array":
            depth -= 1
            if depth == 0:
                break
            if problem is None:
                current, key = stack.pop()
        elif event == "start_map" or event == "start_array":
            depth += 1
            if problem is not None:
                continue
            count += 1  # an empty list is a value too: a million of them is not a small row
            if depth > MAX_ROW_DEPTH:
                problem = f"nested deeper than {MAX_ROW_DEPTH} levels"
                continue
            if count > MAX_ROW_VALUES:
                problem = f"larger than {MAX_ROW_VALUES:,} values"
                continue
            new: Any = {} if event == "start_map" else []
            if type(current) is dict:
                current[key] = new
            else:
                current.append(new)
            stack.append((current, key))
            current = new
        elif problem is None:
            count += 1
            if count > MAX_ROW_VALUES:
                problem = f"larger than {MAX_ROW_VALUES:,} values"
            elif type(current) is dict:
                current[key] = value
            else:
                current.append(value)
    return (None, problem) if problem is not None else (root, None)


class _Section:
    """One top-level member of the file, read as it streams by."""

    def __init__(self, name: str, events: Iterator[tuple[str, Any]], event: str, value: Any) -> None:
        self.name = name
        self.is_list = event == "start_array"
        self._events = events
        self._first = (event, value)
        self._done = False

    def rows(self) -> Iterator[_Row]:
        assert self.is_list and not self._done
        # _value reads each row's inner events from the same iterator: this loop sees one event per row.
        for index, (event, value) in enumerate(self._events):
            if event == "end_array":
                break
            built, problem = _value(self._events, event, value)
            yield _Row(index, built, problem)
        self._done = True

    def skip(self) -> None:
        """Read past what is left of this member without building it."""
        if self._done:
            return
        self._done = True
        event = self._first[0]
        depth = 1 if event in ("start_map", "start_array") else 0
        while depth:
            event, _ = next(self._events)
            if event in ("start_map", "start_array"):
                depth += 1
            elif event in ("end_map", "end_array"):
                depth -= 1


def _file_sections(source: IO[bytes]) -> Iterator[_Section]:
    events: Iterator[tuple[str, Any]] = iter(ijson.basic_parse(source, use_float=True))
    first = next(events, None)
    if first is None or first[0] != "start_map":
        raise ImportFileError(f"the top level must be an object with {', '.join(_SECTIONS)}")
    for event, value in events:
        if event == "end_map":
            break
        section = _Section(value, events, *next(events))
        yield section
        section.skip()
    for _ in events:  # yajl reports trailing garbage only when asked for more
        pass


# -- checking: one row, with the shared rules


@dataclass(slots=True)
class _Candidate:
    index: int
    row: dict[str, Any] | _BatchRows  # the file's row, or where to read it again when it is needed
    key: str
    value: Organization | Contact | Relation | LegacyAccount
    refs: list[tuple[str, ImportKind, str]]  # (field, kind, key) that must be stored
    place: int = 0  # its place in its batch, when `row` is a _BatchRows

    def original(self) -> dict[str, Any]:
        """The row as the file gave it: what a refusal reports and keeps."""
        row = self.row
        if not isinstance(row, _BatchRows):
            return row
        found = row.get(self.place)
        if not isinstance(found, dict) or found.get(_KEY_FIELD.get(row.section, "id")) != self.key:
            raise ImportFileError("the file changed while it was imported")
        return found


class _BatchRows:
    """Where the rows of one batch from the reader process are, in the file: read again by the
    writer only if one of them is refused after its check (a missing reference, a taken key, a
    rule). Sending every row that passed cost the reader a sixth of its time, for rows that are
    almost never needed."""

    def __init__(self, again: _RowsAgain, section: str, start: int, count: int) -> None:
        self.again, self.section, self.start, self.count = again, section, start, count

    def get(self, place: int) -> Any:
        return self.again.batch(self.start, self.count)[place]


class _Checker:
    """The rules of one row, from authz/domain/validation.py; collects every problem of the row."""

    def __init__(self, row: dict[str, Any], catalogue: Mapping[str, Any]) -> None:
        self.row = row
        self.catalogue = catalogue
        self.v = Violations()
        self.refs: list[tuple[str, ImportKind, str]] = []

    def done(self) -> None:
        if self.v.items:
            raise _Refused("; ".join(f"{item.field}: {item.description}" for item in self.v.items))

    def text(self, key: str) -> str | None:
        """The field as text ("" when absent or null), or None after recording a wrong type."""
        value = self.row.get(key)
        if type(value) is str:
            return value
        if value is None:
            return ""
        self.v.add(key, f"must be text, not {_shown(value)}")
        return None

    def id(self, key: str, refers_to: ImportKind | None = None) -> str:
        value = self.text(key)
        if not value:
            if value is not None:
                self.v.add(key, "is missing")
            return ""
        if not is_plain_id(value):  # the rule's own fast test; id_problem says why
            self.v.check(key, id_problem(value))
        elif refers_to is not None:
            self.refs.append((key, refers_to, value))
        return value

    def checked(self, key: str, problem: Callable[[str], str | None]) -> str:
        value = self.text(key)
        if value is None:
            return ""
        self.v.check(key, problem(value))
        return value

    def choice(self, key: str, options: type[Role] | type[OrganizationKind], *, required: bool) -> Any:
        value = self.text(key)
        if value is None or (not value and not required):
            return None
        found = _BY_VALUE[options].get(value)
        if found is None:
            names = ", ".join(option.value for option in options)
            self.v.add(key, f"{_shown(value)} is not one of {names}")
        return found

    def window(self, today: date) -> tuple[date, date]:
        start, end = self.text("start_date"), self.text("end_date")
        if start is None or end is None:
            return today, END_OF_TIME
        # The import may carry history: a start in the past is taken (the API refuses it).
        return self.v.window(start, end, today=today, end_of_time=END_OF_TIME)

    def subjects(self) -> dict[str, Right]:
        raw = self.row.get("subjects")
        if raw is None:
            return {}
        if not isinstance(raw, list):
            self.v.add("subjects", f"must be a list, not {_shown(raw)}")
            return {}
        pairs: list[tuple[Any, Any]] = []
        for index, item in enumerate(raw):
            subject = right_text = None
            if type(item) is dict:
                subject, right_text = item.get("subject"), item.get("right")
            if type(subject) is not str or type(right_text) is not str:
                self.v.add(f"subjects[{index}]", 'must be an object with a "subject" and a "right" (text)')
                continue
            right = _RIGHTS.get(right_text)
            if right is None:
                try:
                    right = Right.parse(right_text)
                except KeyError:
                    right = Right.NONE
            pairs.append((subject, right))
        if len(pairs) < len(raw):
            return {}
        return self.v.subjects(pairs, self.catalogue)


def _organization(c: _Checker, today: date) -> tuple[str, Organization]:
    org_id = c.id("id")
    name = c.checked("name", lambda text: name_problem(text, MAX_ORGANIZATION_NAME))
    kind = c.choice("kind", OrganizationKind, required=True)
    c.done()
    return org_id, Organization(org_id, name, kind)


def _contact(c: _Checker, today: date) -> tuple[str, Contact]:
    contact_id = c.id("id")
    first = c.checked("first_name", name_problem)
    last = c.checked("last_name", name_problem)
    email = c.checked("email", lambda text: email_problem(text, required=False))
    language = c.checked("language", language_problem) or "fr"
    phone = c.checked("phone", phone_problem)
    c.done()
    return contact_id, Contact(contact_id, first, last, email, language, phone)


def _relation(c: _Checker, today: date) -> tuple[str, Relation]:
    relation_id = c.id("id")
    contact_id = c.id("contact_id", "contacts")
    org_id = c.id("organization_id", "organizations")
    role = c.choice("role", Role, required=True)
    start, end = c.window(today)
    subjects = c.subjects()
    c.done()
    return relation_id, Relation(
        relation_id, RelationKind.CONTACT, org_id, start, end, contact_id=contact_id, role=role, subjects=subjects
    )


def _organization_relation(c: _Checker, today: date) -> tuple[str, Relation]:
    relation_id = c.id("id")
    grantor = c.id("grantor_id", "organizations")
    grantee = c.id("grantee_id", "organizations")
    c.v.check("grantee_id", self_authorization_problem(grantor, grantee) if grantor else None)
    role = c.choice("role", Role, required=False)
    start, end = c.window(today)
    subjects = c.subjects()
    if not subjects and "subjects" not in {item.field.split("[")[0] for item in c.v.items}:
        c.v.add("subjects", "must name at least one subject")
    c.v.check("subjects", management_subject_problem(RelationKind.ORGANIZATION, subjects))
    c.done()
    return relation_id, Relation(
        relation_id,
        RelationKind.ORGANIZATION,
        grantor,
        start,
        end,
        grantee_organization_id=grantee,
        role=role,
        subjects=subjects,
    )


def _delegation(c: _Checker, today: date) -> tuple[str, Relation]:
    relation_id = c.id("id")
    contact_id = c.id("contact_id", "contacts")
    via = c.id("via_organization_id", "organizations")
    target = c.id("target_organization_id", "organizations")
    if via and via == target:
        c.v.add("target_organization_id", "a delegation goes to another organization than the one it comes through")
    c.choice("role", Role, required=False)  # checked, then left out: a delegation carries no role of its own
    start, end = c.window(today)
    subjects = c.subjects()
    c.v.check("subjects", management_subject_problem(RelationKind.DELEGATION, subjects))
    c.done()
    return relation_id, Relation(
        relation_id,
        RelationKind.DELEGATION,
        target,
        start,
        end,
        contact_id=contact_id,
        via_organization_id=via,
        subjects=subjects or {WILDCARD_SUBJECT: Right.WRITE},  # none: all the organization holds there
    )


def _legacy_account(c: _Checker, today: date) -> tuple[str, LegacyAccount]:
    username = c.checked("username", username_problem)
    password_hash = c.checked("password_hash", legacy_hash_problem)
    raw = c.row.get("contact_ids")
    linked: set[str] = set()
    if not isinstance(raw, list) or not raw:
        c.v.add("contact_ids", "must be a list naming at least one contact")
    else:
        for index, contact_id in enumerate(raw):
            if not isinstance(contact_id, str):
                c.v.add(f"contact_ids[{index}]", f"must be text, not {_shown(contact_id)}")
            elif (problem := id_problem(contact_id)) is not None:
                c.v.add(f"contact_ids[{index}]", problem)
            elif contact_id not in linked:
                linked.add(contact_id)
                c.refs.append(("contact_ids", "contacts", contact_id))
    c.done()
    return username, LegacyAccount(username, password_hash, tuple(sorted(linked)))


_CHECKS: dict[str, Callable[[_Checker, date], tuple[str, Any]]] = {
    "organizations": _organization,
    "contacts": _contact,
    "relations": _relation,
    "organization_relations": _organization_relation,
    "delegations": _delegation,
    "legacy_accounts": _legacy_account,
}


# A checked row, as the writer takes it: (index, row, key, value, refs) when it passes its own
# rules, (index, row, reason) when it does not. A batch ends after CHUNK rows that pass.
_Item = tuple[Any, ...]
_Batch = list[_Item]


def _checked(
    name: str, rows: Iterable[_Row], catalogue: Mapping[str, Any], today: date, *, wire: bool
) -> Iterator[_Batch]:
    """The rows of a section checked one by one, in batches. With `wire` (for the reader process),
    values are plain tuples (see _to_wire) and the rows that passed are not sent: the writer reads
    them again from the file if it needs one."""
    check = _CHECKS[name]
    batch: _Batch = []
    passed = 0
    for row in rows:
        try:
            if row.problem is not None:
                raise _Refused(f"the row is {row.problem}")
            if not isinstance(row.value, dict):
                raise _Refused(f"must be an object, not {_shown(row.value)}")
            checker = _Checker(row.value, catalogue)
            key, value = check(checker, today)
            if wire:
                batch.append((row.index, None, key, _to_wire(value), checker.refs))
            else:
                batch.append((row.index, row.value, key, value, checker.refs))
            passed += 1
        except _Refused as refusal:
            batch.append((row.index, row.value, str(refusal)))
        if passed >= CHUNK:
            yield batch
            batch, passed = [], 0
    if batch:
        yield batch


_KINDS = {kind.value: kind for kind in RelationKind}
_RIGHT_OF = {int(right): right for right in Right}


def _to_wire(value: Organization | Contact | Relation | LegacyAccount) -> tuple[Any, ...]:
    """A checked value as builtins only, which pickle copies fast (a dataclass with enums and
    dates costs it four times as much)."""
    if type(value) is Relation:
        return (
            0,
            value.id,
            value.kind.value,
            value.organization_id,
            value.start_date.toordinal(),
            value.end_date.toordinal(),
            value.contact_id,
            value.grantee_organization_id,
            value.via_organization_id,
            None if value.role is None else value.role.value,
            tuple((subject, int(right)) for subject, right in value.subjects.items()),
        )
    if type(value) is Contact:
        return (
            1,
            value.id,
            value.first_name,
            value.last_name,
            value.email,
            value.language,
            value.phone,
            value.phone_type,
        )
    if type(value) is Organization:
        return (2, value.id, value.name, value.kind.value)
    assert type(value) is LegacyAccount
    return (3, value.username, value.password_hash, value.contact_ids)


_DAYS: dict[int, date] = {}


def _day(ordinal: int) -> date:
    found = _DAYS.get(ordinal)
    if found is None:
        found = _DAYS[ordinal] = date.fromordinal(ordinal)
    return found


def _from_wire(wire: tuple[Any, ...]) -> Organization | Contact | Relation | LegacyAccount:
    tag = wire[0]
    if tag == 0:
        _, relation_id, kind, organization_id, start, end, contact_id, grantee, via, role, subjects = wire
        return Relation(
            relation_id,
            _KINDS[kind],
            organization_id,
            _day(start),
            _day(end),
            contact_id=contact_id,
            grantee_organization_id=grantee,
            via_organization_id=via,
            role=None if role is None else _BY_VALUE[Role][role],
            subjects={subject: _RIGHT_OF[right] for subject, right in subjects},
        )
    if tag == 1:
        return Contact(*wire[1:])
    if tag == 2:
        return Organization(wire[1], wire[2], _BY_VALUE[OrganizationKind][wire[3]])
    return LegacyAccount(wire[1], wire[2], wire[3])


# -- writing: a chunk at a time, in one transaction


class _Importer:
    def __init__(self, tx: Transaction, catalogue: Iterable[str], now: datetime) -> None:
        self.tx = tx
        self.now = now
        self.today = local_date(now)
        self.catalogue = dict.fromkeys(catalogue)
        self.report = ImportReport()
        self.issues = MigrationIssues(tx, now)  # refused rows kept for the organizations' managers
        # (association, employer) -> the authorizations in force between them, for the delegations
        # section: one entry per authorization the file's delegations go through, at most.
        self.holdings: dict[tuple[str, str], list[Entry]] = {}
        self.known_organizations: set[str] = set()
        self.position = 0  # rows taken so far, in the order the file is read (for _RowsAgain)

    def _refuse(self, section: str, index: int, row: Any, reason: str) -> None:
        self.report.refuse(section, index, row, reason)
        self.issues.record(section, index, row, reason)

    def take(self, name: str, batch: _Batch, again: _RowsAgain | None = None) -> None:
        """One batch of checked rows, in the file's order: the refused ones reported, the others
        written (at most CHUNK of them, which the batch ends with). `again` reads the file's rows
        once more when the batch came from the reader process without them."""
        observe = self.issues.observe if name in ("relations", "delegations") else None
        if name == "organization_relations":
            self.holdings.clear()  # what associations hold may change: read again when delegations come
        rows = None if again is None else _BatchRows(again, name, self.position, len(batch))
        self.position += len(batch)
        pending: list[_Candidate] = []
        for place, item in enumerate(batch):
            if len(item) == 3:
                if observe is not None:
                    observe(name, item[1])
                self._refuse(name, *item)
                continue
            index, row, key, value, refs = item
            if row is None:  # from the reader process
                assert rows is not None
                value = _from_wire(value)
                pending.append(_Candidate(index, rows, key, value, refs, place))
                if observe is not None:
                    assert isinstance(value, Relation)
                    organization_id = value.organization_id if name == "relations" else value.via_organization_id
                    self.issues.observe_ids(value.contact_id, organization_id)
            else:
                if observe is not None:
                    observe(name, row)
                pending.append(_Candidate(index, row, key, value, refs))
        self._flush(name, pending)

    def refuse_section(self, name: str, message: str) -> None:
        self.report.refuse(name, -1, None, message)

    def _flush(self, name: str, pending: list[_Candidate]) -> None:
        if not pending:
            return
        kind = _KIND[name]
        wanted: dict[ImportKind, set[str]] = {}
        for candidate in pending:
            for _, ref_kind, key in candidate.refs:
                wanted.setdefault(ref_kind, set()).add(key)
        stored_refs = {ref_kind: self._stored_refs(ref_kind, keys) for ref_kind, keys in wanted.items()}
        taken = self.tx.stored_keys(kind, {candidate.key for candidate in pending})
        before_now = self.tx.stored_as_added(kind, taken) if taken else {}
        batch = ImportBatch()
        added = getattr(batch, kind)
        key_field = _KEY_FIELD.get(name, "id")
        refuse = self._refuse
        accepted = skipped = 0
        fresh: list[_Candidate] = []
        for candidate in pending:
            missing = None
            for ref in candidate.refs:
                if ref[2] not in stored_refs[ref[1]]:
                    missing = ref
                    break
            if missing is not None:
                field_name, ref_kind, key = missing
                refuse(
                    name,
                    candidate.index,
                    candidate.original(),
                    f"{field_name}: unknown {_NOUN[ref_kind]} {_shown(key)}",
                )
                continue
            before = before_now.get(candidate.key)
            if before is None:
                before_now[candidate.key] = candidate.value  # a second row with this key in the chunk meets it here
                fresh.append(candidate)
            elif before == candidate.value:
                skipped += 1
            else:
                reason = (
                    f"{key_field}: {_shown(candidate.key)} is already taken by a different {_NOUN[kind]} "
                    "(stored before, or earlier in this file)"
                )
                refuse(name, candidate.index, candidate.original(), reason)
        for candidate in self._within_the_rules(name, fresh):
            added.append(candidate.value)
            accepted += 1
        self.report.accepted[name] += accepted
        self.report.skipped[name] += skipped
        self.tx.add_batch(batch, self.now, "import")

    def _stored_refs(self, kind: ImportKind, keys: set[str]) -> set[str]:
        """Which of the referenced keys are stored. Organizations found once are kept (nothing an
        import does removes one): a relation names one of a few thousand, and a chunk of them
        asked the store again for most of the same ones."""
        if kind != "organizations":
            return self.tx.stored_keys(kind, keys)
        known = self.known_organizations
        found = self.tx.stored_keys(kind, keys - known)
        stored = found | (keys & known)
        if len(known) + len(found) > _KNOWN_ORGANIZATIONS:
            known.clear()  # a bound on memory: asked of the store again
        known |= found
        return stored

    def _within_the_rules(self, name: str, fresh: list[_Candidate]) -> list[_Candidate]:
        """The new rows the rules of every write let in, the others refused (and kept as migration
        issues): a relation that repeats one in force (same contact, organization and role; or
        same delegate, association and employer), a delegation that gives more than the
        association holds on the employer now. Read from the store once per chunk, for the
        (holder, organization) pairs of the chunk only: earlier chunks are there already."""
        if name not in ("relations", "delegations") or not fresh:
            return fresh
        ts = self.now.timestamp()
        today = self.today.toordinal()
        relations = [candidate.value for candidate in fresh if isinstance(candidate.value, Relation)]
        held_by = self.holdings
        if name == "delegations":
            # What an association holds on an employer does not change while delegations are read:
            # each pair is read from the store once for the whole section.
            pairs = {(relation.via_organization_id or "", relation.organization_id) for relation in relations}
            pairs -= held_by.keys()
            for pair in pairs:
                held_by[pair] = []
            for stored in self.tx.open_relations_of(self.now, pairs, organizations=True):
                held_by[(stored.holder_id, stored.organization_id)].append(relation_entry(stored))
        # The pair's relations in force, stored or earlier in the chunk. Most pairs are met once:
        # their entry is built only when the pair comes again.
        open_by: dict[tuple[str, str], list[Entry]] = {}
        pairs = {(relation.holder_id, relation.organization_id) for relation in relations}
        for stored in self.tx.open_relations_of(self.now, pairs):
            open_by.setdefault((stored.holder_id, stored.organization_id), []).append(relation_entry(stored))
        met_once: dict[tuple[str, str], Relation] = {}
        delegations = name == "delegations"
        kept = []
        for candidate in fresh:
            relation = candidate.value
            assert isinstance(relation, Relation)
            pair = (relation.holder_id, relation.organization_id)
            others = open_by.get(pair)
            if others is None and pair in met_once:
                others = open_by[pair] = [relation_entry(met_once.pop(pair))]
            entry: Entry | None = None
            if others is not None:
                entry = relation_entry(relation)
                first = duplicate_of(relation, entry, others, today, ts)
                if first is not None:
                    reason = (
                        f"repeats relation {first!r}, in force: one relation per purpose, its subjects go on the first"
                    )
                    self._refuse(name, candidate.index, candidate.original(), reason)
                    continue
            if delegations:
                entry = entry or relation_entry(relation)
                if is_open(entry, today, ts):
                    via = relation.via_organization_id or ""
                    held = held_by[(via, relation.organization_id)]
                    over = [
                        f"{subject} {right.code} (holds {Right(level).code if level else 'nothing'})"
                        for subject, right in relation.subjects.items()
                        if subject != WILDCARD_SUBJECT
                        and (level := DecisionEngine.granted_level(held, subject, today, ts)) < right
                    ]
                    if over:
                        reason = f"delegates more than {via} holds on {relation.organization_id}: {', '.join(over)}"
                        self._refuse(name, candidate.index, candidate.original(), reason)
                        continue
            if others is not None and entry is not None:
                others.append(entry)
            else:
                met_once[pair] = relation
            kept.append(candidate)
        return kept

    def finish(self) -> ImportReport:
        self.issues.finish()
        report = self.report
        # In the file's order: a row refused for a reference (found at the chunk's end) among its neighbours.
        sections = {name: place for place, name in enumerate(dict.fromkeys(r["section"] for r in report.refused))}
        report.refused.sort(key=lambda r: (sections[r["section"]], r["index"]))
        if any(report.accepted.values()):
            report.revision = self.tx.bump_revision()
            # Too many relations to list in the change log: every running process reloads instead.
            self.tx.append_change(Change(report.revision, self.now, "import", None))
            changes = {"accepted": report.accepted, "refused": len(report.refused)}
            self.tx.add_audit(AuditRecord(self.now, "import", "import", changes), report.revision)
        return report


@contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """An import allocates millions of small acyclic objects (rows, checks, tuples) that reference
    counting frees; the cycle collector's passes over them cost a third of the time and free
    nothing. It is paused for the import and restored after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _in_memory(rows: Any) -> Iterator[_Row]:
    for index, row in enumerate(rows):
        yield _Row(index, row, None)


def import_data(
    store: Store, data: Mapping[str, Any], catalogue: Iterable[str], now: datetime | None = None
) -> ImportReport:
    """Import a document already in memory (generated data sets, tests): the same checks and writes."""
    with _without_cycle_collection(), store.transaction() as tx:
        importer = _Importer(tx, catalogue, now or utc_now())
        for name in _SECTIONS:
            rows = data.get(name)
            if rows is None:
                continue
            if isinstance(rows, list):
                for batch in _checked(name, _in_memory(rows), importer.catalogue, importer.today, wire=False):
                    importer.take(name, batch)
            else:
                importer.refuse_section(name, f"{name} must be a list, not {_shown(rows)}")
        for unknown in sorted(set(data) - set(_SECTIONS)):
            importer.refuse_section(str(unknown)[:_SHOWN], f"unknown section {_shown(unknown)} ignored")
        return importer.finish()


# -- reading a file: what the writer is told, in order


_Message = tuple[Any, ...]  # ("rows", section, batch) or ("refused", section, why the whole section is)


def _sections_in_order(path: Path) -> Iterator[_Section]:
    """The file's top-level members in the order they are imported: one pass when sections come in
    the order of docs/IMPORT.md (the usual case), one more pass for each section that came before
    a section it refers to. Members that are not sections come in the first pass."""
    done: set[str] = set()
    later: list[str] = []
    with path.open("rb") as source:
        for section in _file_sections(source):
            name = section.name
            if name not in _SECTIONS:
                yield section
            elif name in later or not all(needed in done for needed in _NEEDS[name]):
                if name not in later:
                    later.append(name)
            else:
                yield section
                done.add(name)
    for name in sorted(later, key=_SECTIONS.index):
        with path.open("rb") as source:
            for section in _file_sections(source):
                if section.name == name:
                    yield section


def _file_messages(path: Path, catalogue: Mapping[str, Any], today: date, *, wire: bool) -> Iterator[_Message]:
    for section in _sections_in_order(path):
        name = section.name
        if name not in _SECTIONS:
            yield ("refused", name[:_SHOWN], f"unknown section {_shown(name)} ignored")
        elif not section.is_list:
            yield ("refused", name, f"{name} must be a list")
        else:
            for batch in _checked(name, section.rows(), catalogue, today, wire=wire):
                yield ("rows", name, batch)


class _RowsAgain:
    """The file's rows read once more by the writer, forward only and in the reader's order, as
    far as the last batch that needs one: nothing when no row is refused after its check."""

    def __init__(self, path: Path) -> None:
        self._rows = self._walk(path)
        self._position = 0  # rows walked past
        self._start = -1
        self._batch: list[Any] = []

    @staticmethod
    def _walk(path: Path) -> Iterator[Any]:
        for section in _sections_in_order(path):
            if section.name in _SECTIONS and section.is_list:
                for row in section.rows():
                    yield row.value

    def batch(self, start: int, count: int) -> list[Any]:
        """The `count` rows from row `start` (counted over the whole import)."""
        if start != self._start:
            if start < self._position:
                raise AssertionError("rows are read again forward only")
            try:
                for _ in range(start - self._position):
                    next(self._rows)
                self._batch = [next(self._rows) for _ in range(count)]
            except StopIteration:
                raise ImportFileError("the file changed while it was imported") from None
            self._start, self._position = start, start + count
        return self._batch


class _Unreadable(Exception):
    """The reader process found the file cannot be imported; args[0] is what to say."""


def _file_error(path: Path, exc: BaseException) -> ImportFileError:
    """Why a file cannot be imported at all, as the user reads it."""
    if isinstance(exc, _Unreadable):
        return ImportFileError(str(exc.args[0]))
    if isinstance(exc, ImportFileError):
        return ImportFileError(f"{path}: {exc}; nothing was imported")
    if isinstance(exc, ijson.JSONError | UnicodeDecodeError):
        detail = exc.args[0] if exc.args else ""
        if isinstance(detail, bytes):  # yajl's messages come as bytes, with the faulty text and a caret below
            detail = detail.decode("utf-8", "replace")
        first_line = (str(detail).strip().splitlines() or [type(exc).__name__])[0][:200]
        return ImportFileError(f"{path}: cannot be read as JSON ({first_line}); nothing was imported")
    assert isinstance(exc, OSError)
    return ImportFileError(f"{path}: cannot be read ({exc.strerror or exc}); nothing was imported")


_FILE_ERRORS = (ImportFileError, ijson.JSONError, UnicodeDecodeError, OSError)


def _reader(path: str, catalogue: list[str], today: date, sender: Any) -> None:
    """The reader process: parses and checks the file, and sends the writer its batches."""
    # Ctrl-C reaches the whole process group: the writer decides, rolls back and stops this one.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.disable()  # as in the writer: millions of acyclic objects
    try:
        try:
            for message in _file_messages(Path(path), dict.fromkeys(catalogue), today, wire=True):
                # Plain pickle: the connection's own pickler, with its table of reducers, took three times as long.
                sender.send_bytes(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))
            sender.send_bytes(pickle.dumps(("end",)))
        except BrokenPipeError:
            return  # the writer has stopped: nobody to tell
        except _FILE_ERRORS as exc:
            sender.send_bytes(pickle.dumps(("unreadable", str(_file_error(Path(path), exc)))))
        except Exception as exc:  # a fault of this code: the writer says it, and writes nothing
            sender.send_bytes(pickle.dumps(("failed", f"{type(exc).__name__}: {exc}")))
    except BrokenPipeError:
        pass
    finally:
        sender.close()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # the import says why it cannot read it


def _reader_context() -> Any:
    """How the reader process starts. Forking is the quickest, and safe from a process of one
    thread (`authz import`): in a process with others (a server, a test run) one of them could
    hold a lock at the fork, so the reader is spawned instead."""
    fork = "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1
    return multiprocessing.get_context("fork" if fork else "spawn")


def _messages_from_reader(path: Path, catalogue: list[str], today: date) -> Iterator[_Message]:
    """The file's messages, parsed and checked in a second process while this one writes: each
    side is about half of an import's work. A thread of this process drains the pipe into a queue
    of a few batches, so that neither side waits for the other while it has work; memory stays
    that of a few chunks."""
    context = _reader_context()
    receiver, sender = context.Pipe(duplex=False)
    reader = context.Process(
        target=_reader, args=(str(path), catalogue, today, sender), name="authz-import-reader", daemon=True
    )
    reader.start()
    sender.close()  # the reader's end: the writer sees EOF when the reader is gone
    arrived: queue.Queue[bytes | None] = queue.Queue(maxsize=_BATCHES_AHEAD)
    stop = threading.Event()

    def drain() -> None:
        try:
            while not stop.is_set():
                arrived.put(receiver.recv_bytes())
        except (EOFError, OSError):
            arrived.put(None)

    drainer = threading.Thread(target=drain, name="authz-import-pipe", daemon=True)
    drainer.start()
    try:
        while True:
            blob = arrived.get()
            if blob is None:
                raise RuntimeError("the import's reader process stopped before the end of the file")
            message = pickle.loads(blob)
            kind = message[0]
            if kind == "end":
                return
            if kind == "unreadable":
                raise _Unreadable(message[1])
            if kind == "failed":
                raise RuntimeError(f"the import's reader process failed: {message[1]}")
            yield message
    finally:
        stop.set()
        if reader.is_alive():
            reader.terminate()
        reader.join(5)
        with suppress(queue.Empty):  # let the drainer put what it holds and see the closed pipe
            while True:
                arrived.get_nowait()
        drainer.join(5)
        receiver.close()


def import_file(
    store: Store,
    path: Path,
    catalogue: Iterable[str],
    now: datetime | None = None,
    *,
    reader_process: bool | None = None,
) -> ImportReport:
    """Import a JSON file, streamed. With `reader_process` (the default for a file of a few
    megabytes on a machine of two cores or more) the file is parsed and checked in a second
    process while this one writes; the report and what is stored are the same either way."""
    if reader_process is None:
        reader_process = (os.cpu_count() or 1) > 1 and _size(path) >= _READER_FROM_BYTES
    catalogue = list(catalogue)
    try:
        with _without_cycle_collection(), store.transaction() as tx:
            importer = _Importer(tx, catalogue, now or utc_now())
            messages = (
                _messages_from_reader(path, catalogue, importer.today)
                if reader_process
                else _file_messages(path, importer.catalogue, importer.today, wire=False)
            )
            again = _RowsAgain(path) if reader_process else None
            for message in messages:
                if message[0] == "rows":
                    importer.take(message[1], message[2], again)
                else:
                    importer.refuse_section(message[1], message[2])
            return importer.finish()
    except (*_FILE_ERRORS, _Unreadable) as exc:
        raise _file_error(path, exc) from exc
