"""The asynchronous client, over a ``grpc.aio.Channel``."""

from __future__ import annotations

import asyncio
import datetime as _dt
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Self

import grpc
import grpc.aio

from . import _requests as rq
from ._connection import DEFAULT_RETRY, RetryPolicy, Tls, channel_credentials
from ._requests import DateLike, RightLike, RoleLike, SubjectRightLike
from .client import DEFAULT_TIMEOUT, call_metadata, check_target, check_timeout
from .errors import deadline_passed, error_from_aio_rpc_error
from .v1 import authz_pb2, authz_pb2_grpc

__all__ = ["AsyncAuthzClient"]


class AsyncAuthzClient:
    """Calls the authz service from asyncio code; one method per RPC, plain Python arguments, protobuf responses.

    The same options as :class:`~authz_client.AuthzClient`: ``target`` or ``channel``,
    ``token``, ``tls``, ``timeout`` (every call's deadline, retries included) and ``retry``
    (``UNAVAILABLE`` retried on reads, and on writes with a ``request_id``). A failed call
    raises an :class:`~authz_client.AuthzClientError` subclass; a denied check is not an error.
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        channel: grpc.aio.Channel | None = None,
        token: str | None = None,
        tls: Tls | bool = False,
        timeout: float | None = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = DEFAULT_RETRY,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        check_target(target, channel, tls, credentials)
        self._timeout = check_timeout(timeout)
        self._metadata = call_metadata(token)
        self._retry = retry
        self._owns_channel = channel is None
        if channel is None:
            assert target is not None
            secure, options = channel_credentials(tls, credentials)
            channel = (
                grpc.aio.insecure_channel(target, options=options)
                if secure is None
                else grpc.aio.secure_channel(target, secure, options=options)
            )
        self._channel: grpc.aio.Channel = channel
        self._stub = authz_pb2_grpc.AuthzServiceStub(channel)

    # -- lifecycle -----------------------------------------------------------------------

    async def close(self) -> None:
        """Close the channel if the client opened it."""
        if self._owns_channel:
            await self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _call(self, method: Callable[..., Any], request: Any, *, retry: bool = True) -> Any:
        """One call, retried as the policy says when ``retry`` (reads; writes with a request id)."""
        policy = self._retry if retry else None
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        attempt = 1
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise deadline_passed(attempt - 1)
            try:
                return await method(request, timeout=remaining, metadata=self._metadata)
            except grpc.RpcError as error:
                if policy is None or error.code() not in policy.codes or policy.gives_up_after(attempt, deadline):
                    raise error_from_aio_rpc_error(error) from error
                pause = policy.pause_within(attempt, time.monotonic(), deadline)
                if pause is None:
                    raise error_from_aio_rpc_error(error) from error
                await asyncio.sleep(pause)
                attempt += 1

    # -- checks --------------------------------------------------------------------------

    async def check(
        self,
        principal_id: str,
        organization_id: str,
        subject: str,
        right: RightLike,
        *,
        at: _dt.datetime | None = None,
        explain: bool = False,
        consistency: str | None = None,
    ) -> authz_pb2.CheckAccessResponse:
        """May ``principal_id`` exercise ``right`` on ``subject`` of ``organization_id`` (at ``at``, default now)?"""
        request = rq.check_request(
            principal_id, organization_id, subject, right, at=at, explain=explain, consistency=consistency
        )
        response: authz_pb2.CheckAccessResponse = await self._call(self._stub.CheckAccess, request)
        return response

    async def allowed(
        self,
        principal_id: str,
        organization_id: str,
        subject: str,
        right: RightLike,
        *,
        at: _dt.datetime | None = None,
        consistency: str | None = None,
    ) -> bool:
        """``check(...).allowed``."""
        return (await self.check(principal_id, organization_id, subject, right, at=at, consistency=consistency)).allowed

    async def batch_check(
        self, checks: Sequence[authz_pb2.CheckAccessRequest], *, consistency: str | None = None
    ) -> list[authz_pb2.CheckAccessResponse]:
        """Many checks (build them with :func:`authz_client.check_request`); answers in the same order."""
        request = rq.batch_check_request(checks, consistency)
        response: authz_pb2.BatchCheckAccessResponse = await self._call(self._stub.BatchCheckAccess, request)
        return list(response.results)

    # -- writes --------------------------------------------------------------------------

    async def grant_relation(
        self,
        actor_id: str,
        organization_id: str,
        *,
        contact_id: str | None = None,
        new_contact: authz_pb2.NewContact | None = None,
        grantee_organization_id: str | None = None,
        target_organization_id: str = "",
        role: RoleLike = authz_pb2.ROLE_UNSPECIFIED,
        start_date: DateLike = None,
        end_date: DateLike = None,
        subjects: Iterable[SubjectRightLike] = (),
        attest: bool = False,
        request_id: str = "",
    ) -> authz_pb2.GrantRelationResponse:
        """Give a relation to exactly one grantee: ``contact_id``, ``new_contact`` or ``grantee_organization_id``.

        ``attest=True`` ticks both attestation boxes on the user's behalf; pass it only when
        the user did. Without it an empty attestation is sent and the server refuses.
        """
        request = rq.grant_relation_request(
            actor_id,
            organization_id,
            contact_id=contact_id,
            new_contact=new_contact,
            grantee_organization_id=grantee_organization_id,
            target_organization_id=target_organization_id,
            role=role,
            start_date=start_date,
            end_date=end_date,
            subjects=subjects,
            attest=attest,
            request_id=request_id,
        )
        response: authz_pb2.GrantRelationResponse = await self._call(
            self._stub.GrantRelation, request, retry=bool(request_id)
        )
        return response

    async def revoke_relation(
        self,
        actor_id: str,
        organization_id: str,
        *,
        contact_id: str | None = None,
        grantee_organization_id: str | None = None,
        all_relations: bool = False,
        relation_ids: Sequence[str] | None = None,
        relation_id: str | None = None,
        subjects: Sequence[str] | None = None,
        attest: bool = False,
        request_id: str = "",
    ) -> authz_pb2.RevokeRelationResponse:
        """End relations or remove subjects; exactly one scope.

        The scope is ``all_relations=True``, ``relation_ids=[...]``, or ``relation_id=...``
        with ``subjects=[...]``. ``attest`` works as in :meth:`grant_relation`.
        """
        request = rq.revoke_relation_request(
            actor_id,
            organization_id,
            contact_id=contact_id,
            grantee_organization_id=grantee_organization_id,
            all_relations=all_relations,
            relation_ids=relation_ids,
            relation_id=relation_id,
            subjects=subjects,
            attest=attest,
            request_id=request_id,
        )
        response: authz_pb2.RevokeRelationResponse = await self._call(
            self._stub.RevokeRelation, request, retry=bool(request_id)
        )
        return response

    # -- link codes and profiles ---------------------------------------------------------

    async def issue_link_code(
        self, actor_id: str, organization_id: str, contact_id: str, *, request_id: str = "", attest: bool = False
    ) -> authz_pb2.IssueLinkCodeResponse:
        """Email a new one-time link code to ``contact_id``; the response holds its expiry, never the code."""
        request = authz_pb2.IssueLinkCodeRequest(
            actor_id=actor_id,
            organization_id=organization_id,
            contact_id=contact_id,
            request_id=request_id,
            attestation=rq.change_attestation(attest),  # the form's box: without it the server refuses
        )
        response: authz_pb2.IssueLinkCodeResponse = await self._call(
            self._stub.IssueLinkCode, request, retry=bool(request_id)
        )
        return response

    async def watch(self, after_revision: str = "", *, resume: bool = True) -> AsyncIterator[authz_pb2.WatchResponse]:
        """As :meth:`AuthzClient.watch`: committed writes after ``after_revision``, resumed after a restart."""
        cursor = after_revision
        attempt = 1
        while True:
            call = self._stub.Watch(authz_pb2.WatchRequest(after_revision=cursor), metadata=self._metadata)
            try:
                async for answer in call:
                    cursor = answer.revision or cursor
                    attempt = 1
                    yield answer
                return
            except grpc.RpcError as error:
                policy = self._retry
                if not resume or policy is None or error.code() not in policy.codes:
                    raise error_from_aio_rpc_error(error) from error
                if policy.gives_up_after(attempt, None):
                    raise error_from_aio_rpc_error(error) from error
                await asyncio.sleep(policy.pause(attempt))
                attempt += 1
            finally:
                call.cancel()

    async def redeem_link_code(self, account_id: str, code: str) -> authz_pb2.RedeemLinkCodeResponse:
        """Link ``account_id`` to the contact the code was issued for."""
        request = authz_pb2.RedeemLinkCodeRequest(account_id=account_id, code=code)
        response: authz_pb2.RedeemLinkCodeResponse = await self._call(self._stub.RedeemLinkCode, request, retry=False)
        return response

    async def link_legacy_access(
        self, account_id: str, legacy_username: str, legacy_password: str, *, contact_ids: Sequence[str] = ()
    ) -> authz_pb2.LinkLegacyAccessResponse:
        """Link ``account_id`` using the legacy portal's credentials.

        A login the old system shared links only ``contact_ids``, the person's own files among
        those it maps to (optional when it maps to one).
        """
        request = authz_pb2.LinkLegacyAccessRequest(
            account_id=account_id,
            legacy_username=legacy_username,
            legacy_password=legacy_password,
            contact_ids=rq.strings(contact_ids, "contact_ids"),
        )
        response: authz_pb2.LinkLegacyAccessResponse = await self._call(
            self._stub.LinkLegacyAccess, request, retry=False
        )
        return response

    async def list_profiles(self, account_id: str, *, consistency: str | None = None) -> authz_pb2.ListProfilesResponse:
        """The profiles ``account_id`` may act under."""
        request = rq.set_consistency(authz_pb2.ListProfilesRequest(account_id=account_id), consistency)
        response: authz_pb2.ListProfilesResponse = await self._call(self._stub.ListProfiles, request)
        return response

    # -- listings ------------------------------------------------------------------------

    async def list_contacts(
        self,
        actor_id: str,
        organization_id: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        contact_id: str = "",
        query: str = "",
        consistency: str | None = None,
    ) -> authz_pb2.ListContactsResponse:
        """One page of the organization's contacts (of ``contact_id``, or whose name holds ``query``,
        accents and case aside); see :meth:`iter_contacts` for all of them."""
        request = rq.set_consistency(
            authz_pb2.ListContactsRequest(
                actor_id=actor_id,
                organization_id=organization_id,
                page_size=page_size,
                page_token=page_token,
                contact_id=contact_id,
                query=query,
            ),
            consistency,
        )
        response: authz_pb2.ListContactsResponse = await self._call(self._stub.ListContacts, request)
        return response

    async def iter_contacts(
        self, actor_id: str, organization_id: str, *, page_size: int = 0, contact_id: str = "", query: str = ""
    ) -> AsyncIterator[authz_pb2.ContactRow]:
        """Every contact row, following ``next_page_token`` until it is empty."""
        page_token = ""
        while True:
            page = await self.list_contacts(
                actor_id,
                organization_id,
                page_size=page_size,
                page_token=page_token,
                contact_id=contact_id,
                query=query,
            )
            for contact in page.contacts:
                yield contact
            if not page.next_page_token:
                return
            page_token = page.next_page_token

    async def list_authorizations(
        self,
        actor_id: str,
        organization_id: str,
        *,
        contact_id: str = "",
        page_size: int = 0,
        page_token: str = "",
        consistency: str | None = None,
    ) -> authz_pb2.ListAuthorizationsResponse:
        """One page of the organization's authorizations (of ``contact_id`` only, if given)."""
        request = rq.set_consistency(
            authz_pb2.ListAuthorizationsRequest(
                actor_id=actor_id,
                organization_id=organization_id,
                contact_id=contact_id,
                page_size=page_size,
                page_token=page_token,
            ),
            consistency,
        )
        response: authz_pb2.ListAuthorizationsResponse = await self._call(self._stub.ListAuthorizations, request)
        return response

    async def iter_authorizations(
        self, actor_id: str, organization_id: str, *, contact_id: str = "", page_size: int = 0
    ) -> AsyncIterator[authz_pb2.AuthorizationRow]:
        """Every authorization row, following ``next_page_token`` until it is empty."""
        page_token = ""
        while True:
            page = await self.list_authorizations(
                actor_id, organization_id, contact_id=contact_id, page_size=page_size, page_token=page_token
            )
            for authorization in page.authorizations:
                yield authorization
            if not page.next_page_token:
                return
            page_token = page.next_page_token

    # -- the guide's other screens ---------------------------------------------

    async def get_contact(
        self, actor_id: str, organization_id: str, contact_id: str, *, consistency: str | None = None
    ) -> authz_pb2.Contact:
        """A contact's details (phones with their type, language) and relations with the organization."""
        request = rq.set_consistency(
            authz_pb2.GetContactRequest(actor_id=actor_id, organization_id=organization_id, contact_id=contact_id),
            consistency,
        )
        response: authz_pb2.Contact = await self._call(self._stub.GetContact, request)
        return response

    async def update_contact(
        self,
        actor_id: str,
        organization_id: str,
        contact_id: str,
        *,
        first_name: str | None = None,
        last_name: str | None = None,
        email: str | None = None,
        language: str | None = None,
        phone: str | None = None,
        phone_type: str | None = None,
        issue_link_code: bool = False,
        attest: bool = False,
        request_id: str = "",
        relation_updates: Iterable[authz_pb2.RelationUpdate] = (),
        phones: Iterable[rq.PhoneLike] | None = None,
    ) -> authz_pb2.UpdateContactResponse:
        """Change the fields given (the update mask names them); the contact gets a confirmation email.

        ``issue_link_code=True`` also sends a new link code; ``attest=True`` ticks the form's box.
        ``phones`` replaces every number (principal first; each a number, ``(type, number)`` or
        ``(type, number, region)``); ``relation_updates`` (see ``relation_update``) change the
        contact's relations in the same write: one attestation, one audit entry, all or nothing.
        """
        changes = dict(
            first_name=first_name,
            last_name=last_name,
            email=email,
            language=language,
            phone=phone,
            phone_type=phone_type,
        )
        request = rq.update_contact_request(
            actor_id,
            organization_id,
            contact_id,
            changes=changes,
            issue_link_code=issue_link_code,
            attest=attest,
            request_id=request_id,
            relation_updates=relation_updates,
            phones=phones,
        )
        response: authz_pb2.UpdateContactResponse = await self._call(
            self._stub.UpdateContact, request, retry=bool(request_id)
        )
        return response

    async def update_relation(
        self,
        actor_id: str,
        organization_id: str,
        relation_id: str,
        *,
        end_date: DateLike = None,
        add_subjects: Iterable[SubjectRightLike] = (),
        attest: bool = False,
        request_id: str = "",
    ) -> authz_pb2.UpdateRelationResponse:
        """Move a relation's end date and/or add subjects to it in place."""
        request = rq.update_relation_request(
            actor_id,
            organization_id,
            relation_id,
            end_date=end_date,
            add_subjects=add_subjects,
            attest=attest,
            request_id=request_id,
        )
        response: authz_pb2.UpdateRelationResponse = await self._call(
            self._stub.UpdateRelation, request, retry=bool(request_id)
        )
        return response

    async def list_requests(
        self,
        actor_id: str,
        organization_id: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        consistency: str | None = None,
        mine: bool = False,
    ) -> authz_pb2.ListRequestsResponse:
        """ "Mes demandes": one page of the changes made for the organization, newest first.

        ``mine=True``: only the actor's own, which every active contact of the organization may read.
        """
        request = rq.set_consistency(
            authz_pb2.ListRequestsRequest(
                actor_id=actor_id,
                organization_id=organization_id,
                page_size=page_size,
                page_token=page_token,
                mine=mine,
            ),
            consistency,
        )
        response: authz_pb2.ListRequestsResponse = await self._call(self._stub.ListRequests, request)
        return response

    async def iter_requests(
        self, actor_id: str, organization_id: str, *, page_size: int = 0, mine: bool = False
    ) -> AsyncIterator[authz_pb2.RequestRow]:
        """Every change, newest first, following ``next_page_token`` until it is empty."""
        page_token = ""
        while True:
            page = await self.list_requests(
                actor_id, organization_id, page_size=page_size, page_token=page_token, mine=mine
            )
            for row in page.requests:
                yield row
            if not page.next_page_token:
                return
            page_token = page.next_page_token

    async def list_migration_issues(
        self,
        actor_id: str,
        organization_id: str,
        *,
        include_resolved: bool = False,
        page_size: int = 0,
        page_token: str = "",
        consistency: str | None = None,
    ) -> authz_pb2.ListMigrationIssuesResponse:
        """The legacy rows the migration could not establish for the organization (open ones by default)."""
        request = rq.set_consistency(
            authz_pb2.ListMigrationIssuesRequest(
                actor_id=actor_id,
                organization_id=organization_id,
                include_resolved=include_resolved,
                page_size=page_size,
                page_token=page_token,
            ),
            consistency,
        )
        response: authz_pb2.ListMigrationIssuesResponse = await self._call(self._stub.ListMigrationIssues, request)
        return response

    async def resolve_migration_issue(
        self, actor_id: str, organization_id: str, issue_id: str, *, attest: bool = False, request_id: str = ""
    ) -> authz_pb2.ResolveMigrationIssueResponse:
        """Mark a migration issue resolved ("rétablir ou valider")."""
        request = authz_pb2.ResolveMigrationIssueRequest(
            actor_id=actor_id,
            organization_id=organization_id,
            issue_id=issue_id,
            attestation=rq.change_attestation(attest),
            request_id=request_id,
        )
        response: authz_pb2.ResolveMigrationIssueResponse = await self._call(
            self._stub.ResolveMigrationIssue, request, retry=bool(request_id)
        )
        return response

    # -- lookups --------------------------------------------------------------

    async def lookup_principals(
        self,
        organization_id: str,
        subject: str,
        right: RightLike,
        *,
        at: _dt.datetime | None = None,
        page_size: int = 0,
        page_token: str = "",
        explain: bool = False,
        consistency: str | None = None,
    ) -> authz_pb2.LookupPrincipalsResponse:
        """One page of the contacts CheckAccess would allow (``principal_ids``, in id order)."""
        request = rq.set_consistency(
            authz_pb2.LookupPrincipalsRequest(
                organization_id=organization_id,
                subject=subject,
                right=rq.right_value(right),
                at=rq.timestamp(at) if at is not None else None,
                page_size=page_size,
                page_token=page_token,
                explain=explain,
            ),
            consistency,
        )
        response: authz_pb2.LookupPrincipalsResponse = await self._call(self._stub.LookupPrincipals, request)
        return response

    async def lookup_organizations(
        self,
        principal_id: str,
        subject: str,
        right: RightLike,
        *,
        at: _dt.datetime | None = None,
        page_size: int = 0,
        page_token: str = "",
        explain: bool = False,
        consistency: str | None = None,
    ) -> authz_pb2.LookupOrganizationsResponse:
        """One page of the organizations where CheckAccess would allow the contact (``organization_ids``)."""
        request = rq.set_consistency(
            authz_pb2.LookupOrganizationsRequest(
                principal_id=principal_id,
                subject=subject,
                right=rq.right_value(right),
                at=rq.timestamp(at) if at is not None else None,
                page_size=page_size,
                page_token=page_token,
                explain=explain,
            ),
            consistency,
        )
        response: authz_pb2.LookupOrganizationsResponse = await self._call(self._stub.LookupOrganizations, request)
        return response

    # -- the screens' catalogue and clients ----------------------------------------------

    async def get_catalogue(self, *, consistency: str | None = None) -> authz_pb2.GetCatalogueResponse:
        """The subjects and roles of the policy, with their French and English labels."""
        request = rq.set_consistency(authz_pb2.GetCatalogueRequest(), consistency)
        response: authz_pb2.GetCatalogueResponse = await self._call(self._stub.GetCatalogue, request)
        return response

    async def list_clients(
        self,
        actor_id: str,
        organization_id: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        consistency: str | None = None,
    ) -> authz_pb2.ListClientsResponse:
        """The organizations that authorize this one, with what each grants today (the delegation form's list)."""
        request = rq.list_clients_request(
            actor_id, organization_id, page_size=page_size, page_token=page_token, consistency=consistency
        )
        response: authz_pb2.ListClientsResponse = await self._call(self._stub.ListClients, request)
        return response
