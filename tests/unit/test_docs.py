"""The project's own documents say what the code does, and nothing cites a document outside the repository."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from authz.commands import import_data
from authz.engine.policy import Policy
from authz.store import migrate
from authz.store.sql import SqlStore, make_engine

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
# Documents that existed only outside the repository: the code must say the rule itself,
# or point at docs/ (DOMAIN.md, IMPORT.md, REPLICAS.md).
OUTSIDE = re.compile(r"\bAPI\.md\b|\bSTYLE\.md\b|\bPYCASBIN\.md\b|shared/spec|\bseeds/")
OURS = re.compile(r"(\S*?)\b(DOMAIN|IMPORT|REPLICAS)\.md\b")


def _json_blocks(text: str) -> list[str]:
    return re.findall(r"```json\n(.*?)```", text, flags=re.DOTALL)


def _tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, check=True, capture_output=True, text=True).stdout.split()
    found = []
    for name in names:
        path = ROOT / name
        if path.suffix in {".py", ".pyi", ".md", ".proto", ".yaml", ".yml", ".toml", ".cfg", ".txt"} or name in {
            "Makefile"
        }:
            found.append(path)
    return found


def test_nothing_cites_a_document_outside_the_repository() -> None:
    this = Path(__file__).resolve()
    cited = []
    for path in _tracked_text_files():
        if path.resolve() == this or not path.exists():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if OUTSIDE.search(line):
                cited.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
            for prefix, _name in OURS.findall(line):
                # From inside docs/ a bare name is a neighbour; from anywhere else it must say docs/.
                if not prefix.endswith("docs/") and path.parent != DOCS:
                    cited.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not cited, "documents outside the repository (or without their docs/ path):\n" + "\n".join(cited)


def test_the_documents_the_code_points_at_exist() -> None:
    for name in ("DOMAIN.md", "IMPORT.md", "REPLICAS.md"):
        assert (DOCS / name).is_file(), name


def test_the_import_format_documents_every_section_in_the_order_read() -> None:
    text = (DOCS / "IMPORT.md").read_text(encoding="utf-8")
    documented = re.findall(r"^### `(\w+)`", text, flags=re.MULTILINE)
    assert tuple(documented) == import_data._SECTIONS


def test_the_import_format_example_is_taken_whole_then_skipped_whole(tmp_path: Path) -> None:
    example, report_example = _json_blocks((DOCS / "IMPORT.md").read_text(encoding="utf-8"))
    source = tmp_path / "data.json"
    source.write_text(example, encoding="utf-8")
    engine = make_engine(f"sqlite:///{tmp_path / 'authz.db'}")
    migrate.upgrade(engine)
    store = SqlStore(engine)
    try:
        catalogue = Policy.load().subjects
        first = import_data.import_file(store, source, catalogue)
        assert first.refused == []
        assert first.accepted == {name: len(rows) for name, rows in json.loads(example).items()}
        second = import_data.import_file(store, source, catalogue)
        assert second.refused == [] and not any(second.accepted.values())
        assert second.skipped == first.accepted
    finally:
        store.close()
    # The report shown has the report's shape.
    shown = json.loads(report_example)
    assert set(shown) == set(first.as_dict())
    probe = import_data.ImportReport()
    probe.refuse("relations", 7, {"id": "R-8"}, "a reason")
    assert set(shown["refused"][0]) == set(probe.refused[0])
