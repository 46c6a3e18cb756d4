"""Shared by the policy tests: copies of the shipped policy folder, edited like an engineer would."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from authz.engine.policy import default_policy_dir

SHIPPED = default_policy_dir()
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "broken"
POLICY_FILES = ("model.conf", "policy.csv", "subjects.csv")
RETIRED = "retired.csv"  # optional
ROLES = "roles.csv"  # optional
DIRIGEANT_MANAGES = "g, dirigeant, relations, write\n"


def copy_policy(target: Path, source: Path = SHIPPED) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for name in POLICY_FILES:
        shutil.copyfile(source / name, target / name)
    for optional in (RETIRED, ROLES):
        if (source / optional).exists():
            shutil.copyfile(source / optional, target / optional)
        else:
            (target / optional).unlink(missing_ok=True)
    return target


def write_atomically(path: Path, text: str) -> None:
    """As editors and deploy tools do: a reader never sees half a file."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def edit(folder: Path, name: str, old: str, new: str) -> None:
    text = (folder / name).read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} not found once in {name}"
    write_atomically(folder / name, text.replace(old, new))


def broken_cases() -> list[Path]:
    return sorted(p for p in FIXTURES.iterdir() if p.is_dir())


def expected(case: Path) -> tuple[str, int | None, str]:
    """expected.txt holds `file[:line]: message fragment`."""
    where, fragment = (case / "expected.txt").read_text(encoding="utf-8").strip().split(": ", 1)
    name, _, line = where.partition(":")
    return name, int(line) if line else None, fragment
