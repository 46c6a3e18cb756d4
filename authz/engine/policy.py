"""Loading the policy folder: the Casbin model, role defaults and the subject catalogue.

The role-default table the fast engine uses is not parsed from policy.csv by hand: it
is read back from Casbin itself, by enforcing every (role, subject, right) against the
model with a probe line, so whatever the model says is what the engine does.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import casbin

from authz.domain.model import Right, Role

__all__ = [
    "MODEL_FILE",
    "POLICY_FILE",
    "SUBJECTS_FILE",
    "Policy",
    "PolicyLoadError",
    "SubjectLabel",
    "default_policy_dir",
]

MODEL_FILE = "model.conf"
POLICY_FILE = "policy.csv"
SUBJECTS_FILE = "subjects.csv"
POLICY_FILES = (MODEL_FILE, POLICY_FILE, SUBJECTS_FILE)

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
    subjects: Mapping[str, SubjectLabel]
    role_defaults: Mapping[Role, Mapping[str, Right]]

    @classmethod
    def load(cls, directory: Path | str | None = None) -> Policy:
        folder = Path(directory) if directory is not None else default_policy_dir()
        texts: dict[str, str] = {}
        problems: list[str] = []
        for name in POLICY_FILES:
            try:
                texts[name] = (folder / name).read_text(encoding="utf-8")
            except OSError as exc:
                problems.append(f"{folder / name}: cannot be read ({exc.strerror or exc})")
        if problems:
            raise PolicyLoadError(problems)
        return cls.from_texts(folder, texts)

    @classmethod
    def from_texts(cls, folder: Path, texts: Mapping[str, str]) -> Policy:
        """The policy from the three files' texts, read once (the reloader validates these same texts)."""
        subjects = parse_subjects(texts[SUBJECTS_FILE], folder / SUBJECTS_FILE)
        try:
            enforcer = new_enforcer(texts[MODEL_FILE], texts[POLICY_FILE])
        except Exception as exc:  # Casbin raises bare KeyError, ValueError... on bad input
            raise PolicyLoadError([f"{folder}: Casbin cannot load the model and policy ({exc!r})"]) from exc
        return cls(
            directory=folder,
            content_hash=content_hash(texts),
            model_text=texts[MODEL_FILE],
            policy_text=texts[POLICY_FILE],
            subjects=subjects,
            role_defaults=read_role_defaults(enforcer, subjects),
        )

    def default_right(self, role: Role, subject: str) -> Right:
        return self.role_defaults.get(role, {}).get(subject, Right.NONE)

    def managing_roles(self) -> list[Role]:
        """Roles that may manage their organization (write on `relations`) by default."""
        return [role for role in Role if self.default_right(role, "relations") is Right.WRITE]


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
