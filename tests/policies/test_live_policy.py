"""The policy folder under a running server: hostile model edits, removing and retiring a
subject that the store still grants, and the decisions a reload flips, logged and audited."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from authz_client import AuthzClientError, NewContact, Right, Role, check_request
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import func, select

from authz.engine.policy import PolicyLoadError
from authz.engine.validation import validate
from authz.server.reload import POLICY_HEALTH_NAME
from authz.store import tables
from tests.conftest import Running
from tests.policies.helpers import copy_policy, edit, write_atomically
from tests.policies.test_hot_reload import wait_until

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SQC, XYZ, PR, DIRECTOR, IND = "ORG-SQC", "EMP-XYZ", "C-PR", "C-DIR1", "C-IND"
RAPPORT = "rapport_mensuel"
RAPPORT_LINE = "rapport_mensuel,Rapport mensuel,Monthly report\n"
RETIRED_CSV = "code,label_fr,label_en,retired_on\nrapport_mensuel,Rapport mensuel,Monthly report,2025-01-31\n"


def policy_health(server: Running) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{server.app.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(service=POLICY_HEALTH_NAME), timeout=5).status)


def policy_records(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "authz.policy" and text in r.getMessage()]


def audit_rows(server: Running) -> list[tuple[str, dict[str, object]]]:
    log = tables.audit_log
    with server.store.engine.connect() as connection:
        rows = connection.execute(
            select(log.c.action, log.c.changes).where(log.c.actor_id == "policy-reload").order_by(log.c.id)
        ).all()
    return [(action, changes) for action, changes in rows]


def live_grants(server: Running, subject: str) -> int:
    rs, r = tables.relation_subjects, tables.relations
    with server.store.engine.connect() as connection:
        return int(
            connection.execute(
                select(func.count())
                .select_from(rs.join(r, r.c.id == rs.c.relation_id))
                .where(rs.c.subject == subject, rs.c.removed_at.is_(None), r.c.ended_at.is_(None))
            ).scalar_one()
        )


def test_a_hostile_model_edit_repeated_for_ten_seconds_is_reported_once_per_distinct_edit(
    start_server: Callable[..., Running], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="authz.policy")
    folder = copy_policy(tmp_path / "policy")
    shipped = (folder / "model.conf").read_text(encoding="utf-8")
    misspelled = shipped.replace("&& holds(", "&& hold(")  # the function is holds()
    lowercase = shipped.replace('(p.via == "-" ||', "(p.via == true ||")  # Python spells it True
    assert misspelled != shipped and lowercase != shipped
    server = start_server(policy_dir=folder)
    serving = server.app.policy.content_hash

    # Ten seconds of saves: the same two bad versions, each rewritten every 50 ms, in four phases.
    started = time.monotonic()
    health: list[int] = []
    while (elapsed := time.monotonic() - started) < 10:
        write_atomically(folder / "model.conf", misspelled if int(elapsed / 2.5) % 2 == 0 else lowercase)
        if elapsed > 1:
            health.append(policy_health(server))
        time.sleep(0.05)
    assert health and set(health) == {NOT_SERVING}
    assert server.app.policy.content_hash == serving
    assert server.client.check(DIRECTOR, SQC, "relations", Right.RIGHT_WRITE).allowed

    refused = policy_records(caplog, "refused")
    assert len(refused) == 2, [r.getMessage() for r in refused]  # one per distinct edit, not per poll
    assert not [r for r in caplog.records if r.exc_info], "no traceback in the log"
    text = "\n".join(r.getMessage() for r in refused)
    # The line of the matcher both edits touch, as the file numbers it.
    line = next(n for n, source in enumerate(shipped.splitlines(), 1) if '(p.via == "-" ||' in source)
    assert f"model.conf:{line}: error: the matcher calls hold(), which does not exist (did you mean holds()?)" in text
    assert f"model.conf:{line}: error: unknown name 'true' in the matcher: write True" in text
    assert [action for action, _ in audit_rows(server)] == ["policy_reload_refused"] * 2

    # A valid edit: serving again, at once healthy.
    write_atomically(folder / "model.conf", shipped.replace("# You rarely", "# You seldom"))
    wait_until(lambda: server.app.policy.content_hash != serving)
    assert policy_health(server) == SERVING


def test_removing_a_granted_subject_is_refused_and_retiring_it_denies_and_hides_it(
    start_server: Callable[..., Running], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="authz.policy")
    folder = copy_policy(tmp_path / "policy")
    server = start_server(policy_dir=folder)
    client = server.client
    original = server.app.policy.content_hash
    granted = live_grants(server, RAPPORT)
    # on R-REP-LOC, R-LOC-MEM, OR-ABC-SQC and OR-XYZ-SQC (organization to organization), D-IND-XYZ
    assert granted == 5
    assert client.check(IND, XYZ, RAPPORT, Right.RIGHT_WRITE).allowed  # delegated through ORG-SQC
    assert client.check(DIRECTOR, SQC, RAPPORT, Right.RIGHT_WRITE).allowed  # dirigeant's default
    assert any(row.subject == RAPPORT for row in client.iter_authorizations(PR, SQC))

    # 1. Removed outright: refused, naming the grants that hold it; the old policy keeps serving.
    edit(folder, "subjects.csv", RAPPORT_LINE, "")
    edit(folder, "policy.csv", "g, dirigeant, rapport_mensuel, write\n", "")
    edit(folder, "policy.csv", "g, personne_responsable, rapport_mensuel, read\n", "")
    wait_until(lambda: policy_health(server) == NOT_SERVING)
    (refusal,) = policy_records(caplog, "refused")
    assert f"subject 'rapport_mensuel' is removed, but {granted} grant(s) in force in the store" in (
        refusal.getMessage()
    )
    assert server.app.policy.content_hash == original
    assert client.check(IND, XYZ, RAPPORT, Right.RIGHT_WRITE).allowed

    # 2. Retired instead: accepted; checks answer "not allowed", never INVALID_ARGUMENT.
    write_atomically(folder / "retired.csv", RETIRED_CSV)
    wait_until(lambda: server.app.policy.content_hash != original)
    assert policy_health(server) == SERVING
    for contact, organization in ((IND, XYZ), (DIRECTOR, SQC), ("C-REP", "LOC-SQC-MTL")):
        answer = client.check(contact, organization, RAPPORT, Right.RIGHT_READ)
        assert answer.allowed is False and answer.policy_hash == server.app.policy.content_hash
    explained = client.check(IND, XYZ, RAPPORT, Right.RIGHT_WRITE, explain=True)
    assert not explained.allowed and "retired" in explained.reason
    batch = client.batch_check(
        [
            check_request(IND, XYZ, RAPPORT, Right.RIGHT_WRITE),
            check_request(DIRECTOR, SQC, "relations", Right.RIGHT_WRITE),
        ]
    )
    assert [r.allowed for r in batch] == [False, True]
    # Gone from the lists; its grants stay in the store as history.
    rows = list(client.iter_authorizations(PR, SQC))
    assert rows and not any(row.subject == RAPPORT for row in rows)
    assert live_grants(server, RAPPORT) == granted
    # Granting it anew is refused as an unknown subject.
    with pytest.raises(AuthzClientError) as raised:
        client.grant_relation(
            PR,
            SQC,
            new_contact=NewContact(first_name="Ana", last_name="Roy", email="ana@example.org"),
            role=Role.ROLE_MEMBRE_DU_PERSONNEL,
            subjects=[(RAPPORT, Right.RIGHT_READ)],
            attest=True,
        )
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown subject 'rapport_mensuel'" in raised.value.message
    # But a grant of it can still be removed on its own: history is ended, not left dangling.
    # (From a relation still in force: one past its end date, as R-REP-LOC, takes no change but its end.)
    removed = client.revoke_relation(
        "C-LOC-DIR", "LOC-SQC-MTL", contact_id="C-LOC-MEM", relation_id="R-LOC-MEM", subjects=[RAPPORT], attest=True
    )
    assert removed.subjects_removed == 1 and live_grants(server, RAPPORT) == granted - 1

    # The accepted reload says, in the log and the audit, whose decisions it flipped.
    retired_hash = validate(folder).content_hash
    wait_until(lambda: len(audit_rows(server)) == 2)  # written last, after the swap and the log
    (reloaded,) = policy_records(caplog, f"policy reloaded: {original} -> {retired_hash}")
    assert "loss(es) of a right" in reloaded.getMessage()
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "authz.policy")
    assert (
        "1 organization loses write and read on rapport_mensuel of the organizations that authorized them: ORG-SQC on EMP-XYZ"
        in logged
    )
    actions = audit_rows(server)
    assert [action for action, _ in actions] == ["policy_reload_refused", "policy_reload"]
    flips = actions[1][1]["flips"]
    assert isinstance(flips, dict)
    changes = {(c["roles"], c["subject"], c["before"], c["after"]) for c in flips["changes"]}
    assert ("organization-to-organization", RAPPORT, "write", "none") in changes
    assert ("organization-to-organization", RAPPORT, "read", "none") in changes
    assert ("dirigeant", RAPPORT, "write", "none") in changes
    assert any(roles.startswith("delegated via ORG-SQC") for roles, *_ in changes)


def test_a_reload_that_flips_nothing_says_so(
    start_server: Callable[..., Running], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="authz.policy")
    folder = copy_policy(tmp_path / "policy")
    server = start_server(policy_dir=folder)
    original = server.app.policy.content_hash
    edit(folder, "subjects.csv", "Monthly report", "Monthly activity report")  # a label: no decision changes
    wait_until(lambda: len(audit_rows(server)) == 1)  # written last, after the swap and the log
    assert server.app.policy.content_hash != original  # the new labels serve
    (reloaded,) = policy_records(caplog, "policy reloaded:")
    assert reloaded.getMessage().endswith("no decision changes")
    (_, changes), *_ = audit_rows(server)
    assert changes["flips"] == {
        "summary": "no decision changes",
        "contacts": 0,
        "organizations": 0,
        "changes": [],
        "sentences": [],
    }


def test_the_server_does_not_start_on_a_folder_that_removes_a_granted_subject(
    start_server: Callable[..., Running], tmp_path: Path
) -> None:
    # Start-up applies the reload's rule: a subject still granted in the store is retired, never removed.
    folder = copy_policy(tmp_path / "policy")
    edit(folder, "subjects.csv", RAPPORT_LINE, "")
    edit(folder, "policy.csv", "g, dirigeant, rapport_mensuel, write\n", "")
    edit(folder, "policy.csv", "g, personne_responsable, rapport_mensuel, read\n", "")
    assert validate(folder).ok  # valid on its own: only the store's grants make it wrong
    with pytest.raises(PolicyLoadError) as refused:
        start_server(policy_dir=folder)
    assert "subject 'rapport_mensuel' is removed, but 5 grant(s) in force in the store" in str(refused.value)
    # Retired instead, the same folder starts.
    write_atomically(folder / "retired.csv", RETIRED_CSV)
    served = start_server(policy_dir=folder)
    assert not served.client.check("C-REP", "LOC-SQC-MTL", RAPPORT, Right.RIGHT_READ).allowed
