"""`authz loadtest`'s id sample from an import file: who is asked about, who writes, to whom."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

from authz.loadtest.ids import IdSample, sample_from_file


def _relation(rid: str, contact: str, organization: str, role: str, start: date, end: date) -> dict[str, object]:
    return {
        "id": rid, "contact_id": contact, "organization_id": organization, "role": role,
        "start_date": start.isoformat(), "end_date": end.isoformat(),
        "subjects": [{"subject": "profil", "right": "read"}],
    }  # fmt: skip


def test_the_sample_keeps_relations_in_force_and_managers_who_may_act(tmp_path: Path) -> None:
    today = date.today()
    long_ago, later, never = today - timedelta(days=900), today + timedelta(days=30), date(9999, 12, 31)
    document = {
        "relations": [
            _relation("R1", "C-DIR", "ORG", "dirigeant", long_ago, never),  # a manager in force
            _relation("R2", "C-NEXT", "ORG", "personne_responsable", later, never),  # a manager from next month
            _relation("R3", "C-GONE", "ORG", "membre_du_personnel", long_ago, today - timedelta(days=1)),  # ended
            _relation("R4", "C-STAFF", "ORG", "membre_du_personnel", long_ago, never),
        ],
        "delegations": [
            {
                "id": "D1",
                "contact_id": "C-STAFF",
                "via_organization_id": "ORG",
                "target_organization_id": "EMP",
                "start_date": long_ago.isoformat(),
                "end_date": never.isoformat(),
                "subjects": [{"subject": "rapport_mensuel", "right": "write"}],
            },
        ],
    }
    path = tmp_path / "import.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    sample = sample_from_file(path, 100)
    # Asked about: every pair not ended, delegations and future relations included.
    assert sorted(sample.pairs) == [("C-DIR", "ORG"), ("C-NEXT", "ORG"), ("C-STAFF", "EMP"), ("C-STAFF", "ORG")]
    # Writing: managers in force today; granting to: contacts of the organization, not delegates.
    assert sample.managers == [("C-DIR", "ORG")]
    assert sorted(sample.members) == [("C-DIR", "ORG"), ("C-STAFF", "ORG")]
    assert sample.subjects == ["profil", "rapport_mensuel"]
    assert IdSample.from_dict(json.loads(json.dumps(sample.as_dict()))) == sample


def test_the_sample_is_bounded_whatever_the_file(tmp_path: Path) -> None:
    never = date(9999, 12, 31)
    rows = [
        _relation(f"R{n}", f"C{n}", f"O{n % 7}", "membre_du_personnel", date(2020, 1, 1), never) for n in range(500)
    ]
    path = tmp_path / "import.json"
    path.write_text(json.dumps({"relations": rows}), encoding="utf-8")
    sample = sample_from_file(path, 40, seed=3)
    assert len(sample.pairs) == 40 and len(set(sample.pairs)) == 40
    assert sample.pairs != sample_from_file(path, 40, seed=4).pairs  # a sample, not the file's first rows
