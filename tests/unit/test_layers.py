"""The house drawn from the imports: authz's packages form no cycle, and only the store speaks SQL.

A node is a package under authz/ (authz.store, authz.engine, ...) or a module at its top
(authz.config, authz.mail, ...). Every import counts, wherever it is written: at the top,
inside a function (imported late to save start-up time), or under `if TYPE_CHECKING:`. A
type-only import is still one package knowing another, and a cycle through it can turn
into a real one the day the annotation is evaluated; so the graph includes them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "authz"
# The database libraries: only the store imports them (the rest goes through its protocols).
DATABASE_LIBRARIES = ("sqlalchemy", "alembic", "psycopg")
STORE = "authz.store"


@dataclass(frozen=True, slots=True)
class Import:
    source: str  # the importing module, dotted
    target: str  # the imported module, dotted (absolute)
    file: Path
    line: int


def module_name(root: Path, file: Path) -> str:
    parts = [root.name, *file.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(root: Path) -> Iterator[Import]:
    """Every module each import statement under `root` names, relative ones made absolute."""
    for file in sorted(root.rglob("*.py")):
        source = module_name(root, file)
        is_package = file.name == "__init__.py"
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), filename=str(file))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(source, alias.name, file, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = source.split(".")
                    base = base[: len(base) - node.level + (1 if is_package else 0)]
                    target = ".".join([*base, node.module] if node.module else base)
                else:
                    target = node.module or ""
                for alias in node.names:
                    # `from authz import store` imports the package authz.store, not authz itself.
                    submodule = f"{target}.{alias.name}"
                    path = root.parent.joinpath(*submodule.split("."))
                    named = submodule if path.is_dir() or path.with_suffix(".py").is_file() else target
                    yield Import(source, named, file, node.lineno)


def package_of(module: str, root_name: str) -> str | None:
    """The node of a dotted module: `authz.store.sql` -> `authz.store`; None outside `root_name`."""
    parts = module.split(".")
    if parts[0] != root_name:
        return None
    return ".".join(parts[:2])


def package_graph(root: Path) -> dict[str, dict[str, Import]]:
    """package -> {imported package: one import that makes the edge}."""
    graph: dict[str, dict[str, Import]] = {}
    for found in imports_of(root):
        source, target = package_of(found.source, root.name), package_of(found.target, root.name)
        if source is None or target is None or source == target:
            continue
        graph.setdefault(source, {}).setdefault(target, found)
        graph.setdefault(target, {})
    return graph


def cycles(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    """The strongly connected components of more than one package (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, {})):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def describe(graph: dict[str, dict[str, Import]], component: list[str]) -> str:
    members = set(component)
    edges = [
        f"  {source} -> {target} ({found.file.relative_to(ROOT.parent)}:{found.line})"
        for source in component
        for target, found in sorted(graph[source].items())
        if target in members
    ]
    return " <-> ".join(component) + "\n" + "\n".join(edges)


def test_packages_of_authz_import_each_other_without_a_cycle() -> None:
    graph = package_graph(ROOT)
    assert {"authz.store", "authz.engine", "authz.domain", "authz.replication", "authz.server"} <= set(graph)
    found = cycles(graph)
    assert not found, "package cycles:\n" + "\n".join(describe(graph, c) for c in found)


def test_the_lower_layers_stay_below() -> None:
    """The domain imports no other part of authz but its errors; the engine and the store, only the
    domain and the plain modules beside it (they meet through `authz.domain.index_rows`)."""
    graph = package_graph(ROOT)
    plain = {"authz.errors", "authz.config", "authz.calls"}
    assert set(graph["authz.domain"]) <= {"authz.errors"}
    assert set(graph["authz.engine"]) <= {"authz.domain", *plain}
    assert set(graph["authz.store"]) <= {"authz.domain", *plain}


def test_only_the_store_imports_the_database_libraries() -> None:
    outside = [
        f"{found.file.relative_to(ROOT.parent)}:{found.line} imports {found.target}"
        for found in imports_of(ROOT)
        if found.target.split(".")[0] in DATABASE_LIBRARIES and package_of(found.source, ROOT.name) != STORE
    ]
    assert not outside, "database libraries outside authz/store/:\n" + "\n".join(outside)


def test_below_the_edge_nothing_knows_grpc() -> None:
    """Commands, rules, engine, store and replication know nothing of the transport: gRPC, the
    generated messages and the server are the edge's (authz.server), converted there once."""
    below = {
        "authz.calls",
        "authz.commands",
        "authz.config",
        "authz.domain",
        "authz.engine",
        "authz.errors",
        "authz.mail",
        "authz.replication",
        "authz.store",
    }
    transport = ("grpc", "grpc_status", "grpc_health", "grpc_reflection", "google.protobuf", "authz.v1", "authz.server")
    found = [
        f"{imported.file.relative_to(ROOT.parent)}:{imported.line} imports {imported.target}"
        for imported in imports_of(ROOT)
        if package_of(imported.source, ROOT.name) in below
        and any(imported.target == name or imported.target.startswith(name + ".") for name in transport)
    ]
    assert not found, "transport below the edge:\n" + "\n".join(found)


# -- the drawing itself, on small made-up trees


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "authz"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_package_graph_finds_a_cycle_through_a_type_only_import(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "store/__init__.py": "",
            "store/sql.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from authz.engine.index import Row\n",
            "engine/__init__.py": "",
            "engine/index.py": "def load():\n    from authz.store import sql\n",
            "domain/__init__.py": "",
            "domain/model.py": "from ..store import sql\n",  # relative: authz.store
        },
    )
    graph = package_graph(root)
    assert graph["authz.domain"]["authz.store"].line == 1
    assert cycles(graph) == [["authz.engine", "authz.store"]]


def test_package_graph_of_layers_has_no_cycle(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "domain/__init__.py": "",
            "store/__init__.py": "import authz.domain\n",
            "engine/__init__.py": "from authz.domain import model\n",
            "server.py": "from authz import store, engine\nfrom authz.engine import x\n",
        },
    )
    graph = package_graph(root)
    assert set(graph["authz.server"]) == {"authz.store", "authz.engine"}
    assert cycles(graph) == []


@pytest.mark.parametrize(("module", "expected"), [("authz.store.sql", "authz.store"), ("authz", "authz"), ("os", None)])
def test_package_of(module: str, expected: str | None) -> None:
    assert package_of(module, "authz") == expected
