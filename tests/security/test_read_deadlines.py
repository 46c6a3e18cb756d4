"""Every read with a consistency and no deadline (gRPC's default, grpcurl's) answers, bounded.

gRPC reports "no deadline" as a huge time remaining; handed to a lock's timeout it overflowed
`time_t` and every such read answered INTERNAL. A read now waits for freshness no longer than
its caller will, nor than the server's `read_wait_seconds`, then answers UNAVAILABLE.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest

from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc

from ..conftest import Running

PR, SQC, LUC = "C-PR", "ORG-SQC", "C-IND"


def reads(consistency: Callable[[], pb.Consistency]) -> dict[str, Callable[[authz_pb2_grpc.AuthzServiceStub], Any]]:
    """Every read of the service with the given consistency, as raw calls with no deadline."""
    check = dict(principal_id=PR, organization_id=SQC, subject="profil", right=pb.RIGHT_READ)
    return {
        "CheckAccess": lambda s: s.CheckAccess(pb.CheckAccessRequest(**check, consistency=consistency())),
        "CheckAccess explained": lambda s: s.CheckAccess(
            pb.CheckAccessRequest(**check, explain=True, consistency=consistency())
        ),
        "BatchCheckAccess": lambda s: s.BatchCheckAccess(
            pb.BatchCheckAccessRequest(checks=[pb.CheckAccessRequest(**check)], consistency=consistency())
        ),
        "BatchCheckAccess item": lambda s: s.BatchCheckAccess(
            pb.BatchCheckAccessRequest(checks=[pb.CheckAccessRequest(**check, consistency=consistency())])
        ),
        "ListProfiles": lambda s: s.ListProfiles(pb.ListProfilesRequest(account_id="acct", consistency=consistency())),
        "ListContacts": lambda s: s.ListContacts(
            pb.ListContactsRequest(actor_id=PR, organization_id=SQC, consistency=consistency())
        ),
        "ListAuthorizations": lambda s: s.ListAuthorizations(
            pb.ListAuthorizationsRequest(actor_id=PR, organization_id=SQC, consistency=consistency())
        ),
        "GetContact": lambda s: s.GetContact(
            pb.GetContactRequest(actor_id=PR, organization_id=SQC, contact_id=LUC, consistency=consistency())
        ),
        "ListRequests": lambda s: s.ListRequests(
            pb.ListRequestsRequest(actor_id=PR, organization_id=SQC, consistency=consistency())
        ),
        "ListMigrationIssues": lambda s: s.ListMigrationIssues(
            pb.ListMigrationIssuesRequest(actor_id=PR, organization_id=SQC, consistency=consistency())
        ),
        "LookupPrincipals": lambda s: s.LookupPrincipals(
            pb.LookupPrincipalsRequest(
                organization_id=SQC, subject="profil", right=pb.RIGHT_READ, consistency=consistency()
            )
        ),
        "LookupOrganizations": lambda s: s.LookupOrganizations(
            pb.LookupOrganizationsRequest(
                principal_id=PR, subject="profil", right=pb.RIGHT_READ, consistency=consistency()
            )
        ),
        "GetCatalogue": lambda s: s.GetCatalogue(pb.GetCatalogueRequest(consistency=consistency())),
        "ListClients": lambda s: s.ListClients(
            pb.ListClientsRequest(actor_id=PR, organization_id=SQC, consistency=consistency())
        ),
    }


def stub(server: Running) -> authz_pb2_grpc.AuthzServiceStub:
    return authz_pb2_grpc.AuthzServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.app.port}"))


def two_servers(start_server: Callable[..., Running]) -> tuple[Running, Running]:
    """A writer, and a reader on the same database whose follower polls rarely: it stays behind."""
    writer = start_server()
    reader = start_server(writer.app.settings.database_url, demo=False, follow_poll_seconds=3600.0)
    return writer, reader


def write(server: Running, n: int) -> str:
    """One write on `server`; its revision token."""
    return server.client.update_contact(PR, SQC, LUC, phone=f"+1 514 555-{n:04d}", attest=True).revision


def test_every_read_fully_consistent_without_deadline_answers(start_server: Callable[..., Running]) -> None:
    writer, reader = two_servers(start_server)
    raw = stub(reader)
    for n, (name, call) in enumerate(reads(lambda: pb.Consistency(fully_consistent=True)).items()):
        write(writer, n)
        before = reader.app.engine.revision
        call(raw)  # no deadline: would raise grpc.RpcError (INTERNAL) before
        assert reader.app.engine.revision > before, name  # it did catch up to the writer


def test_every_read_with_a_token_ahead_of_the_process_without_deadline_answers(
    start_server: Callable[..., Running],
) -> None:
    writer, reader = two_servers(start_server)
    raw = stub(reader)
    latest = [""]  # the token of the newest write, read when each call is made
    for n, (name, call) in enumerate(reads(lambda: pb.Consistency(at_least_as_fresh=latest[0])).items()):
        latest[0] = write(writer, n)
        before = reader.app.engine.revision
        call(raw)
        assert reader.app.engine.revision > before, name


def test_a_read_with_no_deadline_waits_at_most_the_server_bound(start_server: Callable[..., Running]) -> None:
    """The catch-up is held (another pass in progress): the read gives up after
    `read_wait_seconds`, UNAVAILABLE, never INTERNAL and never forever."""
    server = start_server(read_wait_seconds=0.3)
    raw = stub(server)
    assert server.app.follower._pass.acquire(timeout=5)
    try:
        for name, call in reads(lambda: pb.Consistency(fully_consistent=True)).items():
            with pytest.raises(grpc.RpcError) as refused:
                call(raw)
            assert refused.value.code() is grpc.StatusCode.UNAVAILABLE, name
    finally:
        server.app.follower._pass.release()
