"""The asynchronous client, over a ``grpc.aio.Channel``."""

from __future__ import annotations

import datetime as _dt
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Self

import grpc
import grpc.aio

from authz.v1 import authz_pb2, authz_pb2_grpc

from . import _requests as rq
from ._requests import DateLike, RightLike, RoleLike, SubjectRightLike
from .client import DEFAULT_TIMEOUT, call_metadata, check_timeout
from .errors import error_from_aio_rpc_error

__all__ = ["AsyncAuthzClient"]


class AsyncAuthzClient:
    """Calls the authz service from asyncio code; one method per RPC, plain Python arguments, protobuf responses.

    Give either ``target`` (``"host:port"``; the client opens the channel and ``close()``
    closes it) or ``channel`` (yours: ``close()`` leaves it open). ``token`` is sent as
    ``authorization: Bearer <token>`` on every call; ``timeout`` (seconds, ``None`` for
    none) is the deadline of every call. A failed call raises an
    :class:`~authz_client.AuthzClientError` subclass; a denied check is not an error.
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        channel: grpc.aio.Channel | None = None,
        token: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        if (target is None) == (channel is None):
            raise ValueError("give exactly one of target or channel")
        if channel is not None and credentials is not None:
            raise ValueError("credentials only apply to a channel the client opens from target")
        self._timeout = check_timeout(timeout)
        self._metadata = call_metadata(token)
        self._owns_channel = channel is None
        if channel is None:
            channel = (
                grpc.aio.insecure_channel(target)
                if credentials is None
                else grpc.aio.secure_channel(target, credentials)
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

    async def _call(self, method: Callable[..., Any], request: Any) -> Any:
        try:
            return await method(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise error_from_aio_rpc_error(error) from error

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
    ) -> authz_pb2.CheckAccessResponse:
        """May ``principal_id`` exercise ``right`` on ``subject`` of ``organization_id`` (at ``at``, default now)?"""
        request = rq.check_request(principal_id, organization_id, subject, right, at=at, explain=explain)
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
    ) -> bool:
        """``check(...).allowed``."""
        return (await self.check(principal_id, organization_id, subject, right, at=at)).allowed

    async def batch_check(self, checks: Sequence[authz_pb2.CheckAccessRequest]) -> list[authz_pb2.CheckAccessResponse]:
        """Many checks (build them with :func:`authz_client.check_request`); answers in the same order."""
        request = rq.batch_check_request(checks)
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
        response: authz_pb2.GrantRelationResponse = await self._call(self._stub.GrantRelation, request)
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
        response: authz_pb2.RevokeRelationResponse = await self._call(self._stub.RevokeRelation, request)
        return response

    # -- link codes and profiles ---------------------------------------------------------

    async def issue_link_code(
        self, actor_id: str, organization_id: str, contact_id: str, *, request_id: str = ""
    ) -> authz_pb2.IssueLinkCodeResponse:
        """Email a new one-time link code to ``contact_id``; the response holds its expiry, never the code."""
        request = authz_pb2.IssueLinkCodeRequest(
            actor_id=actor_id, organization_id=organization_id, contact_id=contact_id, request_id=request_id
        )
        response: authz_pb2.IssueLinkCodeResponse = await self._call(self._stub.IssueLinkCode, request)
        return response

    async def redeem_link_code(self, account_id: str, code: str) -> authz_pb2.RedeemLinkCodeResponse:
        """Link ``account_id`` to the contact the code was issued for."""
        request = authz_pb2.RedeemLinkCodeRequest(account_id=account_id, code=code)
        response: authz_pb2.RedeemLinkCodeResponse = await self._call(self._stub.RedeemLinkCode, request)
        return response

    async def link_legacy_access(
        self, account_id: str, legacy_username: str, legacy_password: str
    ) -> authz_pb2.LinkLegacyAccessResponse:
        """Link ``account_id`` using the legacy portal's credentials."""
        request = authz_pb2.LinkLegacyAccessRequest(
            account_id=account_id, legacy_username=legacy_username, legacy_password=legacy_password
        )
        response: authz_pb2.LinkLegacyAccessResponse = await self._call(self._stub.LinkLegacyAccess, request)
        return response

    async def list_profiles(self, account_id: str) -> authz_pb2.ListProfilesResponse:
        """The profiles ``account_id`` may act under."""
        request = authz_pb2.ListProfilesRequest(account_id=account_id)
        response: authz_pb2.ListProfilesResponse = await self._call(self._stub.ListProfiles, request)
        return response

    # -- listings ------------------------------------------------------------------------

    async def list_contacts(
        self, actor_id: str, organization_id: str, *, page_size: int = 0, page_token: str = ""
    ) -> authz_pb2.ListContactsResponse:
        """One page of the organization's contacts; see :meth:`iter_contacts` for all of them."""
        request = authz_pb2.ListContactsRequest(
            actor_id=actor_id, organization_id=organization_id, page_size=page_size, page_token=page_token
        )
        response: authz_pb2.ListContactsResponse = await self._call(self._stub.ListContacts, request)
        return response

    async def iter_contacts(
        self, actor_id: str, organization_id: str, *, page_size: int = 0
    ) -> AsyncIterator[authz_pb2.ContactRow]:
        """Every contact row, following ``next_page_token`` until it is empty."""
        page_token = ""
        while True:
            page = await self.list_contacts(actor_id, organization_id, page_size=page_size, page_token=page_token)
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
    ) -> authz_pb2.ListAuthorizationsResponse:
        """One page of the organization's authorizations (of ``contact_id`` only, if given)."""
        request = authz_pb2.ListAuthorizationsRequest(
            actor_id=actor_id,
            organization_id=organization_id,
            contact_id=contact_id,
            page_size=page_size,
            page_token=page_token,
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

    # -- lookups (issue 12) --------------------------------------------------------------

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
    ) -> authz_pb2.LookupPrincipalsResponse:
        """One page of the contacts CheckAccess would allow (``principal_ids``, in id order)."""
        request = authz_pb2.LookupPrincipalsRequest(
            organization_id=organization_id,
            subject=subject,
            right=rq.right_value(right),
            at=rq.timestamp(at) if at is not None else None,
            page_size=page_size,
            page_token=page_token,
            explain=explain,
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
    ) -> authz_pb2.LookupOrganizationsResponse:
        """One page of the organizations where CheckAccess would allow the contact (``organization_ids``)."""
        request = authz_pb2.LookupOrganizationsRequest(
            principal_id=principal_id,
            subject=subject,
            right=rq.right_value(right),
            at=rq.timestamp(at) if at is not None else None,
            page_size=page_size,
            page_token=page_token,
            explain=explain,
        )
        response: authz_pb2.LookupOrganizationsResponse = await self._call(self._stub.LookupOrganizations, request)
        return response
