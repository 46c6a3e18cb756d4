"""Watch (exactly once, in order, resumable, bounded by retention) and the consistency field's edges."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import grpc
import pytest
from authz_client import FULLY_CONSISTENT, AuthzClient, InvalidArgumentError, Right, Role, check_request

from authz.replication.tokens import revision_of
from authz.replication.watch import WatchChanges
from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc

from ..conftest import Running
from .conftest import MANAGER, ORG

_GRANTS: dict[int, int] = {}


def _grant(running: Running, contact: str = "C-IND", subject: str = "rapport_mensuel") -> str:
    # Each grant of a test in dates of its own (the first from today): a second relation with the
    # same role over the same dates would repeat the first, and is refused.
    number = _GRANTS[id(running)] = _GRANTS.get(id(running), -1) + 1
    start = datetime.now(ZoneInfo("America/Montreal")).date() + timedelta(days=10 * number)
    return running.client.grant_relation(
        MANAGER,
        ORG,
        contact_id=contact,
        role=Role.ROLE_MEMBRE_DU_PERSONNEL,
        subjects=[(subject, Right.RIGHT_WRITE)],
        start_date=start,
        end_date=start + timedelta(days=1),
        attest=True,
    ).revision


def _watch(running: Running, after: str, timeout: float = 10) -> grpc.Call:
    channel = grpc.insecure_channel(f"127.0.0.1:{running.app.port}")
    return authz_pb2_grpc.AuthzServiceStub(channel).Watch(pb.WatchRequest(after_revision=after), timeout=timeout)  # type: ignore[no-any-return]


@pytest.fixture
def pg_running(start_server: Callable[..., Running], postgres_database: Callable[[], str]) -> Running:
    return start_server(postgres_database(), watch_checkpoint_seconds=0.3)


def test_watch_sends_each_write_once_in_order_and_resumes_after_a_disconnect(pg_running: Running) -> None:
    start = pg_running.client.check(MANAGER, ORG, "relations", Right.RIGHT_READ).revision
    tokens = [_grant(pg_running, subject=s) for s in ("rapport_mensuel", "profil", "rapport_mensuel")]
    stream = _watch(pg_running, start)
    received = [next(stream) for _ in range(2)]
    stream.cancel()  # the consumer goes away after two messages
    tokens += [_grant(pg_running, subject="profil") for _ in range(2)]
    resumed = _watch(pg_running, received[-1].revision)
    while len(received) < len(tokens):
        message = next(resumed)
        if not message.checkpoint:
            received.append(message)
    resumed.cancel()
    assert [m.revision for m in received] == tokens  # every write, once, in commit order
    assert [m.operation for m in received] == ["grant_relation"] * len(tokens)
    assert received[0].relations[0].contact_id == "C-IND"
    assert received[0].relations[0].subjects[0].subject == "rapport_mensuel"


def test_an_idle_watch_gets_checkpoints_at_the_newest_revision(pg_running: Running) -> None:
    token = _grant(pg_running)
    stream = _watch(pg_running, "")
    message = next(stream)
    stream.cancel()
    assert message.checkpoint and message.revision == token


def test_watch_refuses_a_cursor_past_retention_a_foreign_token_and_one_from_the_future(pg_running: Running) -> None:
    old = pg_running.client.check(MANAGER, ORG, "relations", Right.RIGHT_READ).revision
    _grant(pg_running)
    _grant(pg_running, subject="profil")
    with pg_running.store.transaction() as tx:  # the retention window passes over both writes
        tx.prune_changes(datetime.now(UTC) + timedelta(seconds=1))
    with pytest.raises(grpc.RpcError) as expired:
        next(_watch(pg_running, old))
    assert expired.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    revision, store_id = old.split(".")
    for bad in (f"{revision}.{'0' * 16}", "12", f"{int(revision) + 100}.{store_id}"):
        with pytest.raises(grpc.RpcError) as refused:
            next(_watch(pg_running, bad))
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT, bad


def test_a_watch_consumer_that_stops_reading_is_cut_off(
    start_server: Callable[..., Running], postgres_database: Callable[[], str]
) -> None:
    running = start_server(postgres_database(), watch_send_timeout_seconds=0.5)
    start = running.client.check(MANAGER, ORG, "relations", Right.RIGHT_READ).revision
    _grant(running)
    _grant(running, subject="profil")
    watch = WatchChanges(running.store, running.app.follower, running.app.settings)
    cut_off = threading.Event()
    stream = watch.stream(revision_of(start), lambda: True, cut_off.set)
    next(stream)  # handed one change, the consumer takes nothing more (as when gRPC's send blocks)
    assert cut_off.wait(5)
    stream.close()


def test_consistency_tokens_are_checked_and_fully_consistent_reads_the_store(
    pg_running: Running, start_server: Callable[..., Running], postgres_database: Callable[[], str]
) -> None:
    client = pg_running.client
    token = _grant(pg_running)
    assert client.check("C-IND", ORG, "rapport_mensuel", Right.RIGHT_WRITE, consistency=token).allowed
    assert client.check("C-IND", ORG, "rapport_mensuel", Right.RIGHT_WRITE, consistency=FULLY_CONSISTENT).allowed
    other = start_server(postgres_database())  # another store: its tokens name another store id
    foreign = other.client.check(MANAGER, ORG, "relations", Right.RIGHT_READ).revision
    revision, store_id = token.split(".")
    for bad in (foreign, "7", "abc", f"{int(revision) + 1000}.{store_id}"):
        with pytest.raises(InvalidArgumentError):
            client.check(MANAGER, ORG, "relations", Right.RIGHT_READ, consistency=bad)
        with pytest.raises(InvalidArgumentError):
            client.list_contacts(MANAGER, ORG, consistency=bad)
        with pytest.raises(InvalidArgumentError):
            client.batch_check([check_request(MANAGER, ORG, "relations", 1, consistency=bad)])
    # Every read answer says the revision it was decided at.
    assert client.list_contacts(MANAGER, ORG, consistency=token).revision == token
    assert client.list_authorizations(MANAGER, ORG, consistency=token).revision == token
    assert client.list_profiles("ACCOUNT-NONE", consistency=token).revision == token
    # The guide's screens and the lookups too.
    assert client.get_contact(MANAGER, ORG, "C-IND", consistency=token).revision == token
    assert client.list_requests(MANAGER, ORG, consistency=token).revision == token
    assert client.list_migration_issues(MANAGER, ORG, consistency=token).revision == token
    assert client.lookup_principals(ORG, "rapport_mensuel", Right.RIGHT_WRITE, consistency=token).revision == token
    assert (
        client.lookup_organizations("C-IND", "rapport_mensuel", Right.RIGHT_WRITE, consistency=token).revision == token
    )
    with pytest.raises(InvalidArgumentError):
        client.list_requests(MANAGER, ORG, consistency=foreign)
    with pytest.raises(InvalidArgumentError):
        client.lookup_principals(ORG, "rapport_mensuel", Right.RIGHT_WRITE, consistency=foreign)


def test_writes_of_every_kind_return_a_token(pg_running: Running) -> None:
    issued = pg_running.client.issue_link_code(MANAGER, ORG, "C-IND", attest=True)
    assert revision_of(issued.revision) == revision_of(pg_running.client.check(MANAGER, ORG, "profil", 1).revision)


def test_watch_is_guarded_like_every_rpc(start_server: Callable[..., Running], tmp_path: Path) -> None:
    from ..security.test_callers import PORTAL_TOKEN, REPORT_TOKEN, write_callers

    running = start_server(callers_file=write_callers(tmp_path / "callers.json"))
    channel = grpc.insecure_channel(f"127.0.0.1:{running.app.port}")
    stub = authz_pb2_grpc.AuthzServiceStub(channel)
    for token, code in (
        (None, grpc.StatusCode.UNAUTHENTICATED),
        ("not-a-token", grpc.StatusCode.UNAUTHENTICATED),
        (REPORT_TOKEN, grpc.StatusCode.PERMISSION_DENIED),  # this caller may only check
    ):
        metadata = [("authorization", f"Bearer {token}")] if token else []
        with pytest.raises(grpc.RpcError) as refused:
            next(stub.Watch(pb.WatchRequest(), metadata=metadata, timeout=5))
        assert refused.value.code() is code
    portal = AuthzClient(f"127.0.0.1:{running.app.port}", token=PORTAL_TOKEN, timeout=5)
    before = portal.check(MANAGER, ORG, "relations", Right.RIGHT_READ).revision
    granted = portal.grant_relation(MANAGER, ORG, contact_id="C-IND", role=Role.ROLE_MEMBRE_DU_PERSONNEL, attest=True)
    allowed = stub.Watch(
        pb.WatchRequest(after_revision=before), metadata=[("authorization", f"Bearer {PORTAL_TOKEN}")], timeout=5
    )
    message = next(allowed)
    while message.checkpoint:
        message = next(allowed)
    assert message.revision == granted.revision
    allowed.cancel()
    portal.close()
    channel.close()


def test_a_bulk_import_into_a_served_store_reaches_the_running_process(pg_running: Running, tmp_path: Path) -> None:
    import json

    from authz.commands.import_data import import_file
    from authz.store.sql import SqlStore

    data = {
        "contacts": [{"id": "C-NEW", "first_name": "Nouvelle", "last_name": "Personne", "email": "n@example.org"}],
        "relations": [
            {
                "id": "R-NEW",
                "contact_id": "C-NEW",
                "organization_id": ORG,
                "role": "individu_autorise",
                "start_date": "2020-01-01",
                "subjects": [{"subject": "rapport_mensuel", "right": "write"}],
            }
        ],
    }
    path = tmp_path / "more.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    store = SqlStore.from_url(str(pg_running.store.engine.url.render_as_string(hide_password=False)))
    report = import_file(store, path, pg_running.app.policy.subjects)  # another process's import, as `authz import`
    store.close()
    assert not report.refused
    answer = pg_running.client.check("C-NEW", ORG, "rapport_mensuel", Right.RIGHT_WRITE, consistency=FULLY_CONSISTENT)
    assert answer.allowed and revision_of(answer.revision) == report.revision
    assert pg_running.app.follower.reloads == 1  # too big to list in the log: the process reloaded


def test_a_write_right_after_a_bulk_import_waits_for_the_reload_instead_of_failing(
    start_server: Callable[..., Running], database_url: str, tmp_path: Path
) -> None:
    """The write finds the engine needs the state whole (an import is too big for the change log):
    it waits for this process's reload within its deadline and is made, not refused UNAVAILABLE."""
    import json

    from authz.commands.import_data import import_file
    from authz.store.sql import SqlStore

    # The follower polls rarely and is not notified (SQLite): the write meets the import first.
    running = start_server(database_url, follow_poll_seconds=60.0, follow_notify=False)
    data = {"contacts": [{"id": "C-BULK", "first_name": "Arrivée", "last_name": "En bloc", "email": "b@example.org"}]}
    path = tmp_path / "bulk.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    store = SqlStore.from_url(str(running.store.engine.url.render_as_string(hide_password=False)))
    report = import_file(store, path, running.app.policy.subjects)
    store.close()
    assert report.revision > 0 and running.app.follower.reloads == 0
    granted = running.client.grant_relation(
        MANAGER, ORG, contact_id="C-IND", role=Role.ROLE_MEMBRE_DU_PERSONNEL, attest=True
    )
    assert revision_of(granted.revision) == report.revision + 1
    assert running.app.follower.reloads == 1
