"""AuthzService: proto in, command, proto out. Conversions live in authz/server/convert.py."""

from __future__ import annotations

import grpc

from authz.commands.authorizations import ListAuthorizations
from authz.commands.base import Deps
from authz.commands.check import CheckAccess
from authz.commands.contacts import ListContacts
from authz.commands.grant import GrantRelation
from authz.commands.legacy import LinkLegacyAccess
from authz.commands.link_codes import IssueLinkCode, RedeemLinkCode
from authz.commands.lookups import LookupOrganizations, LookupPrincipals, PageSigner
from authz.commands.profiles import ListProfiles
from authz.commands.revoke import RevokeRelation
from authz.server import convert
from authz.server.convert import Ids
from authz.server.errors import handle_errors, within_deadline
from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc

__all__ = ["AuthzServicer"]


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
        lookup_pages = PageSigner()  # one key: a token is valid for this server's whole life
        self._lookup_principals = LookupPrincipals(deps, lookup_pages)
        self._lookup_organizations = LookupOrganizations(deps, lookup_pages)

    # -- checks
    @handle_errors
    def CheckAccess(self, request: pb.CheckAccessRequest, context: grpc.ServicerContext) -> pb.CheckAccessResponse:
        engine = self.deps.engine
        revision, compiled = engine.revision, engine.compiled  # read before deciding, as the command does
        if not request.explain:
            at = convert.instant(request, self.deps.clock)
            allowed = self._check.plain(
                request.principal_id, request.organization_id, request.subject, request.right, at, compiled
            )
            if allowed is not None:
                return pb.CheckAccessResponse(
                    allowed=allowed, revision=str(revision), policy_hash=compiled.policy.content_hash
                )
        ids = Ids()
        check = convert.check_request(request, ids, "", compiled.policy, self.deps.clock)
        ids.done()
        return convert.check_response(self._check.execute(check))

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
        revision, compiled = str(engine.revision), engine.compiled
        policy = compiled.policy
        response = pb.BatchCheckAccessResponse()
        add = response.results.add
        plain = self._check.plain
        clock = self.deps.clock
        for item in request.checks:
            if item.explain:
                break
            allowed = plain(
                item.principal_id,
                item.organization_id,
                item.subject,
                item.right,
                convert.instant(item, clock),
                compiled,
            )
            if allowed is None:
                break
            add(allowed=allowed, revision=revision, policy_hash=policy.content_hash)
        else:
            return response
        checks = [
            convert.check_request(item, ids, f"checks[{i}].", policy, clock) for i, item in enumerate(request.checks)
        ]
        ids.done()
        return pb.BatchCheckAccessResponse(
            results=[convert.check_response(result) for result in self._check.execute_many(checks)]
        )

    # -- writes
    @within_deadline
    @handle_errors
    def GrantRelation(
        self, request: pb.GrantRelationRequest, context: grpc.ServicerContext
    ) -> pb.GrantRelationResponse:
        return convert.grant_response(self._grant.execute(convert.grant_request(request)))

    @within_deadline
    @handle_errors
    def RevokeRelation(
        self, request: pb.RevokeRelationRequest, context: grpc.ServicerContext
    ) -> pb.RevokeRelationResponse:
        return convert.revoke_response(self._revoke.execute(convert.revoke_request(request)))

    @within_deadline
    @handle_errors
    def IssueLinkCode(
        self, request: pb.IssueLinkCodeRequest, context: grpc.ServicerContext
    ) -> pb.IssueLinkCodeResponse:
        return convert.issue_link_code_response(self._issue.execute(convert.issue_link_code_request(request)))

    @within_deadline
    @handle_errors
    def RedeemLinkCode(
        self, request: pb.RedeemLinkCodeRequest, context: grpc.ServicerContext
    ) -> pb.RedeemLinkCodeResponse:
        return convert.redeem_response(self._redeem.execute(convert.redeem_request(request)))

    @within_deadline
    @handle_errors
    def LinkLegacyAccess(
        self, request: pb.LinkLegacyAccessRequest, context: grpc.ServicerContext
    ) -> pb.LinkLegacyAccessResponse:
        return convert.legacy_response(self._legacy.execute(convert.legacy_request(request)))

    # -- reads
    @handle_errors
    def ListProfiles(self, request: pb.ListProfilesRequest, context: grpc.ServicerContext) -> pb.ListProfilesResponse:
        return convert.profiles_response(self._profiles.execute(convert.list_profiles_request(request)))

    @handle_errors
    def ListContacts(self, request: pb.ListContactsRequest, context: grpc.ServicerContext) -> pb.ListContactsResponse:
        return convert.contacts_response(self._contacts.execute(convert.list_contacts_request(request)))

    @handle_errors
    def ListAuthorizations(
        self, request: pb.ListAuthorizationsRequest, context: grpc.ServicerContext
    ) -> pb.ListAuthorizationsResponse:
        return convert.authorizations_response(
            self._authorizations.execute(convert.list_authorizations_request(request))
        )

    # -- issue 12: lookups
    @handle_errors
    def LookupPrincipals(
        self, request: pb.LookupPrincipalsRequest, context: grpc.ServicerContext
    ) -> pb.LookupPrincipalsResponse:
        lookup = convert.lookup_principals_request(request, self.deps.engine.policy)
        return convert.lookup_principals_response(self._lookup_principals.execute(lookup))

    @handle_errors
    def LookupOrganizations(
        self, request: pb.LookupOrganizationsRequest, context: grpc.ServicerContext
    ) -> pb.LookupOrganizationsResponse:
        lookup = convert.lookup_organizations_request(request, self.deps.engine.policy)
        return convert.lookup_organizations_response(self._lookup_organizations.execute(lookup))
