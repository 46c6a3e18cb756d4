"""Two `authz serve` processes on one PostgreSQL database: a write through one is never missed by
the other when the caller passes the write's token, whatever path the other takes to learn it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from authz_client import PermissionDeniedError, Right, Role

from authz.engine.policy import Policy
from authz.replication.tokens import revision_of
from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc

from .conftest import AUTHZ, MANAGER, ORG, RandomWriter, Served, converges

ROUNDS = 40

# The follower's three ways of learning a write: NOTIFY, polling alone, and none (paused: only the
# catch-up that a token triggers brings the write in).
FOLLOWERS = {
    "notify": {},
    "poll_only": {"AUTHZ_FOLLOW_NOTIFY": "0", "AUTHZ_FOLLOW_POLL_SECONDS": "0.2"},
    "paused": {"AUTHZ_FOLLOW_NOTIFY": "0", "AUTHZ_FOLLOW_POLL_SECONDS": "3600"},
}


@pytest.mark.parametrize("follower", list(FOLLOWERS))
def test_a_write_through_one_server_is_seen_by_the_other_with_its_token(
    follower: str, pg_demo: str, serve: Callable[..., Served], policy: Policy
) -> None:
    a = serve(pg_demo)
    b = serve(pg_demo, **FOLLOWERS[follower])
    subjects = sorted(policy.subjects)
    stale = []
    behind_without_token = 0
    with a.client() as writer_client, b.client() as reader:
        writer = RandomWriter(writer_client, seed=list(FOLLOWERS).index(follower), subjects=subjects)
        for _ in range(ROUNDS):
            token, contact, subject = writer.step()
            for right in (Right.RIGHT_READ, Right.RIGHT_WRITE):
                if follower == "paused":
                    # Without a token, the paused follower answers from its older state.
                    behind_without_token += revision_of(reader.check(contact, ORG, subject, right).revision) < (
                        revision_of(token)
                    )
                truth = writer_client.check(contact, ORG, subject, right, consistency=token)
                answer = reader.check(contact, ORG, subject, right, consistency=token)
                assert revision_of(answer.revision) >= revision_of(token)
                if answer.allowed != truth.allowed:
                    stale.append((token, contact, subject, right, answer.allowed))
    assert stale == []
    if follower == "paused":
        assert behind_without_token >= ROUNDS  # so the answers above did come through the catch-up
    converges(b, pg_demo, policy, subjects)


def test_a_manager_revoked_through_one_server_cannot_write_through_the_other(
    pg_demo: str, serve: Callable[..., Served]
) -> None:
    a = serve(pg_demo)
    b = serve(pg_demo, **FOLLOWERS["paused"])  # B learns nothing by itself: its index stays as it started
    with a.client() as through_a, b.client() as through_b:
        # C-REP becomes a manager of ORG-SQC, then revokes C-PR's relation, all through A.
        through_a.grant_relation(MANAGER, ORG, contact_id="C-REP", role=Role.ROLE_PERSONNE_RESPONSABLE, attest=True)
        through_a.revoke_relation("C-REP", ORG, contact_id=MANAGER, all_relations=True, attest=True)
        assert through_b.allowed(MANAGER, ORG, "relations", Right.RIGHT_WRITE)  # B's memory is behind...
        with pytest.raises(PermissionDeniedError):  # ...but a write decides on the store's newest state
            through_b.grant_relation(MANAGER, ORG, contact_id="C-IND", role=Role.ROLE_INDIVIDU_AUTORISE, attest=True)


def test_writes_with_no_deadline_through_both_servers_wait_for_their_reload_after_an_import(
    pg_demo: str, serve: Callable[..., Served], tmp_path: Path
) -> None:
    """`authz import` from a third process; both servers learn nothing by themselves (paused
    followers), so each one's next write meets the import first: with no deadline, each waits for
    its own reload (bounded by AUTHZ_WRITE_WAIT_SECONDS) and is made."""
    servers = [serve(pg_demo, **FOLLOWERS["paused"]), serve(pg_demo, **FOLLOWERS["paused"])]
    source = tmp_path / "more.json"
    contact = {"id": "C-BULK", "first_name": "Arrivée", "last_name": "En bloc", "email": "b@example.org"}
    source.write_text(json.dumps({"contacts": [contact]}), encoding="utf-8")
    imported = subprocess.run(
        [AUTHZ, "import", str(source), "--database-url", pg_demo, "--report", str(tmp_path / "report.json")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr
    revision = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))["revision"]
    attested = pb.Attestation(authorizes_acting=True, changes_accurate=True)
    answers = []
    for served, contact_id in zip(servers, ("C-IND", "C-DIR1"), strict=True):
        with grpc.insecure_channel(f"127.0.0.1:{served.port}") as channel:
            request = pb.GrantRelationRequest(
                actor_id=MANAGER,
                organization_id=ORG,
                contact_id=contact_id,
                role=pb.ROLE_MEMBRE_DU_PERSONNEL,
                attestation=attested,
            )
            answers.append(authz_pb2_grpc.AuthzServiceStub(channel).GrantRelation(request))  # no deadline
    assert [revision_of(answer.revision) for answer in answers] == [revision + 1, revision + 2]
    for served in servers:
        assert any("reloaded the index" in line for line in served.lines), "".join(served.lines[-20:])
