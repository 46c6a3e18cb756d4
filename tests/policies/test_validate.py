"""`authz policy validate`: the shipped folder passes; every broken fixture is rejected with
file, line and the expected message, and hot reload refuses it too."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from authz.cli import main
from authz.domain.model import Role
from authz.engine.index import DecisionEngine
from authz.engine.policy import Policy
from authz.policytools.validate import validate
from authz.server.reload import PolicyWatcher
from tests.policies.helpers import SHIPPED, broken_cases, copy_policy, edit, expected

CASES = broken_cases()


def test_the_shipped_policy_is_valid_and_loads_as_the_server_loads_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "validate", "--policy-dir", str(SHIPPED)]) == 0
    out = capsys.readouterr().out
    assert "valid (policy hash" in out and "0 error(s), 0 warning(s)" in out
    assert "managed by: dirigeant, personne_responsable" in out
    report = validate(SHIPPED)
    loaded = Policy.load(SHIPPED)
    assert report.policy is not None
    assert report.policy.content_hash == loaded.content_hash == report.content_hash
    assert report.policy.role_defaults == loaded.role_defaults


def test_there_is_a_fixture_for_each_kind_of_mistake() -> None:
    assert len(CASES) >= 20
    for case in CASES:
        assert (case / "expected.txt").is_file(), case


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_validate_rejects_each_broken_fixture_with_file_and_line(
    case: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name, line, fragment = expected(case)
    assert main(["policy", "validate", "--policy-dir", str(case)]) == 1
    out = capsys.readouterr().out.splitlines()
    prefix = f"{case / name}:{line}: error: " if line is not None else f"{case / name}: error: "
    matching = [text for text in out if text.startswith(prefix) and fragment in text]
    assert matching, f"no line starting {prefix!r} with {fragment!r} in:\n" + "\n".join(out)
    assert "INVALID" in out[-1]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hot_reload_refuses_each_broken_fixture(case: Path, tmp_path: Path) -> None:
    folder = copy_policy(tmp_path / "policy")
    serving = Policy.load(folder)
    engine = DecisionEngine(serving)
    states: list[bool] = []
    watcher = PolicyWatcher(folder, engine, on_state=states.append)
    for name in ("model.conf", "policy.csv", "subjects.csv", "retired.csv", "roles.csv"):
        (folder / name).unlink(missing_ok=True)
        if (case / name).exists():
            shutil.copyfile(case / name, folder / name)
    assert watcher.poll() is False
    assert engine.policy is serving
    assert states == [False]
    assert watcher.status.pending_hash is not None and watcher.status.refusals == 1
    assert any(expected(case)[2] in str(problem) for problem in watcher.status.problems)
    # Polling again reports nothing new; undoing the edit makes the folder healthy again.
    assert watcher.poll() is False and watcher.status.refusals == 1
    copy_policy(folder)
    assert watcher.poll() is False
    assert states == [False, True] and watcher.status.valid_on_disk and engine.policy is serving


def test_a_subject_no_role_holds_is_a_warning_and_fails_only_strict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = copy_policy(tmp_path / "policy")
    edit(
        folder, "subjects.csv", "relations,", "attestations_fiscales,Attestations fiscales,Tax certificates\nrelations,"
    )
    assert main(["policy", "validate", "--policy-dir", str(folder)]) == 0
    out = capsys.readouterr().out
    assert f"{folder / 'subjects.csv'}: warning: no role holds 'attestations_fiscales' by default" in out
    assert "0 error(s), 1 warning(s)" in out
    assert main(["policy", "validate", "--strict", "--policy-dir", str(folder)]) == 1


def test_redundant_and_repeated_lines_are_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = copy_policy(tmp_path / "policy")
    edit(
        folder,
        "policy.csv",
        "g2, write, read\n",
        "g2, write, read\ng, dirigeant, profil, read\ng, dirigeant, profil, write\n",
    )
    assert main(["policy", "validate", "--policy-dir", str(folder)]) == 0
    out = capsys.readouterr().out
    assert f"{folder / 'policy.csv'}:34: warning: dirigeant already holds profil write on line 19" in out
    assert f"{folder / 'policy.csv'}:35: warning: repeats line 19" in out


def test_json_output_lists_every_problem(capsys: pytest.CaptureFixture[str]) -> None:
    case = next(c for c in CASES if c.name == "unknown_role")
    assert main(["policy", "validate", "--json", "--policy-dir", str(case)]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["ok"] is False
    assert document["problems"] == [
        {
            "file": str(case / "policy.csv"),
            "line": 19,
            "severity": "error",
            "message": "unknown role 'directeur' (the roles are dirigeant, representant, membre_du_personnel, "
            "personne_responsable, individu_autorise)",
        }
    ]


def test_validate_and_test_check_the_folder_the_server_serves(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = next(c for c in CASES if c.name == "unknown_role")
    monkeypatch.setenv("AUTHZ_POLICY_DIR", str(broken))
    assert main(["policy", "validate"]) == 1
    out = capsys.readouterr().out
    assert f"{broken / 'policy.csv'}:19: error: unknown role 'directeur'" in out
    assert f"{broken} (AUTHZ_POLICY_DIR): INVALID" in out
    assert main(["policy", "test"]) == 2
    captured = capsys.readouterr()
    assert f"policy folder: {broken} (AUTHZ_POLICY_DIR)" in captured.out
    assert "unknown role 'directeur'" in captured.err
    # --policy-dir, the same option for both, wins over the setting.
    assert main(["policy", "validate", "--policy-dir", str(SHIPPED)]) == 0
    assert main(["policy", "test", "--policy-dir", str(SHIPPED)]) == 0
    assert f"policy folder: {SHIPPED} (--policy-dir)" in capsys.readouterr().out


def test_strict_failure_does_not_say_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = copy_policy(tmp_path / "policy")
    edit(folder, "policy.csv", "g2, write, read\n", "g2, write, read\ng, dirigeant, profil, write\n")
    assert main(["policy", "validate", "--strict", "--policy-dir", str(folder)]) == 1
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == f"{folder} (--policy-dir): INVALID under --strict: 1 warning(s) count as errors"
    assert main(["policy", "validate", "--strict", "--json", "--policy-dir", str(folder)]) == 1
    assert json.loads(capsys.readouterr().out)["ok"] is False


def test_validate_against_a_database_refuses_removing_a_granted_subject_but_not_retiring_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from authz.cli import DEMO_FILE
    from authz.commands.import_data import import_file
    from authz.config import Settings
    from authz.server.app import open_store

    url = f"sqlite:///{tmp_path / 'prod.db'}"
    store = open_store(Settings(database_url=url))
    try:
        assert not import_file(store, DEMO_FILE, Policy.load().subjects).refused
    finally:
        store.close()
    folder = copy_policy(tmp_path / "policy")
    edit(folder, "subjects.csv", "scrutin_syndical,Scrutin syndical,Union vote\n", "")
    edit(folder, "policy.csv", "g, dirigeant, scrutin_syndical, write\n", "")
    edit(folder, "policy.csv", "g, personne_responsable, scrutin_syndical, read\n", "")
    # Without the database the folder is fine; with it, the grant on R-REP holds the subject.
    assert main(["policy", "validate", "--policy-dir", str(folder)]) == 0
    assert main(["policy", "validate", "--policy-dir", str(folder), "--database", url]) == 1
    out = capsys.readouterr().out
    assert (
        f"{folder / 'subjects.csv'}: error: subject 'scrutin_syndical' is removed, but 1 grant(s) in force "
        "in the store still hold it" in out
    )
    (folder / "retired.csv").write_text(
        "code,label_fr,label_en,retired_on\nscrutin_syndical,Scrutin syndical,Union vote,2025-01-31\n",
        encoding="utf-8",
    )
    assert main(["policy", "validate", "--policy-dir", str(folder), "--database", url]) == 0
    out = capsys.readouterr().out
    assert "6 subjects, 1 retired" in out and f"checked against the grants of {url}" in out
    assert main(["policy", "validate", "--policy-dir", str(folder), "--database", "sqlite:////nonexistent/x.db"]) == 2
    assert "cannot read the grants of" in capsys.readouterr().err


def test_a_model_error_met_only_while_deciding_is_a_file_error(tmp_path: Path) -> None:
    """The matcher's names are checked statically; what only evaluation finds (a matcher
    giving a text rather than True or False) is reported in model.conf's terms too."""
    case = next(c for c in CASES if c.name == "model_not_boolean")
    report = validate(case)
    assert [str(p) for p in report.errors] == [
        f"{case / 'model.conf'}:45: error: the matcher must give True or False "
        "(a comparison such as p.sub == r.sub), not a value"
    ]


def test_the_server_does_not_import_the_policy_tools() -> None:
    """load_checked and the validator live in authz.engine: no cycle between server and policytools."""
    import subprocess
    import sys

    code = "import sys, authz.server.app; print(sorted(m for m in sys.modules if m.startswith('authz.policytools')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "[]"


def test_role_labels_come_from_roles_csv_and_a_missing_line_is_a_warning(tmp_path: Path) -> None:
    shipped = Policy.load(SHIPPED)
    assert shipped.role_label(Role.INDIVIDU_AUTORISE).label_en == "Authorized individual"
    folder = copy_policy(tmp_path / "policy")
    roles = folder / "roles.csv"
    roles.write_text(
        "".join(line for line in roles.read_text(encoding="utf-8").splitlines(keepends=True) if "dirigeant" not in line),
        encoding="utf-8",
    )
    report = validate(folder)
    assert report.ok and report.policy is not None
    assert any("role 'dirigeant' has no line" in p.message for p in report.warnings)
    # The screens then show the role's code.
    assert report.policy.role_label(Role.DIRIGEANT).label_fr == "dirigeant"
def test_validate_and_test_take_the_folder_positionally_or_by_flag(capsys: pytest.CaptureFixture[str]) -> None:
    from authz.engine.policy import default_policy_dir

    folder = str(default_policy_dir())
    assert main(["policy", "validate", folder]) == 0
    assert main(["policy", "validate", "--policy-dir", folder]) == 0
    assert main(["policy", "test", folder]) == 0
    assert main(["policy", "test", "--policy-dir", folder]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["policy", "validate", folder, "--policy-dir", "/elsewhere"])
