"""`authz policy test`: YAML cases in the domain's words, run through the server's own engine.

A file holds one small data set and the checks expected of it:

    at: 2024-06-01                    # default instant of every check (a date = noon in Montreal)
    data:
      relations:
        - {id: R-PR, contact: C-PR, organization: ORG-SQC, role: personne_responsable}
      organization_relations:
        - {id: OR-1, grantor: EMP-ABC, grantee: ORG-SQC, subjects: {paiements_et_releves: write}}
      delegations:
        - {id: D-1, contact: C-MHD, via: ORG-SQC, target: EMP-ABC, subjects: {paiements_et_releves: write}}
    allow:
      - {contact: C-PR, organization: ORG-SQC, subject: relations, right: write, why: "rule 2"}
    deny:
      - {contact: C-MHD, organization: EMP-ABC, subject: rapport_mensuel, right: write, at: 2023-12-31}
    explain:
      - {contact: C-MHD, organization: EMP-ABC, subject: paiements_et_releves, right: write,
         allowed: true, reason: "delegated through ORG-SQC", path: [D-1, OR-1]}

The relations are loaded into a `DecisionEngine` holding the policy under test, exactly
as the server loads the store's, and every check is `engine.check` (the server's hot
path); a failure is printed with `engine.explain`, the reason the server would give.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import yaml

from authz.commands.check import CheckAccess, CheckRequest
from authz.domain.dates import MONTREAL, in_force
from authz.domain.model import END_OF_TIME, WILDCARD_SUBJECT, Relation, RelationKind, Right, Role
from authz.engine.index import Decision, DecisionEngine
from authz.engine.policy import Policy

__all__ = ["Case", "CaseResult", "Coverage", "TestFileError", "TestRun", "load_cases", "run_files"]

_ORIGIN = date(2000, 1, 1)  # default start date of a relation in a test file


class TestFileError(Exception):
    """A test file that cannot be run as written; the message names file and line."""

    __test__ = False  # not a pytest class, despite the name


class _Map(dict[str, Any]):
    """A YAML mapping that remembers the line it started on."""

    line: int = 0


class _Loader(yaml.SafeLoader):
    pass


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    result = _Map(loader.construct_pairs(node, deep=True))
    result.line = node.start_mark.line + 1
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)


@dataclass(frozen=True, slots=True)
class Case:
    file: str
    line: int
    kind: str  # allow, deny or explain
    contact: str
    organization: str
    subject: str
    right: Right
    at: datetime
    why: str = ""
    expect_allowed: bool = True
    reason: str | None = None
    path: tuple[str, ...] = ()

    def describe(self) -> str:
        return (
            f"{self.contact} {self.right.code} {self.subject} of {self.organization} "
            f"at {self.at.astimezone(MONTREAL).isoformat(timespec='minutes')}"
        )


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: Case
    passed: bool
    allowed: bool
    message: str = ""


@dataclass
class Coverage:
    """Which (role, subject, right) defaults the cases exercised: a check decided by that default."""

    policy: Policy
    exercised: dict[tuple[Role, str, Right], int] = field(default_factory=dict)

    def cells(self) -> list[tuple[Role, str, Right]]:
        return [
            (role, subject, right)
            for role in Role
            for subject in self.policy.subjects
            for right in (Right.READ, Right.WRITE)
        ]

    def percent(self) -> float:
        cells = self.cells()
        return 100.0 * sum(1 for c in cells if c in self.exercised) / len(cells) if cells else 100.0

    def missing(self) -> list[tuple[Role, str, Right]]:
        return [c for c in self.cells() if c not in self.exercised]

    def table(self) -> str:
        width = max([len(s) for s in self.policy.subjects] + [7])
        lines = [f"{'role':<22} {'subject':<{width}}  default  read  write"]
        for role in Role:
            for subject in self.policy.subjects:
                held = self.policy.default_right(role, subject)
                marks = ["✓" if (role, subject, r) in self.exercised else "·" for r in (Right.READ, Right.WRITE)]
                lines.append(
                    f"{role.value:<22} {subject:<{width}}  {held.code if held else '-':<7}  {marks[0]:<4}  {marks[1]}"
                )
        return "\n".join(lines)

    def summary(self) -> str:
        cells = self.cells()
        done = len(cells) - len(self.missing())
        return f"coverage: {done}/{len(cells)} role × subject × right defaults exercised ({self.percent():.0f}%)"


@dataclass
class TestRun:
    __test__ = False

    results: list[CaseResult]
    coverage: Coverage
    files: list[str]

    @property
    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]


# ---------------------------------------------------------------------------- reading a file
_CHECK_KEYS = {"contact", "who", "organization", "subject", "except", "right", "at", "why"}
_EXPLAIN_KEYS = _CHECK_KEYS | {"allowed", "reason", "path"}
_TOP_KEYS = {"at", "description", "data", "allow", "deny", "explain"}
_DATA_KEYS = {"organizations", "contacts", "relations", "organization_relations", "delegations"}
_RELATION_KEYS = {"id", "contact", "organization", "role", "subjects", "start", "end", "removed"}
_ORG_RELATION_KEYS = {"id", "grantor", "grantee", "role", "subjects", "start", "end", "removed"}
_DELEGATION_KEYS = {"id", "contact", "via", "target", "subjects", "start", "end", "removed"}


class _Reader:
    def __init__(self, path: Path, policy: Policy) -> None:
        self.path = path
        self.policy = policy

    def fail(self, where: Any, message: str) -> TestFileError:
        line = getattr(where, "line", None)
        return TestFileError(f"{self.path}{f':{line}' if line else ''}: {message}")

    def mapping(self, value: Any, keys: set[str], what: str, parent: Any = None) -> _Map:
        if not isinstance(value, _Map):
            raise self.fail(parent, f"{what} must be a mapping (key: value), not {value!r}")
        unknown = sorted(set(value) - keys)
        if unknown:
            raise self.fail(
                value, f"unknown key(s) {', '.join(map(repr, unknown))} in {what} (expected: {', '.join(sorted(keys))})"
            )
        return value

    def text(self, row: _Map, key: str, what: str) -> str:
        value = row.get(key)
        if not isinstance(value, str | int) or str(value) == "":
            raise self.fail(row, f"{what} needs {key!r}")
        return str(value)

    def day(self, row: _Map, key: str, default: date) -> date:
        value = row.get(key)
        if value is None:
            return default
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            raise self.fail(row, f"{key} {value!r} is not a date YYYY-MM-DD") from None

    def instant(self, value: Any, where: Any) -> datetime:
        """A date means noon in Montreal that day; a time without zone is Montreal time."""
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value) if "T" in value or " " in value else date.fromisoformat(value)
            except ValueError:
                raise self.fail(where, f"at {value!r} is not a date or an ISO date-time") from None
        if isinstance(value, datetime):
            return value if value.tzinfo is not None else value.replace(tzinfo=MONTREAL)
        if isinstance(value, date):
            return datetime.combine(value, time(12), MONTREAL)
        raise self.fail(where, f"at {value!r} is not a date or an ISO date-time")

    def subjects(self, row: _Map, *, wildcard: bool) -> dict[str, Right]:
        raw = row.get("subjects")
        if raw is None:
            return {WILDCARD_SUBJECT: Right.WRITE} if wildcard else {}
        pairs: list[tuple[Any, Any]]
        if isinstance(raw, Mapping):
            pairs = list(raw.items())
        elif isinstance(raw, list):
            pairs = [(i.get("subject"), i.get("right")) if isinstance(i, Mapping) else (i, None) for i in raw]
        else:
            raise self.fail(row, "subjects must be a mapping {subject: right} or a list of {subject, right}")
        result: dict[str, Right] = {}
        for subject, right in pairs:
            # A retired subject may still be granted in the data: that is the history it keeps.
            if subject not in self.policy.subjects and subject not in self.policy.retired:
                raise self.fail(row, f"unknown subject {subject!r} (not in subjects.csv nor retired.csv)")
            try:
                result[str(subject)] = Right.parse(str(right))
            except KeyError:
                raise self.fail(row, f"right {right!r} of {subject} must be read or write") from None
        return result or ({WILDCARD_SUBJECT: Right.WRITE} if wildcard else {})

    def role(self, row: _Map, *, required: bool) -> Role | None:
        value = row.get("role")
        if value is None and not required:
            return None
        try:
            return Role(value)
        except ValueError:
            raise self.fail(row, f"unknown role {value!r} (one of {', '.join(r.value for r in Role)})") from None

    def removed(self, row: _Map) -> datetime | None:
        value = row.get("removed")
        return None if value is None else self.instant(value, row)

    def parties(self, data: _Map, relations: Sequence[Relation]) -> tuple[set[str], set[str]]:
        """The contacts and organizations the data knows: listed, or named by a relation."""
        contacts = self.ids(data, "contacts") or set()
        organizations = self.ids(data, "organizations") or set()
        for relation in relations:
            organizations.add(relation.organization_id)
            for other in (relation.grantee_organization_id, relation.via_organization_id):
                if other is not None:
                    organizations.add(other)
            if relation.contact_id is not None:
                contacts.add(relation.contact_id)
        return contacts, organizations

    def relations(self, data: _Map) -> list[Relation]:
        relations: list[Relation] = []
        seen: set[str] = set()
        organizations = self.ids(data, "organizations")
        contacts = self.ids(data, "contacts")

        def known(row: _Map, key: str, pool: set[str] | None, what: str) -> str:
            value = self.text(row, key, what)
            if pool is not None and value not in pool:
                raise self.fail(row, f"{key} {value!r} is not among the data's {what}s")
            return value

        def window(row: _Map) -> tuple[date, date]:
            start, end = self.day(row, "start", _ORIGIN), self.day(row, "end", END_OF_TIME)
            if end < start:
                raise self.fail(row, f"end {end} is before start {start} (the service refuses it)")
            return start, end

        def unique(row: _Map) -> str:
            relation_id = self.text(row, "id", "a relation")
            if relation_id in seen:
                raise self.fail(row, f"relation id {relation_id!r} is used twice")
            seen.add(relation_id)
            return relation_id

        for row in self.rows(data, "relations", _RELATION_KEYS):
            start, end = window(row)
            relations.append(
                Relation(
                    unique(row),
                    RelationKind.CONTACT,
                    known(row, "organization", organizations, "organization"),
                    start,
                    end,
                    contact_id=known(row, "contact", contacts, "contact"),
                    role=self.role(row, required=True),
                    subjects=self.subjects(row, wildcard=False),
                    ended_at=self.removed(row),
                )
            )
        for row in self.rows(data, "organization_relations", _ORG_RELATION_KEYS):
            start, end = window(row)
            grantor = known(row, "grantor", organizations, "organization")
            grantee = known(row, "grantee", organizations, "organization")
            if grantor == grantee:
                raise self.fail(row, "an organization cannot authorize itself")
            subjects = self.subjects(row, wildcard=False)
            if not subjects:
                raise self.fail(row, "an organization relation needs subjects")
            relations.append(
                Relation(
                    unique(row),
                    RelationKind.ORGANIZATION,
                    grantor,
                    start,
                    end,
                    grantee_organization_id=grantee,
                    role=self.role(row, required=False),
                    subjects=subjects,
                    ended_at=self.removed(row),
                )
            )
        for row in self.rows(data, "delegations", _DELEGATION_KEYS):
            start, end = window(row)
            via = known(row, "via", organizations, "organization")
            target = known(row, "target", organizations, "organization")
            if via == target:
                raise self.fail(row, "a delegation goes to another organization than the one it comes through")
            relations.append(
                Relation(
                    unique(row),
                    RelationKind.DELEGATION,
                    target,
                    start,
                    end,
                    contact_id=known(row, "contact", contacts, "contact"),
                    via_organization_id=via,
                    role=self.role(row, required=False),
                    subjects=self.subjects(row, wildcard=True),
                    ended_at=self.removed(row),
                )
            )
        return relations

    def ids(self, data: _Map, key: str) -> set[str] | None:
        """Listing organizations or contacts is optional; when listed, references must match."""
        raw = data.get(key)
        if raw is None:
            return None
        if not isinstance(raw, list):
            raise self.fail(data, f"{key} must be a list")
        return {str(item.get("id")) if isinstance(item, Mapping) else str(item) for item in raw}

    def rows(self, data: _Map, key: str, keys: set[str]) -> Iterator[_Map]:
        raw = data.get(key) or []
        if not isinstance(raw, list):
            raise self.fail(data, f"{key} must be a list")
        for item in raw:
            yield self.mapping(item, keys, f"an item of {key}", data)

    def cases(
        self, document: _Map, kind: str, default_at: datetime, parties: tuple[set[str], set[str]]
    ) -> Iterator[Case]:
        known_contacts, known_organizations = parties
        raw = document.get(kind) or []
        if not isinstance(raw, list):
            raise self.fail(document, f"{kind} must be a list of checks")
        for item in raw:
            row = self.mapping(
                item, _EXPLAIN_KEYS if kind == "explain" else _CHECK_KEYS, f"a check of {kind}", document
            )
            contacts = row.get("contact", row.get("who"))
            if not contacts or not isinstance(contacts, str | list):
                raise self.fail(row, "a check needs contact (or who): a contact id or a list of them")
            organization = self.text(row, "organization", "a check")
            at = self.instant(row["at"], row) if "at" in row else default_at
            subjects = row.get("subject")
            excluded = row.get("except")
            if excluded is not None:
                if subjects != "*":
                    raise self.fail(row, 'except goes with subject: "*" (every subject except those listed)')
                excluded = excluded if isinstance(excluded, list) else [excluded]
                for subject in excluded:
                    if subject not in self.policy.subjects:
                        raise self.fail(row, f"except names {subject!r}, which is not a subject in service")
            if subjects == "*":
                # The catalogue as it is when the tests run: a subject added later is covered too.
                subjects = [s for s in self.policy.subjects if s not in (excluded or [])]
            for subject in subjects if isinstance(subjects, list) else [subjects]:
                if subject not in self.policy.subjects and subject not in self.policy.retired:
                    raise self.fail(row, f"unknown subject {subject!r} (the server would refuse the check)")
            # A case about someone the data does not know would pass (or fail) for nothing.
            if organization not in known_organizations:
                raise self.fail(row, f"organization {organization!r} appears nowhere in the data")
            for contact in contacts if isinstance(contacts, list) else [contacts]:
                if str(contact) not in known_contacts:
                    raise self.fail(row, f"contact {contact!r} appears nowhere in the data")
            rights = row.get("right")
            if kind == "explain" and not isinstance(row.get("allowed"), bool):
                raise self.fail(row, "an explain case needs allowed: true or false")
            for contact, subject in itertools.product(
                contacts if isinstance(contacts, list) else [contacts],
                subjects if isinstance(subjects, list) else [subjects],
            ):
                for right_text in rights if isinstance(rights, list) else [rights]:
                    try:
                        right = Right.parse(str(right_text))
                    except KeyError:
                        raise self.fail(row, f"right {right_text!r} must be read or write") from None
                    path = row.get("path") or []
                    yield Case(
                        str(self.path),
                        row.line,
                        kind,
                        str(contact),
                        organization,
                        str(subject),
                        right,
                        at,
                        why=str(row.get("why") or ""),
                        expect_allowed=(kind == "allow") if kind != "explain" else bool(row["allowed"]),
                        reason=str(row["reason"]) if row.get("reason") is not None else None,
                        path=tuple(str(p) for p in (path if isinstance(path, list) else [path])),
                    )


def load_cases(path: Path, policy: Policy) -> tuple[list[Relation], list[Case]]:
    reader = _Reader(path, policy)
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # _Loader is a SafeLoader
    except OSError as exc:
        raise TestFileError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        raise TestFileError(f"{path}: not valid YAML: {exc}") from exc
    document = reader.mapping(document, _TOP_KEYS, "the file")
    default_at = reader.instant(document["at"], document) if "at" in document else datetime.now(MONTREAL)
    data = reader.mapping(document.get("data") or _Map(), _DATA_KEYS, "data", document)
    relations = reader.relations(data)
    parties = reader.parties(data, relations)
    cases = [
        case for kind in ("allow", "deny", "explain") for case in reader.cases(document, kind, default_at, parties)
    ]
    if not cases:
        raise TestFileError(f"{path}: no allow, deny or explain case")
    return relations, cases


# ---------------------------------------------------------------------------- running
def _verdict(allowed: bool) -> str:
    return "allowed" if allowed else "denied"


def _run_case(engine: DecisionEngine, case: Case) -> CaseResult:
    ts = case.at.timestamp()
    if case.subject in engine.policy.retired:
        # The server's CheckAccess command answers a retired subject before the engine does.
        result = CheckAccess(engine).execute(
            CheckRequest(case.contact, case.organization, case.subject, int(case.right), ts, explain=True)
        )
        allowed, decision = result.allowed, Decision(result.allowed, result.reason, list(result.path))
    else:
        allowed = engine.check(case.contact, case.organization, case.subject, int(case.right), ts)
        decision = engine.explain(case.contact, case.organization, case.subject, int(case.right), ts)
    explanation = decision.reason + (f"; path: {' | '.join(decision.path)}" if decision.path else "")
    if decision.allowed != allowed:  # the two paths of the engine must never disagree
        return CaseResult(
            case,
            False,
            allowed,
            f"check says {_verdict(allowed)} but explain says {_verdict(decision.allowed)} ({explanation})",
        )
    problems: list[str] = []
    if allowed != case.expect_allowed:
        problems.append(f"expected {_verdict(case.expect_allowed)}, got {_verdict(allowed)}")
    if case.reason is not None and case.reason not in decision.reason:
        problems.append(f"reason {decision.reason!r} does not contain {case.reason!r}")
    for fragment in case.path:
        if not any(fragment in step for step in decision.path):
            problems.append(f"no step of the path mentions {fragment!r}")
    if problems:
        return CaseResult(case, False, allowed, "; ".join(problems) + f" — the engine's explanation: {explanation}")
    return CaseResult(case, True, allowed)


def _exercised(
    policy: Policy, relations: Sequence[Relation], case: Case, allowed: bool
) -> list[tuple[Role, str, Right]]:
    """The role defaults this check tested: those of the contact's relations in force on the
    organization whose explicit grants do not already decide it."""
    cells: list[tuple[Role, str, Right]] = []
    for relation in relations:
        if (
            relation.kind is RelationKind.CONTACT
            and relation.contact_id == case.contact
            and relation.organization_id == case.organization
            and relation.role is not None
            and in_force(relation.start_date, relation.end_date, relation.ended_at, case.at)
            and relation.subjects.get(case.subject, Right.NONE) < case.right
        ):
            held = policy.default_right(relation.role, case.subject)
            if (held >= case.right) == allowed:
                cells.append((relation.role, case.subject, case.right))
    return cells


def run_files(paths: Iterable[Path], policy: Policy) -> TestRun:
    results: list[CaseResult] = []
    coverage = Coverage(policy)
    files: list[str] = []
    for path in paths:
        relations, cases = load_cases(path, policy)
        engine = DecisionEngine(policy)
        engine.load(relations, 0)
        files.append(str(path))
        for case in cases:
            result = _run_case(engine, case)
            results.append(result)
            if result.passed:
                for cell in _exercised(policy, relations, case, result.allowed):
                    coverage.exercised[cell] = coverage.exercised.get(cell, 0) + 1
    return TestRun(results, coverage, files)
