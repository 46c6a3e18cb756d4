"""The one write path under pressure: throttles that hold when guesses arrive at once, from one
server or two on one database, and errors that stay small whatever the request holds."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import grpc
import pytest
from authz_client import InvalidArgumentError, ResourceExhaustedError, check_request
from google.rpc import error_details_pb2, status_pb2
from sqlalchemy import func, select

from authz.commands.legacy import LEGACY_LOGIN_FAILURE_LIMIT
from authz.commands.link_codes import ACCOUNT_FAILURE_LIMIT
from authz.server.errors import MAX_VIOLATIONS
from authz.store import tables
from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc

from ..conftest import Running

LEGACY_LOGIN = "sqc-admin"  # the demo's legacy login of the person responsible


def _failed_attempts(server: Running, **where: str) -> int:
    a = tables.link_code_attempts.c
    query = select(func.count()).select_from(tables.link_code_attempts).where(a.success.is_(False))
    for column, value in where.items():
        query = query.where(a[column] == value)
    with server.store.engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


def _outcomes(calls: list[Callable[[], object]]) -> Counter[str]:
    """Run the calls all at once (released together by a barrier); count what each answered."""
    barrier = threading.Barrier(len(calls))
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def run(call: Callable[[], object]) -> None:
        barrier.wait()
        try:
            call()
            answer = "ok"
        except InvalidArgumentError:
            answer = "weighed and wrong"
        except ResourceExhaustedError:
            answer = "throttled"
        with lock:
            outcomes[answer] += 1

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return outcomes


def test_a_legacy_login_guessed_from_many_accounts_is_throttled(demo: Running) -> None:
    answers = []
    for attempt in range(14):
        try:
            demo.client.link_legacy_access(f"acct-guesser-{attempt}", LEGACY_LOGIN, f"guess-{attempt}")
        except InvalidArgumentError:
            answers.append("wrong")
        except ResourceExhaustedError:
            answers.append("throttled")
    assert answers == ["wrong"] * LEGACY_LOGIN_FAILURE_LIMIT + ["throttled"] * (14 - LEGACY_LOGIN_FAILURE_LIMIT)
    # Even the right password is refused while the login is throttled, and nothing was linked.
    with pytest.raises(ResourceExhaustedError):
        demo.client.link_legacy_access("acct-owner", LEGACY_LOGIN, "demo-legacy-password")
    assert not demo.client.list_profiles("acct-owner").profiles


@pytest.fixture
def two_servers(demo_any: Running, start_server: Callable[..., Running]) -> tuple[Running, Running]:
    """Two servers on one database: on PostgreSQL only the database can serialize them."""
    url = demo_any.app.settings.database_url
    return demo_any, start_server(url, demo=False)


def test_forty_wrong_codes_at_once_for_one_account_weigh_at_most_the_limit(
    two_servers: tuple[Running, Running],
) -> None:
    first, second = two_servers
    calls: list[Callable[[], object]] = [
        (lambda server=server, i=i: server.client.redeem_link_code("acct-rush", f"ZZZZ-ZZZZ-ZZZZ-ZZ{i:02d}"))
        for i, server in enumerate([first, second] * 20)
    ]
    outcomes = _outcomes(calls)
    assert outcomes["weighed and wrong"] <= ACCOUNT_FAILURE_LIMIT, outcomes
    assert outcomes["weighed and wrong"] + outcomes["throttled"] == 40, outcomes
    assert _failed_attempts(first, account_id="acct-rush") == outcomes["weighed and wrong"]


def test_forty_wrong_passwords_at_once_for_one_legacy_login_weigh_at_most_the_limit(
    two_servers: tuple[Running, Running],
) -> None:
    first, second = two_servers
    calls: list[Callable[[], object]] = [
        (lambda server=server, i=i: server.client.link_legacy_access(f"acct-{i}", LEGACY_LOGIN, f"wrong-{i}"))
        for i, server in enumerate([first, second] * 20)
    ]
    outcomes = _outcomes(calls)
    assert outcomes["weighed and wrong"] <= LEGACY_LOGIN_FAILURE_LIMIT, outcomes
    assert outcomes["weighed and wrong"] + outcomes["throttled"] == 40, outcomes
    assert _failed_attempts(first, legacy_username=LEGACY_LOGIN) == outcomes["weighed and wrong"]


def test_a_batch_of_a_thousand_bad_items_answers_invalid_argument_with_small_details(demo: Running) -> None:
    bad = [check_request("bad id", "ORG-SQC", "no-such-subject", "read")] * 1000
    with pytest.raises(InvalidArgumentError) as refused:
        demo.client.batch_check(bad)
    violations = refused.value.field_violations
    assert len(violations) == MAX_VIOLATIONS + 1
    assert violations[-1][1].endswith("more violations not listed")
    # The raw trailer, as any gRPC client receives it: well under gRPC's 8 KB limit on metadata.
    with grpc.insecure_channel(f"127.0.0.1:{demo.app.port}") as channel:
        stub = authz_pb2_grpc.AuthzServiceStub(channel)
        request = pb.BatchCheckAccessRequest(
            checks=[pb.CheckAccessRequest(principal_id="bad id", organization_id="ORG-SQC", subject="x")] * 1000
        )
        with pytest.raises(grpc.RpcError) as raw:
            stub.BatchCheckAccess(request, timeout=10)
    error: grpc.Call = raw.value  # type: ignore[assignment]
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]
    assert len(details) < 4096
    status = status_pb2.Status.FromString(details)
    bad_request = error_details_pb2.BadRequest()
    status.details[0].Unpack(bad_request)
    assert len(bad_request.field_violations) == MAX_VIOLATIONS + 1
