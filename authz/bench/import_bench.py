"""`authz bench --import`: the time and peak memory of `authz import` at a given size.

For each size: write an import file of that many relations, streamed to disk (the shape of
authz.bench.data: associations and employers, contacts holding 1 to 3 relations, employers
authorizing their association, delegations to association staff, some legacy accounts),
then run `authz import` on it into a new SQLite database in a child process, and read the
child's wall time, CPU time and peak resident memory (its own rusage, from wait4).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import IO, Any

from authz.bench.data import SUBJECTS
from authz.domain.model import Role
from authz.domain.secrets import make_django_pbkdf2

__all__ = ["IMPORT_AIMS", "ImportFigures", "run_import_bench", "write_import_file"]

Printer = Callable[[str], None]

# The import's aims on the 2-core machine: (seconds, MiB of peak resident memory) by size.
IMPORT_AIMS = {200_000: (8.0, 350.0), 1_000_000: (30.0, 500.0)}
_SHARED = tuple(s for s in SUBJECTS if s != "relations")  # never given between organizations
_ROLES = [role.value for role in Role]
_RIGHT_RANK = ["read", "write"]  # a right includes those before it
_ROLE_WEIGHTS = [15, 15, 50, 10, 10]  # dirigeant, representant, membre_du_personnel, personne_responsable, individu
_SECTIONS = ("organizations", "contacts", "relations", "organization_relations", "delegations", "legacy_accounts")


@dataclass
class ImportFigures:
    relations: int
    file_mib: float
    seconds: float
    cpu_seconds: float
    peak_mib: float
    accepted: int
    refused: int

    def meets(self, aim: tuple[float, float]) -> bool:
        return self.seconds < aim[0] and self.peak_mib < aim[1]


def _window(rng: random.Random, today: date) -> tuple[str, str]:
    draw = rng.random()
    if draw < 0.8:
        return (today - timedelta(days=rng.randint(1, 3650))).isoformat(), "9999-12-31"
    if draw < 0.9:  # already over: the import carries history
        end = today - timedelta(days=rng.randint(1, 700))
        return (end - timedelta(days=rng.randint(0, 1500))).isoformat(), end.isoformat()
    return (today + timedelta(days=rng.randint(1, 400))).isoformat(), "9999-12-31"


def _subjects(rng: random.Random, low: int, high: int, catalogue: Sequence[str]) -> list[dict[str, str]]:
    return [
        {"subject": s, "right": rng.choice(("read", "write"))} for s in rng.sample(catalogue, rng.randint(low, high))
    ]


def _rows(relations: int, seed: int, today: date) -> Iterator[tuple[str, dict[str, Any]]]:
    """(section, row) in any section order; about `relations` relations of the three kinds."""
    rng = random.Random(seed)
    org_count = max(4, relations // 20)
    associations = max(1, org_count // 10)
    for i in range(org_count):
        kind = "association" if i < associations else rng.choice(("employer", "employer", "employer", "establishment"))
        yield "organizations", {"id": f"O{i}", "name": f"Organisation {i}", "kind": kind}
    # association -> employer -> what its authorizations in force today give it there (subject -> right)
    authorized: dict[int, dict[int, dict[str, str]]] = {}
    for i in range(max(1, relations // 20)):
        grantor, grantee = rng.randrange(associations, org_count), rng.randrange(associations)
        start, end = _window(rng, today)
        subjects = _subjects(rng, 1, 4, _SHARED)
        if start <= today.isoformat() < end:
            held = authorized.setdefault(grantee, {}).setdefault(grantor, {})
            for item in subjects:
                held[item["subject"]] = max(held.get(item["subject"], "read"), item["right"], key=_RIGHT_RANK.index)
        yield (
            "organization_relations",
            {
                "id": f"A{i}",
                "grantor_id": f"O{grantor}",
                "grantee_id": f"O{grantee}",
                "role": "representant",
                "start_date": start,
                "end_date": end,
                "subjects": subjects,
            },
        )
    staff: dict[int, list[int]] = {}  # association -> contact numbers with a relation there
    target = max(1, relations - relations // 20 - relations // 10)
    count = contact = 0
    while count < target:
        yield (
            "contacts",
            {
                "id": f"C{contact}",
                "first_name": "Prénom",
                "last_name": f"Nom {contact}",
                "email": f"c{contact}@example.org",
                "language": rng.choice(("fr", "fr", "en")),
            },
        )
        places: set[int] = set()
        while len(places) < min(rng.choice((1, 1, 2, 2, 3)), target - count):
            places.add(rng.randrange(associations) if rng.random() < 0.3 else rng.randrange(associations, org_count))
        for place in sorted(places):
            start, end = _window(rng, today)
            yield (
                "relations",
                {
                    "id": f"R{count}",
                    "contact_id": f"C{contact}",
                    "organization_id": f"O{place}",
                    "role": rng.choices(_ROLES, _ROLE_WEIGHTS)[0],
                    "start_date": start,
                    "end_date": end,
                    "subjects": _subjects(rng, 0, 3, SUBJECTS),
                },
            )
            if place in authorized:
                staff.setdefault(place, []).append(contact)
            count += 1
        contact += 1
    # Delegations keep the rules of every write, as a real migration's would after its clean-up:
    # within what the association holds on the employer, and one per staff member, association
    # and employer. (Ended and future ones are drawn the same way.)
    vias = sorted(staff)
    delegated: set[tuple[int, int, int]] = set()
    for i in range(relations // 10 if vias else 0):
        via = rng.choice(vias)
        employer = rng.choice(sorted(authorized[via]))
        member = rng.choice(staff[via])
        if (member, via, employer) in delegated:
            continue  # a repeat is a refusal, not a relation
        delegated.add((member, via, employer))
        held = authorized[via][employer]
        start, end = _window(rng, today)
        yield (
            "delegations",
            {
                "id": f"D{i}",
                "contact_id": f"C{member}",
                "via_organization_id": f"O{via}",
                "target_organization_id": f"O{employer}",
                "role": "membre_du_personnel",
                "start_date": start,
                "end_date": end,
                "subjects": [
                    {"subject": subject, "right": rng.choice(_RIGHT_RANK[: _RIGHT_RANK.index(held[subject]) + 1])}
                    for subject in rng.sample(sorted(held), rng.randint(1, len(held)))
                ],
            },
        )
    password_hash = make_django_pbkdf2("bench", "salt", iterations=1_000)  # the cost is the login's, not the import's
    for i in range(relations // 100):
        linked = sorted({f"C{rng.randrange(contact)}" for _ in range(rng.randint(1, 2))})
        yield "legacy_accounts", {"username": f"legacy-{i}", "contact_ids": linked, "password_hash": password_hash}


def write_import_file(path: Path, relations: int, *, seed: int = 1, today: date | None = None) -> None:
    """An import file of about `relations` relations, written a row at a time (sections in the order of docs/IMPORT.md)."""
    today = today or date.today()
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="authz-import-", dir=path.parent)))
        parts: dict[str, IO[str]] = {
            name: stack.enter_context((folder / name).open("w+", encoding="utf-8")) for name in _SECTIONS
        }
        for section, row in _rows(relations, seed, today):
            part = parts[section]
            if part.tell():
                part.write(",\n")
            part.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
        with path.open("w", encoding="utf-8") as out:
            out.write("{")
            for number, name in enumerate(_SECTIONS):
                out.write(f'{"," if number else ""}\n"{name}": [\n')
                parts[name].seek(0)
                shutil.copyfileobj(parts[name], out)
                out.write("\n]")
            out.write("\n}\n")


def _measure(file: Path, database: Path, report: Path) -> tuple[float, float, float, dict[str, Any]]:
    """Run `authz import` in a child: (wall seconds, CPU seconds, peak RSS MiB, its report)."""
    command = [sys.executable, "-m", "authz.cli", "import", str(file), "--database-url", f"sqlite:///{database}"]
    started = time.perf_counter()
    child = subprocess.Popen([*command, "--report", str(report)], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, not all children's
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"authz import exited with {child.returncode}")
    peak_mib = usage.ru_maxrss / 1024  # KiB on Linux
    return seconds, usage.ru_utime + usage.ru_stime, peak_mib, json.loads(report.read_text(encoding="utf-8"))


def run_import_bench(
    sizes: Sequence[int], *, workdir: Path | None = None, seed: int = 1, say: Printer = print
) -> list[ImportFigures]:
    folder = workdir or Path(tempfile.mkdtemp(prefix="authz-bench-import-"))
    folder.mkdir(parents=True, exist_ok=True)
    figures: list[ImportFigures] = []
    try:
        for size in sorted(sizes):
            file = folder / f"import-{size}.json"
            started = time.perf_counter()
            write_import_file(file, size, seed=seed)
            written = time.perf_counter() - started
            # The file's pages on their way to disk are the generator's cost, not the import's.
            os.sync()
            database = folder / f"import-{size}.db"
            for stale in folder.glob(f"import-{size}.db*"):
                stale.unlink()
            seconds, cpu, peak, report = _measure(file, database, folder / f"import-{size}.report.json")
            accepted = sum(report["accepted"].values())
            result = ImportFigures(
                size, file.stat().st_size / 2**20, seconds, cpu, peak, accepted, len(report["refused"])
            )
            figures.append(result)
            aim = IMPORT_AIMS.get(size)
            verdict = (
                ""
                if aim is None
                else (" — meets" if result.meets(aim) else " — MISSES")
                + (f" the aim (< {aim[0]:.0f} s, < {aim[1]:.0f} MiB)")
            )
            say(
                f"[{size:>9,}] file {result.file_mib:,.0f} MiB (written in {written:.1f}s); "
                f"import {seconds:.1f}s wall, {cpu:.1f}s CPU, peak {peak:,.0f} MiB; "
                f"{accepted:,} rows in, {result.refused} refused{verdict}"
            )
            if workdir is None:
                file.unlink()
    finally:
        if workdir is None:
            shutil.rmtree(folder, ignore_errors=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    say(f"(load average {load:.1f} on {os.cpu_count()} CPUs: wall times grow with it, CPU times much less)")
    return figures
