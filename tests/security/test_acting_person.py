"""Finding 5: the calling service says who acts; deployments can narrow that trust.

The audit record names the calling service beside the actor; a refused write is logged
with caller, actor and reason; a caller whose entry says `require_account: true` must name
the end-user account (`x-authz-account` metadata) with each write, and may then act only
as one of that account's linked profiles.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from authz_client import AuthzClient, InvalidArgumentError, PermissionDeniedError
from sqlalchemy import select

from authz.calls import ACCOUNT_METADATA
from authz.server.auth import Callers, hash_token
from authz.store import tables

from ..conftest import Running
from ..integration.helpers import codes_for, row_counts

PORTAL_TOKEN = "portal-3c5e0f6b1d9a4c7e8f2a0b4d6e8f1a3c"
SELF_TOKEN = "self-service-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
PR, DIR1, IND, SQC = "C-PR", "C-DIR1", "C-IND", "ORG-SQC"
JULIE = "acct-julie"  # the account linked to C-PR


_Details = collections.namedtuple(
    "_Details", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
)


class _CallDetails(_Details, grpc.ClientCallDetails):  # type: ignore[misc]
    pass


class _WithAccount(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Adds the end-user account to every call, as a portal acting for a signed-in person would."""

    def __init__(self, account: str) -> None:
        self.account = account

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        metadata = [*(details.metadata or ()), (ACCOUNT_METADATA, self.account)]
        return continuation(
            _CallDetails(
                details.method, details.timeout, metadata, details.credentials, details.wait_for_ready,
                details.compression,
            ),
            request,
        )  # fmt: skip


@pytest.fixture
def server(start_server: Callable[..., Running], tmp_path: Path) -> Running:
    path = tmp_path / "callers.json"
    path.write_text(
        json.dumps(
            {
                "callers": [
                    {"name": "portal", "token_sha256": hash_token(PORTAL_TOKEN), "methods": ["*"]},
                    {
                        "name": "self-service",
                        "token_sha256": hash_token(SELF_TOKEN),
                        "methods": ["*"],
                        "require_account": True,
                    },
                ]
            }
        )
    )
    return start_server(callers_file=path)


@pytest.fixture
def clients(server: Running) -> Iterator[Callable[..., AuthzClient]]:
    opened: list[tuple[AuthzClient, grpc.Channel]] = []

    def make(token: str, account: str | None = None) -> AuthzClient:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.app.port}")
        if account is not None:
            channel = grpc.intercept_channel(channel, _WithAccount(account))
        client = AuthzClient(channel=channel, token=token, timeout=10)
        opened.append((client, channel))
        return client

    yield make
    for _, channel in opened:
        channel.close()


_ROLES = itertools.cycle(("membre_du_personnel", "representant", "dirigeant"))


def grant(client: AuthzClient, actor: str) -> str:
    # Another role each time: a second relation with a role C-IND already holds would repeat it.
    return client.grant_relation(
        actor, SQC, contact_id=IND, role=next(_ROLES), subjects=[("profil", "read")], attest=True
    ).relation_id


def test_the_audit_record_names_the_calling_service_beside_the_actor(
    server: Running, clients: Callable[..., AuthzClient]
) -> None:
    relation_id = grant(clients(PORTAL_TOKEN), PR)
    with server.store.engine.connect() as connection:
        rows = connection.execute(
            select(tables.audit_log.c.caller, tables.audit_log.c.actor_id, tables.audit_log.c.changes).where(
                tables.audit_log.c.action == "grant_relation"
            )
        ).all()
    assert [(row.caller, row.actor_id) for row in rows if row.changes["relation_id"] == relation_id] == [("portal", PR)]


def test_a_refused_write_is_logged_with_caller_actor_and_reason(
    server: Running, clients: Callable[..., AuthzClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="authz.server")
    portal = clients(PORTAL_TOKEN)
    with pytest.raises(PermissionDeniedError):
        grant(portal, IND)  # C-IND does not manage ORG-SQC
    with pytest.raises(InvalidArgumentError):
        portal.redeem_link_code("acct-someone", "ABCD-EFGH-JKMN-PQRS")
    lines = [record for record in caplog.records if record.getMessage().startswith("refused ")]
    assert len(lines) == 2
    denied, wrong_code = (record.getMessage() for record in lines)
    assert "GrantRelation" in denied and "caller='portal'" in denied and "actor='C-IND'" in denied
    assert "PERMISSION_DENIED" in denied and "may not manage" in denied and lines[0].levelno == logging.WARNING
    assert "RedeemLinkCode" in wrong_code and "actor='acct-someone'" in wrong_code and "INVALID_ARGUMENT" in wrong_code
    assert "ABCD" not in wrong_code and "PQRS" not in wrong_code


def test_a_caller_may_be_required_to_act_only_for_the_account_s_profiles(
    server: Running, clients: Callable[..., AuthzClient]
) -> None:
    portal = clients(PORTAL_TOKEN)
    portal.issue_link_code(PR, SQC, PR, attest=True)
    (code,) = codes_for(server, "julie.tremblay@")
    portal.redeem_link_code(JULIE, code)
    before = row_counts(server)
    # No account named: refused, nothing written.
    with pytest.raises(PermissionDeniedError, match="x-authz-account"):
        grant(clients(SELF_TOKEN), PR)
    # Julie's account acting as Marc (a manager of ORG-SQC, but not her profile): refused.
    as_julie = clients(SELF_TOKEN, JULIE)
    with pytest.raises(PermissionDeniedError, match="not a profile linked"):
        grant(as_julie, DIR1)
    with pytest.raises(PermissionDeniedError):
        clients(SELF_TOKEN, "acct-nobody").revoke_relation(PR, SQC, contact_id=IND, all_relations=True, attest=True)
    # Redeeming for another account than the acting one: refused.
    with pytest.raises(PermissionDeniedError, match="another account"):
        as_julie.redeem_link_code("acct-other", "ABCD-EFGH-JKMN-PQRS")
    with pytest.raises(PermissionDeniedError, match="another account"):
        as_julie.link_legacy_access("acct-other", "sqc-admin", "not the password")
    assert row_counts(server) == before
    # As her own profile: done, and audited under the caller.
    assert grant(as_julie, PR)
    # The portal's entry does not require an account: it still says who acts.
    assert grant(clients(PORTAL_TOKEN), DIR1)


def test_require_account_must_be_a_boolean() -> None:
    entry = {"name": "x", "token_sha256": hash_token("t"), "methods": ["*"], "require_account": "yes"}
    with pytest.raises(ValueError, match="require_account"):
        Callers.parse({"callers": [entry]})
    assert Callers.parse({"callers": [{**entry, "require_account": True}]}).callers[0].require_account
