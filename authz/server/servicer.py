"""AuthzService: proto in, command, proto out. Nothing else lives here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc

from authz.commands.authorizations import ListAuthorizations, ListAuthorizationsRequest
from authz.commands.base import Deps
from authz.commands.check import CheckAccess, CheckRequest
from authz.commands.contacts import ListContacts, ListContactsRequest
from authz.commands.grant import GrantRelation
from authz.commands.legacy import LinkLegacyAccess, LinkLegacyAccessRequest
from authz.commands.link_codes import IssueLinkCode, IssueLinkCodeRequest, RedeemLinkCode, RedeemLinkCodeRequest
from authz.commands.profiles import ListProfiles, ListProfilesRequest
from authz.commands.revoke import RevokeRelation
from authz.domain.ids import is_plain_id
from authz.engine.policy import Policy
from authz.server import convert
from authz.server.convert import ROLE_TO_PB, Ids
from authz.server.errors import handle_errors, within_deadline
from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc

__all__ = ["AuthzServicer"]

# Ids that need no normalization (nearly all): anything else goes through check_id.
_PLAIN_ID = is_plain_id


class AuthzServicer(authz_pb2_grpc.AuthzServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self._check = CheckAccess(deps.engine)
        self._grant = GrantRelation(deps)
        self._revoke = RevokeRelation(deps)
        self._issue = IssueLinkCode(deps)
        self._redeem = RedeemLinkCode(deps)
        self._legacy = LinkLegacyAccess(deps)
        self._profiles = ListProfiles(deps)
        self._contacts = ListContacts(deps)
        self._authorizations = ListAuthorizations(deps)

    # -- checks
    def _check_request(self, request: pb.CheckAccessRequest, ids: Ids, prefix: str) -> CheckRequest:
        principal = ids.required(f"{prefix}principal_id", request.principal_id)
        organization = ids.required(f"{prefix}organization_id", request.organization_id)
        policy = self.deps.engine.policy
        # A retired subject is known: the command answers "not allowed" (policy folder's retired.csv).
        if request.subject not in policy.subjects and request.subject not in policy.retired:
            ids.add(f"{prefix}subject", f"unknown subject {request.subject[:64]!r}")
        if request.right not in (pb.RIGHT_READ, pb.RIGHT_WRITE):
            ids.add(f"{prefix}right", "must be RIGHT_READ or RIGHT_WRITE")
        at = request.at.seconds + request.at.nanos / 1e9 if request.HasField("at") else self.deps.clock().timestamp()
        return CheckRequest(principal, organization, request.subject, request.right, at, request.explain)

    @staticmethod
    def _check_response(result: Any) -> pb.CheckAccessResponse:
        return pb.CheckAccessResponse(
            allowed=result.allowed,
            reason=result.reason,
            path=result.path,
            revision=result.revision,
            policy_hash=result.policy_hash,
        )

    def _plain_check(self, request: pb.CheckAccessRequest, policy: Policy) -> bool | None:
        """The hot path: a well-formed check without `explain`, straight to the engine.

        No intermediate objects, nothing logged. Anything else (a field to report, an
        explanation, a fault in the decision) returns None and takes the general path,
        which collects every violation, explains, and fails closed.
        """
        principal = request.principal_id
        organization = request.organization_id
        subject = request.subject
        right = request.right
        if (
            request.explain
            or not (right == pb.RIGHT_READ or right == pb.RIGHT_WRITE)
            or subject not in policy.subjects
            or _PLAIN_ID(principal) is None
            or _PLAIN_ID(organization) is None
        ):
            return None
        at = request.at.seconds + request.at.nanos / 1e9 if request.HasField("at") else self.deps.clock().timestamp()
        try:
            return self.deps.engine.check(principal, organization, subject, right, at)
        except Exception:  # the general path logs it and denies
            return None

    @handle_errors
    def CheckAccess(self, request: pb.CheckAccessRequest, context: grpc.ServicerContext) -> pb.CheckAccessResponse:
        engine = self.deps.engine
        revision, policy = engine.revision, engine.policy  # read before deciding, as the command does
        allowed = self._plain_check(request, policy)
        if allowed is not None:
            return pb.CheckAccessResponse(allowed=allowed, revision=str(revision), policy_hash=policy.content_hash)
        ids = Ids()
        check = self._check_request(request, ids, "")
        ids.done()
        return self._check_response(self._check.execute(check))

    @handle_errors
    def BatchCheckAccess(
        self, request: pb.BatchCheckAccessRequest, context: grpc.ServicerContext
    ) -> pb.BatchCheckAccessResponse:
        limit = self.deps.settings.max_batch_checks
        ids = Ids()
        if len(request.checks) > limit:
            ids.add("checks", f"at most {limit} checks per batch")
            ids.done()
        # One pass, in this thread: every plain item straight to the engine, answers added in
        # place; the batch takes the general path only if some item needs it (to report all
        # violations at once, or to explain).
        engine = self.deps.engine
        revision, policy = str(engine.revision), engine.policy
        response = pb.BatchCheckAccessResponse()
        add = response.results.add
        plain = self._plain_check
        for item in request.checks:
            allowed = plain(item, policy)
            if allowed is None:
                break
            add(allowed=allowed, revision=revision, policy_hash=policy.content_hash)
        else:
            return response
        checks = [self._check_request(item, ids, f"checks[{i}].") for i, item in enumerate(request.checks)]
        ids.done()
        execute = self._check.execute
        return pb.BatchCheckAccessResponse(results=[self._check_response(execute(check)) for check in checks])

    # -- writes
    @within_deadline
    @handle_errors
    def GrantRelation(
        self, request: pb.GrantRelationRequest, context: grpc.ServicerContext
    ) -> pb.GrantRelationResponse:
        result = self._grant.execute(convert.grant_request(request))
        return pb.GrantRelationResponse(
            relation_id=result.relation_id,
            contact_id=result.contact_id,
            link_code_sent=result.link_code_sent,
            revision=result.revision,
        )

    @within_deadline
    @handle_errors
    def RevokeRelation(
        self, request: pb.RevokeRelationRequest, context: grpc.ServicerContext
    ) -> pb.RevokeRelationResponse:
        result = self._revoke.execute(convert.revoke_request(request))
        return pb.RevokeRelationResponse(
            relations_ended=result.relations_ended, subjects_removed=result.subjects_removed, revision=result.revision
        )

    @within_deadline
    @handle_errors
    def IssueLinkCode(
        self, request: pb.IssueLinkCodeRequest, context: grpc.ServicerContext
    ) -> pb.IssueLinkCodeResponse:
        ids = Ids()
        command = IssueLinkCodeRequest(
            actor_id=ids.required("actor_id", request.actor_id),
            organization_id=ids.required("organization_id", request.organization_id),
            contact_id=ids.required("contact_id", request.contact_id),
            request_id=ids.optional("request_id", request.request_id),
        )
        ids.done()
        result = self._issue.execute(command)
        return pb.IssueLinkCodeResponse(expires_at=convert.timestamp(datetime.fromisoformat(result.expires_at)))

    @within_deadline
    @handle_errors
    def RedeemLinkCode(
        self, request: pb.RedeemLinkCodeRequest, context: grpc.ServicerContext
    ) -> pb.RedeemLinkCodeResponse:
        ids = Ids()
        account_id = ids.required("account_id", request.account_id)
        if not request.code:
            ids.add("code", "must not be empty")
        ids.text("code", request.code, 64)
        ids.done()
        result = self._redeem.execute(RedeemLinkCodeRequest(account_id, request.code))
        return pb.RedeemLinkCodeResponse(contact_id=result.contact_id, organization_id=result.organization_id)

    @within_deadline
    @handle_errors
    def LinkLegacyAccess(
        self, request: pb.LinkLegacyAccessRequest, context: grpc.ServicerContext
    ) -> pb.LinkLegacyAccessResponse:
        ids = Ids()
        account_id = ids.required("account_id", request.account_id)
        username = ids.text("legacy_username", request.legacy_username, 200)
        if not username:
            ids.add("legacy_username", "must not be empty")
        if not request.legacy_password:
            ids.add("legacy_password", "must not be empty")
        ids.text("legacy_password", request.legacy_password, 1024)
        ids.done()
        result = self._legacy.execute(LinkLegacyAccessRequest(account_id, username, request.legacy_password))
        return pb.LinkLegacyAccessResponse(contact_ids=result.contact_ids)

    # -- reads
    @handle_errors
    def ListProfiles(self, request: pb.ListProfilesRequest, context: grpc.ServicerContext) -> pb.ListProfilesResponse:
        ids = Ids()
        account_id = ids.required("account_id", request.account_id)
        ids.done()
        profiles = self._profiles.execute(ListProfilesRequest(account_id))
        return pb.ListProfilesResponse(
            profiles=[
                pb.Profile(
                    contact_id=p.contact_id,
                    organization_id=p.organization_id,
                    organization_name=p.organization_name,
                    role=ROLE_TO_PB[p.role],  # type: ignore[arg-type]
                    relation_id=p.relation_id,
                )
                for p in profiles
            ]
        )

    @handle_errors
    def ListContacts(self, request: pb.ListContactsRequest, context: grpc.ServicerContext) -> pb.ListContactsResponse:
        ids = Ids()
        command = ListContactsRequest(
            actor_id=ids.required("actor_id", request.actor_id),
            organization_id=ids.required("organization_id", request.organization_id),
            page_size=request.page_size,
            page_token=ids.text("page_token", request.page_token, 1024),
        )
        ids.done()
        result = self._contacts.execute(command)
        return pb.ListContactsResponse(
            contacts=[
                pb.ContactRow(
                    contact_id=row.contact_id,
                    display_name=row.display_name,
                    role=ROLE_TO_PB[row.role],  # type: ignore[arg-type]
                    organization_id=row.organization_id,
                    active=row.active,
                    relation_id=row.relation_id,
                    start_date=row.start_date,
                    end_date=row.end_date,
                    via_organization_id=row.via_organization_id,
                )
                for row in result.contacts
            ],
            next_page_token=result.next_page_token,
        )

    @handle_errors
    def ListAuthorizations(
        self, request: pb.ListAuthorizationsRequest, context: grpc.ServicerContext
    ) -> pb.ListAuthorizationsResponse:
        ids = Ids()
        command = ListAuthorizationsRequest(
            actor_id=ids.required("actor_id", request.actor_id),
            organization_id=ids.required("organization_id", request.organization_id),
            contact_id=ids.optional("contact_id", request.contact_id),
            page_size=request.page_size,
            page_token=ids.text("page_token", request.page_token, 1024),
        )
        ids.done()
        result = self._authorizations.execute(command)
        return pb.ListAuthorizationsResponse(
            authorizations=[
                pb.AuthorizationRow(
                    subject=row.subject,
                    right=int(row.right),  # type: ignore[arg-type]
                    organization_id=row.organization_id,
                    contact_id=row.contact_id,
                    role=ROLE_TO_PB[row.role],  # type: ignore[arg-type]
                    active=row.active,
                    relation_id=row.relation_id,
                    grantee_organization_id=row.grantee_organization_id,
                    via_organization_id=row.via_organization_id,
                )
                for row in result.authorizations
            ],
            next_page_token=result.next_page_token,
        )
