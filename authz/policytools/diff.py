"""`authz policy diff OLD NEW`: who would gain or lose what if NEW replaced OLD, on real data.

The relations come from an import-format file or a database; the decisions are those of
`authz.engine.flips`, which the server also runs on its own data at each accepted reload.
Every (contact, organization) pair the data makes relevant (each contact relation and
each delegation) and every organization-to-organization authorization is decided under
both policies, summed up as the highest right held (write, read or nothing), and the
changes are grouped by the contact's role there.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from authz.domain.model import Relation
from authz.engine.flips import Change, DiffReport, Group, decision_flips
from authz.engine.index import DecisionEngine
from authz.engine.policy import Policy

__all__ = ["Change", "DiffReport", "Group", "diff_policies", "load_relations"]


def load_relations(data_file: Path | None, database_url: str | None, catalogue: Iterable[str]) -> list[Relation]:
    """The relations of an import-format JSON file (through the importer, so the same rows
    are refused as `authz import` would), or of a database."""
    from authz.commands.import_data import import_file
    from authz.config import Settings
    from authz.store.sql import open_store

    if database_url is not None:
        store = open_store(Settings(database_url=database_url))
        try:
            return list(store.load_relations())
        finally:
            store.close()
    assert data_file is not None
    with tempfile.TemporaryDirectory(prefix="authz-diff-") as folder:
        store = open_store(Settings(database_url=f"sqlite:///{Path(folder) / 'diff.db'}"))
        try:
            report = import_file(store, data_file, catalogue)
            if report.refused:
                first = report.refused[0]
                raise ValueError(
                    f"{data_file}: {len(report.refused)} row(s) refused, e.g. {first['section']}[{first['index']}]: "
                    f"{first['reason']}"
                )
            return list(store.load_relations())
        finally:
            store.close()


def diff_policies(old: Policy, new: Policy, relations: Iterable[Relation], at: datetime) -> DiffReport:
    """The decisions `new` flips against `old` on these relations (see authz.engine.flips)."""
    engine = DecisionEngine(new)
    engine.load(relations, 0)
    return decision_flips(engine, old, at)
