"""Validation of a policy folder: every problem, with file, line and a plain reason.

`load_checked` is the only safe way to load a policy: the server starts with it, its hot
reload calls `validate_texts`, and `authz policy validate` prints the same report, so
what the command accepts is what the server accepts. The folder is loaded exactly as the
server loads it (`Policy.from_texts`, the same texts read once), and line-level checks
are added on top, because Casbin itself forgives a lot: its CSV reader drops a line whose
rule type the model does not define, a rule with too many or too few fields only shows
up as a wrong decision later, and a misspelled function in the matcher only fails when a
rule reaches it. Given the count of grants the store holds per subject (`Store.live_grants`),
it also refuses a folder that removes (rather than retires) a subject still granted.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from authz.domain.model import END_OF_TIME, MANAGEMENT_SUBJECT, WILDCARD_SUBJECT, Relation, RelationKind, Right, Role
from authz.engine.index import DecisionEngine
from authz.engine.oracle import build_enforcer
from authz.engine.policy import (
    MODEL_FILE,
    POLICY_FILE,
    RETIRED_FILE,
    RETIRED_HEADER,
    ROLES_FILE,
    ROLES_HEADER,
    SUBJECTS_FILE,
    Policy,
    PolicyLoadError,
    content_hash,
    default_policy_dir,
    matcher_errors,
    model_error,
    read_policy_texts,
)

__all__ = [
    "ERROR",
    "WARNING",
    "Problem",
    "ValidationReport",
    "live_grant_problems",
    "load_checked",
    "read_texts",
    "validate",
    "validate_texts",
]

ERROR = "error"
WARNING = "warning"

_ROLES = [role.value for role in Role]
_RIGHTS = ("read", "write")
_SUBJECT_CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_MANAGE = MANAGEMENT_SUBJECT
# The sections and keys the server's engine and oracle rely on, with their field counts.
_MODEL_KEYS: dict[str, dict[str, int | None]] = {
    "request_definition": {"r": 4},
    "policy_definition": {"p": 6},
    "role_definition": {"g": 3, "g2": 2, "g3": 3},
    "policy_effect": {"e": None},
    "matchers": {"m": None},
}
_ALLOW_EFFECT = "some(where (p.eft == allow))"


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int | None
    message: str
    severity: str = ERROR

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.severity}: {self.message}"


@dataclass
class ValidationReport:
    directory: Path
    content_hash: str
    problems: list[Problem] = field(default_factory=list)
    policy: Policy | None = None

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors and self.policy is not None


def read_texts(directory: Path) -> tuple[dict[str, str], list[Problem]]:
    texts, unreadable = read_policy_texts(directory)
    return texts, [Problem(str(path), None, message) for path, message in unreadable]


def validate(directory: Path | str | None = None, live_grants: Mapping[str, int] | None = None) -> ValidationReport:
    """The report on a folder; `live_grants` (grants in force per subject, from the store) adds
    the check that no subject still granted is removed."""
    folder = Path(directory) if directory is not None else default_policy_dir()
    texts, problems = read_texts(folder)
    if problems:
        return ValidationReport(folder, content_hash(texts), problems)
    return validate_texts(folder, texts, live_grants)


def load_checked(directory: Path | str | None = None) -> Policy:
    """The only safe way to load a policy: the policy if it validates without error,
    PolicyLoadError listing every error otherwise."""
    report = validate(directory)
    if not report.ok or report.policy is None:
        raise PolicyLoadError([str(p) for p in report.errors] or ["the policy could not be loaded"])
    return report.policy


def _content_lines(text: str) -> list[tuple[int, str]]:
    """(line number, stripped text) of every line that is not blank or a comment."""
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            lines.append((number, line))
    return lines


def validate_texts(
    folder: Path, texts: Mapping[str, str], live_grants: Mapping[str, int] | None = None
) -> ValidationReport:
    """Every problem of the folder's texts. Never raises on bad content: whatever Casbin or
    the matcher's evaluator raises becomes a problem of model.conf."""
    report = ValidationReport(folder, content_hash(texts))
    problems = report.problems
    model_path = str(folder / MODEL_FILE)
    subjects = _check_subjects(str(folder / SUBJECTS_FILE), texts[SUBJECTS_FILE], problems)
    retired = _check_retired(str(folder / RETIRED_FILE), texts.get(RETIRED_FILE, ""), subjects, problems)
    _check_role_labels(str(folder / ROLES_FILE), texts.get(ROLES_FILE, ""), problems)
    defined = _check_model(model_path, texts[MODEL_FILE], problems)
    g_lines = _check_policy_lines(str(folder / POLICY_FILE), texts[POLICY_FILE], defined, subjects, problems, retired)
    if not report.errors:
        problems.extend(Problem(model_path, line, message) for line, message in matcher_errors(texts[MODEL_FILE]))
    if report.errors:
        # Later checks would only repeat these errors in Casbin's words.
        return report
    try:
        policy = Policy.from_texts(folder, texts)
    except PolicyLoadError as exc:
        if exc.__cause__ is not None:  # Casbin or the evaluator: said in model.conf's terms
            line, message = model_error(exc.__cause__, texts[MODEL_FILE])
            problems.append(Problem(model_path, line, message))
        else:
            problems.extend(Problem(str(folder), None, text) for text in exc.problems)
        return report
    _check_loaded(folder, policy, g_lines, problems)
    if not report.errors:
        try:
            _check_engine_agrees(folder, policy, problems)
        except Exception as exc:  # the matcher fails on a rule the probes above never reached
            line, message = model_error(exc, texts[MODEL_FILE])
            problems.append(Problem(model_path, line, message))
    if live_grants is not None:
        problems.extend(live_grant_problems(folder, policy, live_grants))
    if not report.errors:
        report.policy = policy
    return report


def live_grant_problems(folder: Path, policy: Policy, live_grants: Mapping[str, int]) -> list[Problem]:
    """A subject still granted in the store must stay in subjects.csv or be retired: removed,
    every check naming it would answer INVALID_ARGUMENT and the lists would show its grants."""
    problems = []
    for subject, count in sorted(live_grants.items()):
        if count and subject != WILDCARD_SUBJECT and subject not in policy.subjects and subject not in policy.retired:
            problems.append(
                Problem(
                    str(folder / SUBJECTS_FILE),
                    None,
                    f"subject {subject!r} is removed, but {count} grant(s) in force in the store still hold it "
                    f"(on relations, or from one organization to another): retire it instead (move its line to "
                    f"{RETIRED_FILE}, see authz/policies/README.md), or revoke those grants first",
                )
            )
    return problems


# ---------------------------------------------------------------------------- subjects.csv
def _check_subjects(path: str, text: str, problems: list[Problem]) -> set[str]:
    lines = _content_lines(text)
    codes: dict[str, int] = {}
    labels: dict[tuple[str, str], tuple[str, int]] = {}  # (column, label) -> first code and line
    if not lines:
        problems.append(Problem(path, None, "is empty: it must start with the header code,label_fr,label_en"))
        return set()
    header_line, header = lines[0]
    if [c.strip() for c in next(csv.reader([header]))] != ["code", "label_fr", "label_en"]:
        problems.append(
            Problem(path, header_line, f"the first line must be the header code,label_fr,label_en, not {header!r}")
        )
    for number, line in lines[1:]:
        fields = [c.strip() for c in next(csv.reader([line]))]
        if len(fields) != 3:
            problems.append(
                Problem(
                    path,
                    number,
                    f"has {len(fields)} fields, expected 3 (code,label_fr,label_en); "
                    "put a label containing a comma in double quotes",
                )
            )
            continue
        code, label_fr, label_en = fields
        if not _SUBJECT_CODE.match(code):
            problems.append(
                Problem(
                    path,
                    number,
                    f"subject code {code!r} must be lower-case letters, digits and _ "
                    "(starting with a letter, at most 64): callers send it as is",
                )
            )
            continue
        if code in codes:
            problems.append(Problem(path, number, f"subject {code!r} is listed twice (first on line {codes[code]})"))
            continue
        codes[code] = number
        if not label_fr:
            problems.append(Problem(path, number, f"subject {code!r} has no French label (label_fr)"))
        if not label_en:
            problems.append(Problem(path, number, f"subject {code!r} has no English label (label_en)"))
        for column, label in (("label_fr", label_fr), ("label_en", label_en)):
            if not label:
                continue
            other = labels.setdefault((column, label.casefold()), (code, number))
            if other[0] != code:
                problems.append(
                    Problem(
                        path,
                        number,
                        f"subject {code!r} has the same {column} as {other[0]!r} (line {other[1]}), {label!r}: "
                        "people choosing a subject could not tell them apart",
                    )
                )
    if lines and _MANAGE not in codes:
        problems.append(
            Problem(
                path,
                None,
                f"the subject {_MANAGE!r} is missing: write on it is what lets a contact manage "
                "an organization's relations, so it must stay in the catalogue",
            )
        )
    return set(codes)


# ---------------------------------------------------------------------------- retired.csv
def _check_role_labels(path: str, text: str, problems: list[Problem]) -> None:
    """roles.csv is optional; when present: a header, then each role once with both labels."""
    lines = _content_lines(text)
    if not lines:
        return
    header_line, header = lines[0]
    if [c.strip() for c in next(csv.reader([header]))] != ROLES_HEADER:
        problems.append(
            Problem(path, header_line, f"the first line must be the header {','.join(ROLES_HEADER)}, not {header!r}")
        )
        return
    known = {role.value for role in Role}
    seen: dict[str, int] = {}
    for number, line in lines[1:]:
        fields = [c.strip() for c in next(csv.reader([line]))]
        if len(fields) != 3:
            problems.append(Problem(path, number, f"has {len(fields)} fields, expected 3 (code,label_fr,label_en)"))
            continue
        code, label_fr, label_en = fields
        if code not in known:
            problems.append(Problem(path, number, f"{code!r} is not a role: one of {', '.join(sorted(known))}"))
            continue
        if code in seen:
            problems.append(Problem(path, number, f"role {code!r} is listed twice (first on line {seen[code]})"))
            continue
        seen[code] = number
        if not label_fr:
            problems.append(Problem(path, number, f"role {code!r} has no French label (label_fr)"))
        if not label_en:
            problems.append(Problem(path, number, f"role {code!r} has no English label (label_en)"))
    for code in sorted(known - set(seen)):
        problems.append(Problem(path, None, f"role {code!r} has no line: the screens would show its code", WARNING))


def _check_retired(path: str, text: str, subjects: set[str], problems: list[Problem]) -> set[str]:
    """retired.csv is optional; when present: a header, then one retired subject per line."""
    lines = _content_lines(text)
    if not lines:
        return set()
    header_line, header = lines[0]
    if [c.strip() for c in next(csv.reader([header]))] != RETIRED_HEADER:
        problems.append(
            Problem(path, header_line, f"the first line must be the header {','.join(RETIRED_HEADER)}, not {header!r}")
        )
        return set()
    codes: dict[str, int] = {}
    for number, line in lines[1:]:
        fields = [c.strip() for c in next(csv.reader([line]))]
        if len(fields) != len(RETIRED_HEADER):
            problems.append(
                Problem(
                    path,
                    number,
                    f"has {len(fields)} fields, expected {len(RETIRED_HEADER)} ({','.join(RETIRED_HEADER)}); "
                    "put a label containing a comma in double quotes",
                )
            )
            continue
        code, _label_fr, _label_en, retired_on = fields
        if not _SUBJECT_CODE.match(code):
            problems.append(Problem(path, number, f"{code!r} is not a subject code"))
            continue
        if code in codes:
            problems.append(Problem(path, number, f"subject {code!r} is retired twice (first on line {codes[code]})"))
            continue
        codes[code] = number
        if code == _MANAGE:
            problems.append(
                Problem(path, number, f"{_MANAGE!r} cannot be retired: write on it is what manages an organization")
            )
        elif code in subjects:
            problems.append(
                Problem(
                    path,
                    number,
                    f"subject {code!r} is both in service (subjects.csv) and retired: remove one of the two lines",
                )
            )
        try:
            date.fromisoformat(retired_on)
        except ValueError:
            problems.append(Problem(path, number, f"retired_on must be a date YYYY-MM-DD, not {retired_on!r}"))
    return set(codes)


# ---------------------------------------------------------------------------- model.conf
def _check_model(path: str, text: str, problems: list[Problem]) -> set[str]:
    """Checks the sections and definitions the engine relies on; returns the rule types defined."""
    section: str | None = None
    skipping = False  # inside an unknown section, already reported once
    seen: dict[str, dict[str, tuple[int, str]]] = {}
    pending: tuple[int, str, str] | None = None  # a definition continued with a trailing backslash
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if pending is not None:
            start, key, value = pending
            value += " " + line.rstrip("\\").strip()
            pending = (start, key, value) if line.endswith("\\") else None
            if pending is None and section is not None:
                seen.setdefault(section, {})[key] = (start, value)
            continue
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            name = line.strip("[]").strip()
            if not line.endswith("]") or name not in _MODEL_KEYS:
                problems.append(
                    Problem(
                        path,
                        number,
                        f"unknown section {line!r}; the sections are " + ", ".join(f"[{s}]" for s in _MODEL_KEYS),
                    )
                )
                section, skipping = None, True
                continue
            skipping = False
            if name in seen:
                problems.append(Problem(path, number, f"section [{name}] appears twice"))
            section = name
            seen.setdefault(name, {})
            continue
        if skipping:
            continue
        if "=" not in line:
            problems.append(Problem(path, number, f"expected `key = value`, found {line!r}"))
            continue
        if section is None:
            problems.append(Problem(path, number, "a definition outside any known [section]"))
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        if key not in _MODEL_KEYS[section]:
            problems.append(
                Problem(
                    path,
                    number,
                    f"{key!r} is not expected in [{section}] (expected: " + ", ".join(_MODEL_KEYS[section]) + ")",
                )
            )
            continue
        if value.endswith("\\"):
            pending = (number, key, value.rstrip("\\").strip())
            continue
        seen[section][key] = (number, value)
    for name, keys in _MODEL_KEYS.items():
        if name not in seen:
            problems.append(Problem(path, None, f"section [{name}] is missing"))
            continue
        for key, count in keys.items():
            if key not in seen[name]:
                problems.append(Problem(path, None, f"[{name}] must define {key!r}"))
                continue
            number, value = seen[name][key]
            if count is not None:
                fields = [f.strip() for f in value.split(",")]
                if len(fields) != count or not all(fields):
                    problems.append(
                        Problem(
                            path,
                            number,
                            f"{key} must have {count} fields, found {len(fields)} ({value!r}): "
                            "the server builds its rules with that many",
                        )
                    )
    effect = seen.get("policy_effect", {}).get("e")
    if effect is not None and effect[1].replace(" ", "") != _ALLOW_EFFECT.replace(" ", ""):
        problems.append(
            Problem(
                path,
                effect[0],
                f"the effect must be {_ALLOW_EFFECT!r}: nothing is ever denied explicitly, "
                "and the server's engine implements only that effect",
            )
        )
    return {key for keys in seen.values() for key in keys if key[0] in "pg"}


# ---------------------------------------------------------------------------- policy.csv
@dataclass(frozen=True, slots=True)
class _GLine:
    line: int
    role: str
    subject: str
    right: str


def _check_policy_lines(
    path: str, text: str, defined: set[str], subjects: set[str], problems: list[Problem], retired: set[str]
) -> list[_GLine]:
    g_lines: list[_GLine] = []
    first: dict[tuple[str, ...], int] = {}
    implication = False
    for number, line in _content_lines(text):
        if any(c in line for c in '"[]()'):
            problems.append(
                Problem(
                    path,
                    number,
                    "quotes, brackets and parentheses are not allowed: Casbin's reader and the "
                    "server would not split this line the same way",
                )
            )
            continue
        fields = [f.strip() for f in line.split(",")]
        ptype, rule = fields[0], fields[1:]
        if ptype not in defined:
            problems.append(
                Problem(
                    path,
                    number,
                    f"Casbin would silently ignore this line: {ptype!r} is not a rule type of "
                    f"model.conf (here only `g` for role defaults and `g2` for write-implies-read)",
                )
            )
            continue
        if ptype in ("p", "g3"):
            what = "relations (p)" if ptype == "p" else "memberships (g3)"
            problems.append(
                Problem(
                    path,
                    number,
                    f"`{ptype}` lines are the {what} the server builds from the database; one "
                    "written here would be ignored by the server's engine (only `g` and `g2` belong here)",
                )
            )
            continue
        if any(not f for f in rule):
            problems.append(Problem(path, number, "a field is empty (a doubled or trailing comma?)"))
            continue
        key = (ptype, *rule)
        if key in first:
            problems.append(Problem(path, number, f"repeats line {first[key]}; Casbin keeps one copy", WARNING))
            continue
        first[key] = number
        if ptype == "g2":
            if rule == ["write", "read"]:
                implication = True
            else:
                problems.append(
                    Problem(
                        path,
                        number,
                        f"`g2, {', '.join(rule)}`: the only right implication the server knows is `g2, write, read`",
                    )
                )
            continue
        if ptype != "g":
            problems.append(Problem(path, number, f"{ptype!r} lines have no meaning in this policy"))
            continue
        if len(rule) != 3:
            problems.append(
                Problem(path, number, f"has {len(rule)} fields after `g`, expected 3: `g, <role>, <subject>, <right>`")
            )
            continue
        role, subject, right = rule
        bad = False
        if role not in _ROLES:
            problems.append(Problem(path, number, f"unknown role {role!r} (the roles are {', '.join(_ROLES)})"))
            bad = True
        if subject in retired:
            problems.append(
                Problem(
                    path,
                    number,
                    f"subject {subject!r} is retired ({RETIRED_FILE}): no role may hold it; delete this line",
                )
            )
            bad = True
        elif subject not in subjects:
            problems.append(
                Problem(path, number, f"unknown subject {subject!r}: add it to subjects.csv first, or fix the spelling")
            )
            bad = True
        if right not in _RIGHTS:
            problems.append(Problem(path, number, f"unknown right {right!r} (read or write)"))
            bad = True
        if not bad:
            g_lines.append(_GLine(number, role, subject, right))
    by_cell: dict[tuple[str, str], _GLine] = {}
    for g in g_lines:
        other = by_cell.get((g.role, g.subject))
        if other is not None:
            later, kept = (g, other) if g.right == "read" else (other, g)
            if later.right == "read" and kept.right == "write":
                problems.append(
                    Problem(
                        path,
                        later.line,
                        f"{g.role} already holds {g.subject} write on line {kept.line}; "
                        "write implies read, so this line changes nothing",
                        WARNING,
                    )
                )
        by_cell[(g.role, g.subject)] = g if other is None or g.right == "write" else other
    if not implication and "g2" in defined:
        problems.append(
            Problem(
                path,
                None,
                "the line `g2, write, read` is missing: without it Casbin would not let write imply "
                "read, while the server's engine always does",
            )
        )
    return g_lines


# ---------------------------------------------------------------------------- the loaded policy
def _check_loaded(folder: Path, policy: Policy, g_lines: list[_GLine], problems: list[Problem]) -> None:
    path = str(folder / POLICY_FILE)
    for g in g_lines:
        held = policy.default_right(Role(g.role), g.subject)
        if held < Right.parse(g.right):
            problems.append(
                Problem(
                    path,
                    g.line,
                    f"Casbin does not apply this line: under model.conf's matcher {g.role} holds "
                    f"{held.code if held else 'nothing'} on {g.subject}",
                )
            )
    if not policy.managing_roles():
        problems.append(
            Problem(
                path,
                None,
                f"nobody could manage an organization: no role holds write on {_MANAGE!r} by "
                f"default, so no one could add, change or remove relations or issue link codes "
                f"(give it to at least one role, e.g. `g, personne_responsable, {_MANAGE}, write`)",
            )
        )
    for subject in policy.subjects:
        if not any(policy.default_right(role, subject) for role in Role):
            problems.append(
                Problem(
                    str(folder / SUBJECTS_FILE),
                    None,
                    f"no role holds {subject!r} by default: only a grant "
                    "on a relation (or a delegation) can give it; is a `g` line missing?",
                    WARNING,
                )
            )


def _check_engine_agrees(folder: Path, policy: Policy, problems: list[Problem]) -> None:
    """The server decides with its own engine, not Casbin: on a small fixed data set covering
    every kind of relation, both must agree for every subject and right, or an edit of the
    matcher would be honoured by `authz policy test` against Casbin but not in production."""
    start, end = date(2020, 1, 1), END_OF_TIME
    relations: list[Relation] = []
    for role in Role:
        relations.append(
            Relation(f"R-{role.value}", RelationKind.CONTACT, "ORG-A", start, end, f"C-{role.value}", role=role)
        )
    relations += [
        Relation(
            "R-GRANT",
            RelationKind.CONTACT,
            "ORG-A",
            start,
            end,
            "C-GRANT",
            role=Role.MEMBRE_DU_PERSONNEL,
            subjects={s: Right.READ for s in policy.subjects},
        ),
        Relation("R-STAFF", RelationKind.CONTACT, "ORG-B", start, end, "C-STAFF", role=Role.MEMBRE_DU_PERSONNEL),
        Relation(
            "OR-A-B",
            RelationKind.ORGANIZATION,
            "ORG-A",
            start,
            end,
            grantee_organization_id="ORG-B",
            subjects=dict.fromkeys(policy.subjects, Right.WRITE),
        ),
        Relation(
            "D-STAFF",
            RelationKind.DELEGATION,
            "ORG-A",
            start,
            end,
            "C-STAFF",
            via_organization_id="ORG-B",
            subjects=dict.fromkeys(policy.subjects, Right.READ),
        ),
    ]
    at = datetime(2024, 6, 1, 12, tzinfo=UTC)
    engine = DecisionEngine(policy)
    engine.load(relations, 0)
    oracle = build_enforcer(policy, relations, at)
    for relation in relations:
        if relation.kind is RelationKind.ORGANIZATION:
            continue
        for subject in policy.subjects:
            for right in (Right.READ, Right.WRITE):
                fast = engine.check(relation.holder_id, relation.organization_id, subject, right, at.timestamp())
                slow = bool(oracle.enforce(relation.holder_id, relation.organization_id, subject, right.code))
                if fast != slow:
                    what = f"{relation.role.value if relation.role else relation.kind.value} {right.code} on {subject}"
                    problems.append(
                        Problem(
                            str(folder / MODEL_FILE),
                            None,
                            f"model.conf's matcher and the server's engine "
                            f"disagree ({what}: Casbin {'allows' if slow else 'denies'}, the server "
                            f"{'allows' if fast else 'denies'}); only role defaults are read from the model, "
                            "the rest of the matcher must keep its shipped meaning",
                        )
                    )
                    return
