"""AuthzService: proto in, command, proto out. Conversions live in authz/server/convert.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from authz.calls import bounded_wait, caller_name
from authz.commands.accounts import watch_scope
from authz.commands.authorizations import ListAuthorizations
from authz.commands.base import Deps
from authz.commands.catalogue import GetCatalogue
from authz.commands.check import CheckAccess
from authz.commands.clients import ListClients
from authz.commands.contacts import GetContact, ListContacts
from authz.commands.grant import GrantRelation
from authz.commands.legacy import LinkLegacyAccess
from authz.commands.link_codes import IssueLinkCode, RedeemLinkCode
from authz.commands.lookups import LookupOrganizations, LookupPrincipals
from authz.commands.migration_issues import ListMigrationIssues, ResolveMigrationIssue
from authz.commands.profiles import ListProfiles
from authz.commands.requests import ListRequests
from authz.commands.revoke import RevokeRelation
from authz.commands.update_contact import UpdateContact
from authz.commands.update_relation import UpdateRelation
from authz.replication.reads import Freshness
from authz.replication.watch import WatchChanges
from authz.server import convert
from authz.server.convert import Ids
from authz.server.errors import handle_errors, handle_stream_errors, within_deadline
from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc

__all__ = ["AuthzServicer"]

# A read answer: every one carries the `revision` it was decided at.
_Answer = TypeVar("_Answer", bound=Any)


class AuthzServicer(authz_pb2_grpc.AuthzServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        if deps.tokens is None or deps.follower is None:
            raise ValueError("the servicer needs the revision tokens and the follower of its app (Deps)")
        self._tokens = deps.tokens
        self._fresh = Freshness(deps.engine, deps.follower)
        self._watch = WatchChanges(deps.follower.store, deps.follower, deps.settings)
        self._check = CheckAccess(deps.engine, self._tokens.token)
        self._grant = GrantRelation(deps)
        self._revoke = RevokeRelation(deps)
        self._issue = IssueLinkCode(deps)
        self._redeem = RedeemLinkCode(deps)
        self._legacy = LinkLegacyAccess(deps)
        self._profiles = ListProfiles(deps)
        self._contacts = ListContacts(deps)
        self._authorizations = ListAuthorizations(deps)
        self._get_contact = GetContact(deps)
        self._update_contact = UpdateContact(deps)
        self._update_relation = UpdateRelation(deps)
        self._requests = ListRequests(deps)
        self._migration_issues = ListMigrationIssues(deps)
        self._resolve_issue = ResolveMigrationIssue(deps)
        self._lookup_principals = LookupPrincipals(deps)
        self._lookup_organizations = LookupOrganizations(deps)
        # the screens' catalogue and clients
        self._catalogue = GetCatalogue(deps)
        self._clients = ListClients(deps)

    # -- checks
    @handle_errors
    def CheckAccess(self, request: pb.CheckAccessRequest, context: grpc.ServicerContext) -> pb.CheckAccessResponse:
        if request.HasField("consistency"):
            self._ensure(request.consistency, context)
        engine = self.deps.engine
        revision, compiled = engine.revision, engine.compiled  # read before deciding, as the command does
        if not request.explain:
            at = convert.instant(request, self.deps.clock)
            allowed = self._check.plain(
                request.principal_id, request.organization_id, request.subject, request.right, at, compiled
            )
            if allowed is not None:
                return pb.CheckAccessResponse(
                    allowed=allowed, revision=self._tokens.token(revision), policy_hash=compiled.policy.content_hash
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
        # The batch's and every item's own consistency are honoured before anything is decided, by
        # one catch-up to the freshest level any of them asks for (not one per item).
        asked = [convert.consistency(request.consistency, self._tokens)] if request.HasField("consistency") else []
        asked += [
            convert.consistency(item.consistency, self._tokens, f"checks[{i}].consistency")
            for i, item in enumerate(request.checks)
            if item.HasField("consistency")
        ]
        if asked:
            self._fresh.ensure_all(asked, self._read_wait(context))
        # One pass, in this thread: every plain item straight to the engine, answers added in
        # place; the batch takes the general path only if some item needs it (to report all
        # violations at once, or to explain).
        engine = self.deps.engine
        revision, compiled = self._tokens.token(engine.revision), engine.compiled
        policy = compiled.policy
        response = pb.BatchCheckAccessResponse(revision=revision)
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
            results=[convert.check_response(result) for result in self._check.execute_many(checks)], revision=revision
        )

    # -- writes
    @within_deadline
    @handle_errors
    def GrantRelation(
        self, request: pb.GrantRelationRequest, context: grpc.ServicerContext
    ) -> pb.GrantRelationResponse:
        found = convert.Ids()  # the edge's findings, refused by the command with its own
        return convert.grant_response(self._grant.execute(convert.grant_request(request, found), found))

    @within_deadline
    @handle_errors
    def RevokeRelation(
        self, request: pb.RevokeRelationRequest, context: grpc.ServicerContext
    ) -> pb.RevokeRelationResponse:
        found = convert.Ids()
        return convert.revoke_response(self._revoke.execute(convert.revoke_request(request, found), found))

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
        return self._read(
            request,
            context,
            lambda: convert.profiles_response(self._profiles.execute(convert.list_profiles_request(request))),
        )

    @handle_errors
    def ListContacts(self, request: pb.ListContactsRequest, context: grpc.ServicerContext) -> pb.ListContactsResponse:
        return self._read(
            request,
            context,
            lambda: convert.contacts_response(self._contacts.execute(convert.list_contacts_request(request))),
        )

    @handle_errors
    def ListAuthorizations(
        self, request: pb.ListAuthorizationsRequest, context: grpc.ServicerContext
    ) -> pb.ListAuthorizationsResponse:
        return self._read(
            request,
            context,
            lambda: convert.authorizations_response(
                self._authorizations.execute(convert.list_authorizations_request(request))
            ),
        )

    # -- the guide's other screens
    @handle_errors
    def GetContact(self, request: pb.GetContactRequest, context: grpc.ServicerContext) -> pb.Contact:
        return self._read(
            request,
            context,
            lambda: convert.contact_response(self._get_contact.execute(convert.get_contact_request(request))),
        )

    @within_deadline
    @handle_errors
    def UpdateContact(
        self, request: pb.UpdateContactRequest, context: grpc.ServicerContext
    ) -> pb.UpdateContactResponse:
        found = convert.Ids()
        command = convert.update_contact_request(request, found)
        return convert.update_contact_response(self._update_contact.execute(command, found))

    @within_deadline
    @handle_errors
    def UpdateRelation(
        self, request: pb.UpdateRelationRequest, context: grpc.ServicerContext
    ) -> pb.UpdateRelationResponse:
        found = convert.Ids()
        command = convert.update_relation_request(request, found)
        return convert.update_relation_response(self._update_relation.execute(command, found))

    @handle_errors
    def ListRequests(self, request: pb.ListRequestsRequest, context: grpc.ServicerContext) -> pb.ListRequestsResponse:
        return self._read(
            request,
            context,
            lambda: convert.requests_response(self._requests.execute(convert.list_requests_request(request))),
        )

    @handle_errors
    def ListMigrationIssues(
        self, request: pb.ListMigrationIssuesRequest, context: grpc.ServicerContext
    ) -> pb.ListMigrationIssuesResponse:
        return self._read(
            request,
            context,
            lambda: convert.migration_issues_response(
                self._migration_issues.execute(convert.list_migration_issues_request(request))
            ),
        )

    @within_deadline
    @handle_errors
    def ResolveMigrationIssue(
        self, request: pb.ResolveMigrationIssueRequest, context: grpc.ServicerContext
    ) -> pb.ResolveMigrationIssueResponse:
        return convert.resolve_migration_issue_response(
            self._resolve_issue.execute(convert.resolve_migration_issue_request(request))
        )

    # -- replicas
    def _read(self, request: Any, context: grpc.ServicerContext, answer: Callable[[], _Answer]) -> _Answer:
        """A read made fresh enough for the request's `consistency`, answered with the revision it was decided at."""
        revision = self._ensure(request.consistency, context)
        response = answer()
        response.revision = revision
        return response

    def _ensure(
        self, consistency: pb.Consistency, context: grpc.ServicerContext, field_path: str = "consistency"
    ) -> str:
        """Make this process fresh enough for the read (or raise); the token of the revision it reads at."""
        self._fresh.ensure(convert.consistency(consistency, self._tokens, field_path), self._read_wait(context))
        return self._tokens.token(self.deps.engine.revision)

    def _read_wait(self, context: grpc.ServicerContext) -> float:
        """How long a read may wait to be fresh enough: the caller's deadline, and never longer than
        the server's bound (a read with no deadline gets UNAVAILABLE after `read_wait_seconds`)."""
        return bounded_wait(context.time_remaining(), self.deps.settings.read_wait_seconds)

    @handle_stream_errors
    def Watch(self, request: pb.WatchRequest, context: grpc.ServicerContext) -> Iterator[pb.WatchResponse]:
        after = convert.watch_request(request, self._tokens)
        scope = watch_scope(self.deps, request.organization_ids)
        for item in self._watch.stream(after, context.is_active, context.cancel, scope, caller_name()):
            yield convert.watch_response(item, self._tokens)

    # -- lookups
    @handle_errors
    def LookupPrincipals(
        self, request: pb.LookupPrincipalsRequest, context: grpc.ServicerContext
    ) -> pb.LookupPrincipalsResponse:
        self._ensure(request.consistency, context)
        lookup = convert.lookup_principals_request(request, self.deps.engine.policy)
        result = self._lookup_principals.execute(lookup)
        response = convert.lookup_principals_response(result)
        response.revision = self._tokens.token(int(result.revision))  # decided at: a token like every read's
        return response

    @handle_errors
    def LookupOrganizations(
        self, request: pb.LookupOrganizationsRequest, context: grpc.ServicerContext
    ) -> pb.LookupOrganizationsResponse:
        self._ensure(request.consistency, context)
        lookup = convert.lookup_organizations_request(request, self.deps.engine.policy)
        result = self._lookup_organizations.execute(lookup)
        response = convert.lookup_organizations_response(result)
        response.revision = self._tokens.token(int(result.revision))
        return response

    # -- the screens' catalogue and clients
    @handle_errors
    def GetCatalogue(self, request: pb.GetCatalogueRequest, context: grpc.ServicerContext) -> pb.GetCatalogueResponse:
        return self._read(request, context, lambda: convert.catalogue_response(self._catalogue.execute()))

    @handle_errors
    def ListClients(self, request: pb.ListClientsRequest, context: grpc.ServicerContext) -> pb.ListClientsResponse:
        return self._read(
            request,
            context,
            lambda: convert.clients_response(self._clients.execute(convert.list_clients_request(request))),
        )
