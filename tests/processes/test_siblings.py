"""Sibling worker processes of one server see each other's writes before they answer: after a revoke
is acknowledged, no check on any worker, at the default consistency, answers from before it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from authz_client import Right, Role

from authz.engine.policy import Policy

from ..conftest import load_demo
from .conftest import Cluster, wait_until

MANAGER, ORG, CONTACT = "C-PR", "ORG-SQC", "C-IND"
ROUNDS = 8
CALLERS = 8
# The followers are made slow on purpose (no NOTIFY, polling every 30 s): only the shared revision
# can bring a sibling's write in before the next check.
SLOW_FOLLOWERS = {"AUTHZ_FOLLOW_NOTIFY": "0", "AUTHZ_FOLLOW_POLL_SECONDS": "30"}


def revoked_then_checked(cluster: Cluster, subjects: list[str]) -> list[tuple[str, int]]:
    """Grant and revoke through one worker; after each revoke, every caller on every worker checks at once."""
    callers = cluster.callers(CALLERS)
    assert len({pid for _, pid in callers}) == 2, ("the callers reach both workers", cluster.output())
    writer = callers[0][0]
    stale = []
    for subject in subjects[:ROUNDS]:
        granted = writer.grant_relation(
            MANAGER,
            ORG,
            contact_id=CONTACT,
            role=Role.ROLE_MEMBRE_DU_PERSONNEL,  # a role C-IND does not hold: ended each round
            subjects=[(subject, Right.RIGHT_READ)],
            attest=True,
        )
        # The grant is seen everywhere at once too: the same counter.
        for client, pid in callers:
            assert client.allowed(CONTACT, ORG, subject, Right.RIGHT_READ), (subject, pid)
        writer.revoke_relation(MANAGER, ORG, contact_id=CONTACT, relation_ids=[granted.relation_id], attest=True)
        stale += [(subject, pid) for client, pid in callers if client.allowed(CONTACT, ORG, subject, Right.RIGHT_READ)]
    for client, _ in callers:
        client.close()
    return stale


def unused_subjects(cluster: Cluster, policy: Policy) -> list[str]:
    (client, _), *_ = cluster.callers(1)
    with client:
        return [s for s in sorted(policy.subjects) if not client.allowed(CONTACT, ORG, s, Right.RIGHT_READ)]


def test_a_revoke_on_one_worker_is_seen_by_its_sibling_on_sqlite(
    cluster: Callable[..., Cluster], tmp_path: Path, policy: Policy
) -> None:
    served = cluster(f"sqlite:///{tmp_path / 'authz.db'}", **SLOW_FOLLOWERS).start("--demo")
    assert revoked_then_checked(served, unused_subjects(served, policy)) == []


@pytest.mark.postgres
def test_a_revoke_on_one_worker_is_seen_by_its_sibling_on_postgresql(
    cluster: Callable[..., Cluster], postgres_database: Callable[[], str], policy: Policy
) -> None:
    url = postgres_database()
    load_demo(url, policy)
    served = cluster(url, **SLOW_FOLLOWERS).start()
    wait_until(lambda: len(served.workers()) == 2, 10, "two workers")
    assert revoked_then_checked(served, unused_subjects(served, policy)) == []
