"""The screens' calls of the third round, sync and async: arguments map to fields, and an
error's ErrorInfo reason reaches the caller."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass

import grpc
import pytest
from authz_client import AsyncAuthzClient, AuthzClient, PermissionDeniedError, Right, relation_update
from authz_client.v1 import authz_pb2, authz_pb2_grpc
from fake_authz import FakeAuthz
from google.rpc import code_pb2, error_details_pb2, status_pb2  # type: ignore[import-untyped, unused-ignore]
from grpc_status import rpc_status


@dataclass
class ScreensApiFake(FakeAuthz):
    def GetCatalogue(
        self, request: authz_pb2.GetCatalogueRequest, context: grpc.ServicerContext
    ) -> authz_pb2.GetCatalogueResponse:
        self._enter("GetCatalogue", request, context)
        return authz_pb2.GetCatalogueResponse(
            subjects=[authz_pb2.CatalogueSubject(code="profil", label_fr="Profil", label_en="Profile")],
            policy_hash="h1",
        )

    def ListClients(
        self, request: authz_pb2.ListClientsRequest, context: grpc.ServicerContext
    ) -> authz_pb2.ListClientsResponse:
        self._enter("ListClients", request, context)
        if request.organization_id == "ORG-DENIED":
            status = status_pb2.Status(code=code_pb2.PERMISSION_DENIED, message="may not read")
            status.details.add().Pack(error_details_pb2.ErrorInfo(reason="NOT_A_READER", domain="authz.ccq.qc.ca"))
            context.abort_with_status(rpc_status.to_status(status))
        return authz_pb2.ListClientsResponse(clients=[authz_pb2.Client(organization_id="EMP-ABC")])

    def UpdateContact(
        self, request: authz_pb2.UpdateContactRequest, context: grpc.ServicerContext
    ) -> authz_pb2.UpdateContactResponse:
        self._enter("UpdateContact", request, context)
        return authz_pb2.UpdateContactResponse(changed_fields=list(request.update_mask.paths))

    def ListRequests(
        self, request: authz_pb2.ListRequestsRequest, context: grpc.ServicerContext
    ) -> authz_pb2.ListRequestsResponse:
        self._enter("ListRequests", request, context)
        return authz_pb2.ListRequestsResponse(requests=[authz_pb2.RequestRow(request_id="1", summary="s")])


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[ScreensApiFake, str]]:
    servicer = ScreensApiFake()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    authz_pb2_grpc.add_AuthzServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


def check_recorded(fake: ScreensApiFake) -> None:
    clients = fake.requests("ListClients")[0]
    assert (clients.actor_id, clients.organization_id, clients.page_size, clients.page_token) == ("C-1", "ORG", 5, "t")
    assert clients.consistency.fully_consistent
    update = fake.last("UpdateContact").request
    assert list(update.update_mask.paths) == ["email", "phones"]
    assert [(p.type, p.number, p.region) for p in update.phones] == [
        ("", "514 987-6543", ""),
        ("travail", "450 555 0199", ""),
        ("autre", "01 42 68 53 00", "FR"),
    ]
    (change,) = update.relation_updates
    assert (change.relation_id, change.end_date) == ("R-1", "2030-06-30")
    assert [(s.subject, s.right) for s in change.add_subjects] == [("profil", Right.RIGHT_READ)]
    assert update.attestation.changes_accurate
    assert fake.last("ListRequests").request.mine


PHONES = ["514 987-6543", ("travail", "450 555 0199"), ("autre", "01 42 68 53 00", "FR")]


def test_sync_client_maps_the_screens_calls(fake: tuple[ScreensApiFake, str]) -> None:
    servicer, target = fake
    servicer.reset()
    with AuthzClient(target) as client:
        assert client.get_catalogue().subjects[0].label_en == "Profile"
        listed = client.list_clients("C-1", "ORG", page_size=5, page_token="t", consistency="fully_consistent")
        assert [c.organization_id for c in listed.clients] == ["EMP-ABC"]
        client.update_contact(
            "C-1",
            "ORG",
            "C-2",
            email="g@example.org",
            phones=PHONES,
            relation_updates=[relation_update("R-1", end_date="2030-06-30", add_subjects=[("profil", "read")])],
            attest=True,
        )
        assert [r.summary for r in client.iter_requests("C-1", "ORG", mine=True)] == ["s"]
        with pytest.raises(PermissionDeniedError) as denied:
            client.list_clients("C-1", "ORG-DENIED")
        assert denied.value.reason == "NOT_A_READER"
        with pytest.raises(ValueError):
            client.update_contact("C-1", "ORG", "C-2", phones="514 987-6543")
    check_recorded(servicer)


def test_async_client_maps_the_screens_calls(fake: tuple[ScreensApiFake, str]) -> None:
    servicer, target = fake
    servicer.reset()

    async def main() -> None:
        async with AsyncAuthzClient(target) as client:
            assert (await client.get_catalogue()).policy_hash == "h1"
            await client.list_clients("C-1", "ORG", page_size=5, page_token="t", consistency="fully_consistent")
            await client.update_contact(
                "C-1",
                "ORG",
                "C-2",
                email="g@example.org",
                phones=PHONES,
                relation_updates=[relation_update("R-1", end_date="2030-06-30", add_subjects=[("profil", "read")])],
                attest=True,
            )
            assert [r.summary async for r in client.iter_requests("C-1", "ORG", mine=True)] == ["s"]
            with pytest.raises(PermissionDeniedError) as denied:
                await client.list_clients("C-1", "ORG-DENIED")
            assert denied.value.reason == "NOT_A_READER"

    asyncio.run(main())
    check_recorded(servicer)
