"""The calls of the guide's other screens, sync and async: arguments map to fields."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass

import grpc
import pytest
from authz_client import AsyncAuthzClient, AuthzClient, Right
from authz_client.v1 import authz_pb2, authz_pb2_grpc
from fake_authz import FakeAuthz


@dataclass
class ScreensFake(FakeAuthz):
    """The shared fake, answering the new calls too."""

    def GetContact(self, request: authz_pb2.GetContactRequest, context: grpc.ServicerContext) -> authz_pb2.Contact:
        self._enter("GetContact", request, context)
        return authz_pb2.Contact(contact_id=request.contact_id, phones=[authz_pb2.Phone(type="cellulaire", number="1")])

    def UpdateContact(
        self, request: authz_pb2.UpdateContactRequest, context: grpc.ServicerContext
    ) -> authz_pb2.UpdateContactResponse:
        self._enter("UpdateContact", request, context)
        return authz_pb2.UpdateContactResponse(changed_fields=list(request.update_mask.paths), revision="9")

    def UpdateRelation(
        self, request: authz_pb2.UpdateRelationRequest, context: grpc.ServicerContext
    ) -> authz_pb2.UpdateRelationResponse:
        self._enter("UpdateRelation", request, context)
        return authz_pb2.UpdateRelationResponse(relation_id=request.relation_id, end_date=request.end_date)

    def ListRequests(
        self, request: authz_pb2.ListRequestsRequest, context: grpc.ServicerContext
    ) -> authz_pb2.ListRequestsResponse:
        self._enter("ListRequests", request, context)
        if request.page_token:
            return authz_pb2.ListRequestsResponse(requests=[authz_pb2.RequestRow(request_id="1")])
        return authz_pb2.ListRequestsResponse(requests=[authz_pb2.RequestRow(request_id="2")], next_page_token="p1")

    def ListMigrationIssues(
        self, request: authz_pb2.ListMigrationIssuesRequest, context: grpc.ServicerContext
    ) -> authz_pb2.ListMigrationIssuesResponse:
        self._enter("ListMigrationIssues", request, context)
        return authz_pb2.ListMigrationIssuesResponse(issues=[authz_pb2.MigrationIssue(issue_id="3")])

    def ResolveMigrationIssue(
        self, request: authz_pb2.ResolveMigrationIssueRequest, context: grpc.ServicerContext
    ) -> authz_pb2.ResolveMigrationIssueResponse:
        self._enter("ResolveMigrationIssue", request, context)
        return authz_pb2.ResolveMigrationIssueResponse(revision="10")


@pytest.fixture(scope="module")
def screens() -> Iterator[tuple[ScreensFake, str]]:
    servicer = ScreensFake()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    authz_pb2_grpc.add_AuthzServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


ACCURATE = authz_pb2.Attestation(changes_accurate=True)


def check_recorded(fake: ScreensFake) -> None:
    update = fake.last("UpdateContact").request
    assert list(update.update_mask.paths) == ["email", "phone_type"]  # only the fields given
    assert (update.email, update.phone_type, update.first_name) == ("g@example.org", "cellulaire", "")
    assert update.issue_link_code and update.attestation == ACCURATE and update.request_id == "req-1"
    relation = fake.last("UpdateRelation").request
    assert (relation.relation_id, relation.end_date, relation.attestation) == ("R-1", "2030-06-30", ACCURATE)
    assert [(s.subject, s.right) for s in relation.add_subjects] == [("profil", Right.RIGHT_WRITE)]
    issues = fake.last("ListMigrationIssues").request
    assert issues.include_resolved and issues.page_size == 5
    resolve = fake.last("ResolveMigrationIssue").request
    assert (resolve.issue_id, resolve.attestation) == ("3", ACCURATE)
    contacts = fake.last("ListContacts").request
    assert (contacts.contact_id, contacts.query) == ("C-2", "helene")
    legacy = fake.last("LinkLegacyAccess").request
    assert list(legacy.contact_ids) == ["C-DIR1"]


def test_sync_client_maps_the_new_calls(screens: tuple[ScreensFake, str]) -> None:
    fake, target = screens
    fake.reset()
    with AuthzClient(target) as client:
        contact = client.get_contact("C-1", "ORG", "C-2")
        assert contact.contact_id == "C-2" and contact.phones[0].type == "cellulaire"
        updated = client.update_contact(
            "C-1",
            "ORG",
            "C-2",
            email="g@example.org",
            phone_type="cellulaire",
            issue_link_code=True,
            attest=True,
            request_id="req-1",
        )
        assert list(updated.changed_fields) == ["email", "phone_type"]
        client.update_relation(
            "C-1", "ORG", "R-1", end_date=dt.date(2030, 6, 30), add_subjects=[("profil", "write")], attest=True
        )
        assert [row.request_id for row in client.iter_requests("C-1", "ORG")] == ["2", "1"]
        assert [
            i.issue_id for i in client.list_migration_issues("C-1", "ORG", include_resolved=True, page_size=5).issues
        ] == ["3"]
        assert client.resolve_migration_issue("C-1", "ORG", "3", attest=True).revision == "10"
        list(client.iter_contacts("C-1", "ORG", contact_id="C-2", query="helene"))
        client.link_legacy_access("A-1", "sqc-direction", "pw", contact_ids=["C-DIR1"])
        with pytest.raises(ValueError):
            client.link_legacy_access("A-1", "sqc-direction", "pw", contact_ids="C-DIR1")
    check_recorded(fake)


def test_async_client_maps_the_new_calls(screens: tuple[ScreensFake, str]) -> None:
    fake, target = screens
    fake.reset()

    async def main() -> None:
        async with AsyncAuthzClient(target) as client:
            assert (await client.get_contact("C-1", "ORG", "C-2")).contact_id == "C-2"
            await client.update_contact(
                "C-1",
                "ORG",
                "C-2",
                email="g@example.org",
                phone_type="cellulaire",
                issue_link_code=True,
                attest=True,
                request_id="req-1",
            )
            await client.update_relation(
                "C-1", "ORG", "R-1", end_date="2030-06-30", add_subjects=[("profil", Right.RIGHT_WRITE)], attest=True
            )
            assert [row.request_id async for row in client.iter_requests("C-1", "ORG")] == ["2", "1"]
            await client.list_migration_issues("C-1", "ORG", include_resolved=True, page_size=5)
            await client.resolve_migration_issue("C-1", "ORG", "3", attest=True)
            [row async for row in client.iter_contacts("C-1", "ORG", contact_id="C-2", query="helene")]
            await client.link_legacy_access("A-1", "sqc-direction", "pw", contact_ids=["C-DIR1"])

    asyncio.run(main())
    check_recorded(fake)
