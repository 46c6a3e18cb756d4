"""Loading the policy folder: the Casbin model, role defaults, the subject catalogue and
the retired subjects.

The role-default table the fast engine uses is not parsed from policy.csv by hand: it
is read back from Casbin itself, by enforcing every (role, subject, right) against the
model with a probe line, so whatever the model says is what the engine does. Whatever
Casbin (or simpleeval, which evaluates the matcher) raises on a bad model is turned
into a sentence naming model.conf's line by `model_error`.
"""

from __future__ import annotations

import ast
import csv
import difflib
import hashlib
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import casbin
from casbin.model.function import FunctionMap

from authz.domain.model import MANAGEMENT_SUBJECT, Right, Role

__all__ = [
    "MODEL_FILE",
    "POLICY_FILE",
    "RETIRED_FILE",
    "ROLES_FILE",
    "SUBJECTS_FILE",
    "Policy",
    "PolicyLoadError",
    "SubjectLabel",
    "default_policy_dir",
    "matcher_errors",
    "model_error",
    "read_policy_texts",
]

MODEL_FILE = "model.conf"
POLICY_FILE = "policy.csv"
SUBJECTS_FILE = "subjects.csv"
# Optional: subjects taken out of service whose grants stay in the store as history.
RETIRED_FILE = "retired.csv"
POLICY_FILES = (MODEL_FILE, POLICY_FILE, SUBJECTS_FILE)
RETIRED_HEADER = ["code", "label_fr", "label_en", "retired_on"]
# Optional: the roles' labels, for the screens (GetCatalogue); a role without a line shows its code.
ROLES_FILE = "roles.csv"
ROLES_HEADER = ["code", "label_fr", "label_en"]

_PROBE_SUBJECT = "\x00probe"
_PROBE_ORGANIZATION = "\x00probe-organization"


def default_policy_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "policies"


class PolicyLoadError(Exception):
    """The policy folder cannot be loaded; `problems` says where and why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class SubjectLabel:
    code: str
    label_fr: str
    label_en: str


@dataclass(frozen=True)
class Policy:
    """One loaded, immutable version of the policy folder."""

    directory: Path
    content_hash: str
    model_text: str
    policy_text: str
    subjects: Mapping[str, SubjectLabel]  # the subjects in service: what callers may name
    role_defaults: Mapping[Role, Mapping[str, Right]]
    # Retired subjects: a check on one answers "not allowed", lists leave them out, and
    # their grants stay in the store as history. Never in `subjects`.
    retired: Mapping[str, SubjectLabel] = field(default_factory=dict)
    # What people see for each role (roles.csv); `code` is the role's value.
    role_labels: Mapping[Role, SubjectLabel] = field(default_factory=dict)

    def role_label(self, role: Role) -> SubjectLabel:
        """The role's labels, its code where roles.csv gives none."""
        return self.role_labels.get(role) or SubjectLabel(role.value, role.value, role.value)

    @classmethod
    def load(cls, directory: Path | str | None = None) -> Policy:
        folder = Path(directory) if directory is not None else default_policy_dir()
        texts, unreadable = read_policy_texts(folder)
        if unreadable:
            raise PolicyLoadError([f"{path}: {message}" for path, message in unreadable])
        return cls.from_texts(folder, texts)

    @classmethod
    def from_texts(cls, folder: Path, texts: Mapping[str, str]) -> Policy:
        """The policy from the files' texts, read once (the reloader validates these same texts)."""
        subjects = parse_subjects(texts[SUBJECTS_FILE], folder / SUBJECTS_FILE)
        retired = parse_retired(texts.get(RETIRED_FILE, ""), folder / RETIRED_FILE)
        role_labels = parse_role_labels(texts.get(ROLES_FILE, ""), folder / ROLES_FILE)
        model_path = folder / MODEL_FILE
        try:
            enforcer = new_enforcer(texts[MODEL_FILE], texts[POLICY_FILE])
            role_defaults = read_role_defaults(enforcer, subjects)
        except Exception as exc:  # Casbin and simpleeval raise anything from KeyError to SyntaxError
            line, message = model_error(exc, texts[MODEL_FILE])
            where = f"{model_path}:{line}" if line is not None else str(model_path)
            raise PolicyLoadError([f"{where}: error: {message}"]) from exc
        return cls(
            directory=folder,
            content_hash=content_hash(texts),
            model_text=texts[MODEL_FILE],
            policy_text=texts[POLICY_FILE],
            subjects=subjects,
            role_defaults=role_defaults,
            retired=retired,
            role_labels=role_labels,
        )

    def default_right(self, role: Role, subject: str) -> Right:
        return self.role_defaults.get(role, {}).get(subject, Right.NONE)

    def managing_roles(self) -> list[Role]:
        """Roles that may manage their organization (write on `relations`) by default."""
        return [role for role in Role if self.default_right(role, MANAGEMENT_SUBJECT) is Right.WRITE]


def read_policy_texts(folder: Path) -> tuple[dict[str, str], list[tuple[Path, str]]]:
    """The texts of the policy files (retired.csv only when present), and what could not be read."""
    texts: dict[str, str] = {}
    problems: list[tuple[Path, str]] = []
    for name in (*POLICY_FILES, RETIRED_FILE, ROLES_FILE):
        path = folder / name
        if name in (RETIRED_FILE, ROLES_FILE) and not path.exists():
            continue
        try:
            texts[name] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            problems.append((path, f"is not UTF-8 text ({exc.reason} at byte {exc.start})"))
        except OSError as exc:
            problems.append((path, f"cannot be read: {exc.strerror or exc}"))
    return texts, problems


def content_hash(texts: Mapping[str, str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(texts):
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(texts[name].encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def parse_subjects(text: str, path: Path) -> dict[str, SubjectLabel]:
    rows = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    reader = csv.DictReader(io.StringIO("\n".join(rows)))
    subjects: dict[str, SubjectLabel] = {}
    problems: list[str] = []
    if reader.fieldnames is None or list(reader.fieldnames) != ["code", "label_fr", "label_en"]:
        raise PolicyLoadError([f"{path}: the header must be code,label_fr,label_en"])
    for row in reader:
        code = (row.get("code") or "").strip()
        if not code:
            problems.append(f"{path}: a line has no code")
            continue
        if code in subjects:
            problems.append(f"{path}: subject {code!r} is listed twice")
        subjects[code] = SubjectLabel(code, (row.get("label_fr") or "").strip(), (row.get("label_en") or "").strip())
    if problems:
        raise PolicyLoadError(problems)
    return subjects


def parse_retired(text: str, path: Path) -> dict[str, SubjectLabel]:
    """retired.csv: `code,label_fr,label_en,retired_on`; an absent or empty file retires nothing."""
    rows = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not rows:
        return {}
    reader = csv.reader(io.StringIO("\n".join(rows)))
    header = [c.strip() for c in next(reader)]
    if header != RETIRED_HEADER:
        raise PolicyLoadError([f"{path}: the header must be {','.join(RETIRED_HEADER)}"])
    retired: dict[str, SubjectLabel] = {}
    for fields in reader:
        cells = [c.strip() for c in fields] + ["", "", ""]
        if cells[0]:
            retired[cells[0]] = SubjectLabel(cells[0], cells[1], cells[2])
    return retired


def parse_role_labels(text: str, path: Path) -> dict[Role, SubjectLabel]:
    """roles.csv: `code,label_fr,label_en`; an absent or empty file labels nothing."""
    rows = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not rows:
        return {}
    reader = csv.reader(io.StringIO("\n".join(rows)))
    if [c.strip() for c in next(reader)] != ROLES_HEADER:
        raise PolicyLoadError([f"{path}: the header must be {','.join(ROLES_HEADER)}"])
    labels: dict[Role, SubjectLabel] = {}
    known = {role.value: role for role in Role}
    for fields in reader:
        cells = [c.strip() for c in fields] + ["", "", ""]
        if cells[0] not in known:
            raise PolicyLoadError([f"{path}: {cells[0]!r} is not a role"])
        labels[known[cells[0]]] = SubjectLabel(cells[0], cells[1], cells[2])
    return labels


def new_enforcer(model_text: str, policy_text: str) -> casbin.Enforcer:
    """A plain Casbin enforcer with the model and the role policy, no relation data yet."""
    model = casbin.Enforcer.new_model(text=model_text)
    enforcer = casbin.Enforcer(model)
    for line in policy_text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = [field.strip() for field in line.split(",")]
        ptype, rule = fields[0], fields[1:]
        if ptype.startswith("g"):
            enforcer.add_named_grouping_policy(ptype, *rule)
        else:
            enforcer.add_named_policy(ptype, *rule)
    # Role defaults never go through a delegation; holds() is given by the oracle.
    enforcer.add_function("holds", lambda *_: False)
    return enforcer


def read_role_defaults(enforcer: casbin.Enforcer, subjects: Mapping[str, SubjectLabel]) -> dict[Role, dict[str, Right]]:
    table: dict[Role, dict[str, Right]] = {}
    for role in Role:
        probe = [_PROBE_SUBJECT, _PROBE_ORGANIZATION, role.value, "-", "-", "-"]
        enforcer.add_policy(*probe)
        try:
            grants: dict[str, Right] = {}
            for subject in subjects:
                for right in (Right.WRITE, Right.READ):
                    if enforcer.enforce(_PROBE_SUBJECT, _PROBE_ORGANIZATION, subject, right.code):
                        grants[subject] = right
                        break
            table[role] = grants
        finally:
            enforcer.remove_policy(*probe)
    return table


# ---------------------------------------------------------------------------- model errors
# Casbin's built-in functions, plus the ones this model gets: one per role definition
# (g, g2, g3) and holds(), which the server and the oracle provide.
_EXTRA_FUNCTIONS = ("holds",)
_SPELLINGS = {"true": "True", "false": "False", "null": "None", "nil": "None", "none": "None"}


def known_functions(model_text: str) -> list[str]:
    """The functions a matcher of this model may call."""
    builtins = FunctionMap.load_function_map().get_functions()
    roles = re.findall(r"^\s*(g\d*)\s*=", model_text, flags=re.MULTILINE)
    return sorted({*builtins, *roles, *_EXTRA_FUNCTIONS})


def _definition_lines(model_text: str, key: str) -> tuple[int, int] | None:
    """First and last line of `key = ...` in model.conf, continuation lines included."""
    lines = model_text.splitlines()
    for number, raw in enumerate(lines, start=1):
        if re.match(rf"^\s*{re.escape(key)}\s*=", raw):
            last = number
            while lines[last - 1].rstrip().endswith("\\") and last < len(lines):
                last += 1
            return number, last
    return None


def _line_of(model_text: str, pattern: str) -> int | None:
    """The line of the matcher where `pattern` occurs first, else the matcher's first line."""
    span = _definition_lines(model_text, "m")
    if span is None:
        return None
    lines = model_text.splitlines()
    for number in range(span[0], span[1] + 1):
        if re.search(pattern, lines[number - 1]):
            return number
    return span[0]


def _name_message(name: str, model_text: str) -> tuple[int | None, str]:
    if name.lower() in _SPELLINGS:
        right = _SPELLINGS[name.lower()]
        return (
            _line_of(model_text, rf"\b{re.escape(name)}\b"),
            f"unknown name {name!r} in the matcher: write {right} (capitalized, as in Python)",
        )
    match = re.fullmatch(r"([rp]\d*)_(\w+)", name)
    if match:
        kind, field_name = match.groups()
        key = "request_definition" if kind.startswith("r") else "policy_definition"
        fields = _definition_fields(model_text, kind)
        known = f" (its fields: {', '.join(fields)})" if fields else ""
        return (
            _line_of(model_text, rf"\b{kind}\.{re.escape(field_name)}\b"),
            f"{kind}.{field_name}: {kind} has no field {field_name!r} in [{key}]{known}",
        )
    return (
        _line_of(model_text, rf"\b{re.escape(name)}\b"),
        f"unknown name {name!r} in the matcher: the names are r.<field> and p.<field>, True and False; "
        'put a text value in double quotes ("...")',
    )


def _definition_fields(model_text: str, key: str) -> list[str]:
    match = re.search(rf"^\s*{re.escape(key)}\s*=\s*(.+)$", model_text, flags=re.MULTILINE)
    return [f.strip() for f in match.group(1).split(",")] if match else []


def model_error(exc: BaseException, model_text: str) -> tuple[int | None, str]:
    """(line of model.conf or None, plain words) for whatever Casbin or simpleeval raised."""
    matcher = _definition_lines(model_text, "m")
    first = matcher[0] if matcher else None
    # simpleeval (pycasbin's evaluator, not a dependency of ours) is recognized by its names.
    kind = type(exc).__name__
    if kind == "FunctionNotDefined":
        return _function_message(str(getattr(exc, "func_name", "?")), model_text)
    if kind == "NameNotDefined":
        return _name_message(str(getattr(exc, "name", "?")), model_text)
    if isinstance(exc, SyntaxError):
        span = f" (lines {matcher[0]}-{matcher[1]})" if matcher and matcher[1] > matcher[0] else ""
        hint = _syntax_hint(exc.msg or "", model_text)
        return first, f"the matcher{span} is not a valid expression: {exc.msg}{hint}"
    if kind in ("InvalidExpression", "AttributeDoesNotExist", "OperatorNotDefined", "FeatureNotAvailable"):
        return first, f"the matcher cannot be evaluated: {exc}"
    if isinstance(exc, RuntimeError) and "matcher result" in str(exc):
        return first, "the matcher must give True or False (a comparison such as p.sub == r.sub), not a value"
    if isinstance(exc, RuntimeError) and "size" in str(exc):
        return None, f"the rule definitions do not match the rules given ({exc}): check the field counts of r and p"
    if isinstance(exc, KeyError):
        return None, f"Casbin cannot find {exc} in model.conf: is a [section] or definition missing?"
    return first, f"Casbin cannot use model.conf: {type(exc).__name__}: {exc}"


def _function_message(name: str, model_text: str) -> tuple[int | None, str]:
    functions = known_functions(model_text)
    return (
        _line_of(model_text, rf"\b{re.escape(name)}\s*\("),
        f"the matcher calls {name}(), which does not exist{_close(name, functions)}; "
        f"the functions are: {', '.join(functions)}",
    )


def _close(name: str, candidates: Iterable[str]) -> str:
    matches = difflib.get_close_matches(name, list(candidates), n=1)
    return f" (did you mean {matches[0]}()?)" if matches else ""


def _syntax_hint(message: str, model_text: str) -> str:
    span = _definition_lines(model_text, "m")
    text = "\n".join(model_text.splitlines()[span[0] - 1 : span[1]]) if span else ""
    if "never closed" in message or "unmatched" in message or text.count("(") != text.count(")"):
        return f" ({text.count('(')} '(' for {text.count(')')} ')')"
    return "; compare with ==, combine with && and ||, put text in double quotes"


def matcher_errors(model_text: str) -> list[tuple[int | None, str]]:
    """Every fault of the matcher Casbin would only meet while evaluating a rule that reaches it.

    simpleeval looks a function or name up only when it evaluates it, so `hold(` in a branch
    the role-default probes never reach would load fine and fail on the first delegation:
    the expression is read here as Casbin will evaluate it, and every call and name checked.
    """
    try:
        model = casbin.Enforcer.new_model(text=model_text)
        value = model["m"]["m"].value
        expression = value.replace("&&", "and").replace("||", "or")
        expression = re.sub(r"!(?!=)", "not ", expression)
        tree = ast.parse(expression.strip())
    except Exception as exc:
        return [model_error(exc, model_text)]
    matcher = _definition_lines(model_text, "m")
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Expr):
        return [(matcher[0] if matcher else None, "the matcher is not one expression: compare with ==, not =")]
    errors: list[tuple[int | None, str]] = []
    functions = set(known_functions(model_text))
    names = {f"{kind}_{field_name}" for kind in ("r", "p") for field_name in _definition_fields(model_text, kind)}
    called: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name):
                called.add(id(node.func))
                if node.func.id not in functions:
                    errors.append(_function_message(node.func.id, model_text))
            else:
                errors.append((matcher[0] if matcher else None, "the matcher may only call functions by name"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and id(node) not in called and node.id not in names:
            errors.append(_name_message(node.id, model_text))
    return list(dict.fromkeys(errors))
