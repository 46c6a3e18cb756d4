"""`authz policy test`: the shipped YAML suite passes with full coverage, through the server's
engine; a wrong expectation fails with the engine's explanation; Casbin agrees case by case."""

from __future__ import annotations

from pathlib import Path

import pytest

from authz.cli import main
from authz.engine.oracle import build_enforcer
from authz.engine.policy import Policy
from authz.policytools.testing import load_cases
from tests.policies.helpers import DIRIGEANT_MANAGES, SHIPPED, copy_policy, edit

SUITE = sorted((SHIPPED / "tests").glob("*.yaml"))


def test_the_shipped_suite_passes_with_every_role_default_covered(capsys: pytest.CaptureFixture[str]) -> None:
    assert len(SUITE) >= 4
    assert main(["policy", "test", "--min-coverage", "100"]) == 0
    out = capsys.readouterr().out
    assert f"{len(SUITE)} file(s)" in out and " 0 failed" in out
    assert "coverage: 70/70 role × subject × right defaults exercised (100%)" in out


def test_the_coverage_table_shows_each_default_and_what_exercised_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "test", "--coverage", str(SHIPPED / "tests" / "worked_example.yaml")]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = next(line for line in lines if line.split()[:2] == ["dirigeant", "relations"])
    # The worked example asks the dirigeants for write only: read is not exercised.
    assert row.split()[2:] == ["write", "·", "✓"]
    # The worked example never asks what a representant reads of the payments by default.
    row = next(line for line in lines if line.split()[:2] == ["representant", "paiements_et_releves"])
    assert row.split()[2:] == ["-", "·", "·"]
    assert any(line.startswith("coverage: ") and "(100%)" not in line for line in lines)


def test_every_shipped_case_is_what_plain_casbin_decides_too() -> None:
    """The suite runs through the fast engine; the model read by pycasbin must agree."""
    policy = Policy.load()
    checked = 0
    for path in SUITE:
        relations, cases = load_cases(path, policy)
        by_instant: dict[float, object] = {}
        for case in cases:
            enforcer = by_instant.get(case.at.timestamp())
            if enforcer is None:
                enforcer = by_instant[case.at.timestamp()] = build_enforcer(policy, relations, case.at)
            allowed = enforcer.enforce(case.contact, case.organization, case.subject, case.right.code)  # type: ignore[attr-defined]
            assert allowed == case.expect_allowed, f"{case.file}:{case.line} {case.describe()}"
            checked += 1
    assert checked > 100


WRONG = """\
at: 2024-06-01
data:
  relations:
    - {id: R-PR, contact: C-PR, organization: ORG-SQC, role: personne_responsable}
allow:
  - {contact: C-PR, organization: ORG-SQC, subject: relations, right: write}
  - {contact: C-PR, organization: ORG-SQC, subject: profil, right: write, why: "deliberately wrong"}
explain:
  - {contact: C-PR, organization: ORG-SQC, subject: profil, right: read, allowed: true,
     reason: "granted on relation"}
"""


def test_a_wrong_expectation_fails_with_the_decision_explained(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "wrong.yaml"
    path.write_text(WRONG, encoding="utf-8")
    assert main(["policy", "test", str(path)]) == 1
    out = capsys.readouterr().out
    assert (
        f"FAIL {path}:7 allow: C-PR write profil of ORG-SQC at 2024-06-01T12:00-04:00 [deliberately wrong]\n"
        "     expected allowed, got denied — the engine's explanation: no relation in force grants profil write; "
        "path: relation R-PR: C-PR personne_responsable of ORG-SQC (2000-01-01..9999-12-31)"
    ) in out
    assert (
        f"FAIL {path}:9 explain: C-PR read profil of ORG-SQC at 2024-06-01T12:00-04:00\n"
        "     reason 'role personne_responsable holds profil read by default' does not contain 'granted on relation'"
    ) in out
    assert "1 file(s), 3 check(s): 1 passed, 2 failed" in out
    assert "coverage: 1/70" in out  # only the passing check counts


def test_the_suite_catches_an_edit_that_breaks_a_rule_of_the_domain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = copy_policy(tmp_path / "policy")
    edit(folder, "policy.csv", DIRIGEANT_MANAGES, "")
    files = [str(p) for p in SUITE]
    assert main(["policy", "test", "--policy-dir", str(folder), *files]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "C-DIR write relations of ORG-SQC" in out
    assert "[rule 2: a dirigeant writes every subject of its organization, relations included]" in out


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "allow:\n  - {contact: C-1, organization: O, subject: profil, rigth: read}\n",
            ":2: unknown key(s) 'rigth' in a check of allow",
        ),
        (
            "allow:\n  - {contact: C-1, organization: O, subject: profile, right: read}\n",
            ":2: unknown subject 'profile'",
        ),
        (
            "data:\n  relations:\n    - {id: R, contact: C, organization: O, role: chef}\nallow: []\n",
            ":3: unknown role 'chef'",
        ),
        (
            "data:\n  relations:\n    - {id: R, contact: C, organization: O, role: dirigeant,\n"
            "       start: 2024-02-01, end: 2024-01-01}\n",
            ":3: end 2024-01-01 is before start 2024-02-01",
        ),
        ("at: 2024-06-01\n", ": no allow, deny or explain case"),
        ("allow: [\n", ": not valid YAML"),
    ],
)
def test_a_malformed_test_file_is_reported_with_file_and_line(
    text: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    assert main(["policy", "test", str(path)]) == 2
    assert f"error: {path}{message}" in capsys.readouterr().err


def test_an_invalid_policy_is_not_tested(capsys: pytest.CaptureFixture[str]) -> None:
    broken = Path(__file__).resolve().parent / "fixtures" / "broken" / "unknown_role"
    assert main(["policy", "test", "--policy-dir", str(broken), str(SUITE[0])]) == 2
    assert "unknown role 'directeur'" in capsys.readouterr().err


def test_the_example_of_the_policies_readme_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readme = (SHIPPED / "README.md").read_text(encoding="utf-8")
    example = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "readme.yaml"
    path.write_text(example, encoding="utf-8")
    assert main(["policy", "test", str(path)]) == 0, capsys.readouterr().out


def _run(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    path = tmp_path / "case.yaml"
    path.write_text(text, encoding="utf-8")
    code = main(["policy", "test", *extra, str(path)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


DATA = (
    "at: 2024-06-01\n"
    "data:\n"
    "  relations:\n"
    "    - {id: R-PR, contact: C-PR, organization: ORG-SQC, role: personne_responsable}\n"
    "    - {id: R-REP, contact: C-REP, organization: ORG-SQC, role: representant,\n"
    "       subjects: {scrutin_syndical: write}}\n"
)


def test_every_subject_except_covers_subjects_added_later(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = DATA + 'deny:\n  - {contact: C-PR, organization: ORG-SQC, subject: "*", except: [relations], right: write}\n'
    code, out, _ = _run(tmp_path, case, capsys)
    assert code == 0 and "6 check(s): 6 passed" in out
    # A subject added later is covered without touching the case: here a dirigeant default would fail it.
    folder = copy_policy(tmp_path / "policy")
    edit(
        folder, "subjects.csv", "relations,", "attestations_fiscales,Attestations fiscales,Tax certificates\nrelations,"
    )
    edit(
        folder,
        "policy.csv",
        "g2, write, read\n",
        "g2, write, read\ng, personne_responsable, attestations_fiscales, write\n",
    )
    code, out, _ = _run(tmp_path, case, capsys, "--policy-dir", str(folder))
    assert code == 1 and "7 check(s): 6 passed, 1 failed" in out
    assert "C-PR write attestations_fiscales of ORG-SQC" in out
    code, _, err = _run(
        tmp_path,
        DATA + "deny:\n  - {contact: C-PR, organization: ORG-SQC, subject: profil, except: [relations], right: read}\n",
        capsys,
    )
    assert code == 2 and 'except goes with subject: "*"' in err


@pytest.mark.parametrize(
    ("check", "message"),
    [
        ("{contact: C-PRR, organization: ORG-SQC, subject: profil, right: write}", "contact 'C-PRR' appears nowhere"),
        (
            "{contact: [C-PR, C-X], organization: ORG-SQC, subject: profil, right: write}",
            "contact 'C-X' appears nowhere",
        ),
        (
            "{contact: C-PR, organization: ORG-SCQ, subject: profil, right: write}",
            "organization 'ORG-SCQ' appears nowhere",
        ),
    ],
)
def test_a_case_about_someone_absent_from_the_data_is_an_error(
    check: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(tmp_path, DATA + f"deny:\n  - {check}\n", capsys)
    assert code == 2 and f"case.yaml:8: {message} in the data" in err


def test_a_retired_subject_is_denied_even_when_granted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = copy_policy(tmp_path / "policy")
    edit(folder, "subjects.csv", "scrutin_syndical,Scrutin syndical,Union vote\n", "")
    edit(folder, "policy.csv", "g, dirigeant, scrutin_syndical, write\n", "")
    edit(folder, "policy.csv", "g, personne_responsable, scrutin_syndical, read\n", "")
    (folder / "retired.csv").write_text(
        "code,label_fr,label_en,retired_on\nscrutin_syndical,Scrutin syndical,Union vote,2025-01-31\n",
        encoding="utf-8",
    )
    case = DATA + (
        "deny:\n  - {contact: C-REP, organization: ORG-SQC, subject: scrutin_syndical, right: [read, write]}\n"
        "explain:\n  - {contact: C-REP, organization: ORG-SQC, subject: scrutin_syndical, right: read,\n"
        "     allowed: false, reason: \"subject 'scrutin_syndical' is retired\"}\n"
    )
    code, out, _ = _run(tmp_path, case, capsys, "--policy-dir", str(folder))
    assert code == 0 and "3 check(s): 3 passed" in out, out
    # Under the shipped policy the grant on R-REP still counts: the same cases fail.
    code, out, _ = _run(tmp_path, case, capsys)
    assert code == 1 and "3 failed" in out
