"""An in-process fake of the authz service: records what the client sends, answers canned data.

Not the real server (written elsewhere, concurrently): just enough behaviour to test the
client's mapping of arguments, metadata, deadlines, paging and errors.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from authz_client.v1 import authz_pb2, authz_pb2_grpc
from google.protobuf import timestamp_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2  # type: ignore[import-untyped, unused-ignore]
from grpc_status import rpc_status

DETAILS_KEY = "grpc-status-details-bin"


@dataclass
class Recorded:
    method: str
    request: Any
    metadata: dict[str, str | bytes]
    time_remaining: float | None


@dataclass
class Failure:
    code: grpc.StatusCode
    message: str
    violations: Sequence[tuple[str, str]] = ()
    raw_details: bytes | None = None  # sent as grpc-status-details-bin instead of a proper Status
    times: int | None = None  # fail this many calls, then answer; None: fail every call


@dataclass
class FakeAuthz(authz_pb2_grpc.AuthzServiceServicer):
    calls: list[Recorded] = field(default_factory=list)
    failures: dict[str, Failure] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    contacts: list[authz_pb2.ContactRow] = field(
        default_factory=lambda: [
            authz_pb2.ContactRow(contact_id=f"C-{i}", display_name=f"Contact {i}", active=True) for i in range(1, 6)
        ]
    )
    authorizations: list[authz_pb2.AuthorizationRow] = field(
        default_factory=lambda: [
            authz_pb2.AuthorizationRow(subject=f"sujet_{i}", right=authz_pb2.RIGHT_READ, contact_id="C-1")
            for i in range(1, 6)
        ]
    )

    # -- test controls ---------------------------------------------------------------------

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()
            self.failures.clear()
            self.delays.clear()

    def fail(
        self,
        method: str,
        code: grpc.StatusCode,
        message: str,
        violations: Sequence[tuple[str, str]] = (),
        raw_details: bytes | None = None,
        times: int | None = None,
    ) -> None:
        self.failures[method] = Failure(code, message, violations, raw_details, times)

    def requests(self, method: str) -> list[Any]:
        with self.lock:
            return [call.request for call in self.calls if call.method == method]

    def last(self, method: str) -> Recorded:
        with self.lock:
            return [call for call in self.calls if call.method == method][-1]

    # -- shared handling -------------------------------------------------------------------

    def _enter(self, method: str, request: Any, context: grpc.ServicerContext) -> None:
        metadata = {key: value for key, value in context.invocation_metadata()}
        with self.lock:
            self.calls.append(Recorded(method, request, metadata, context.time_remaining()))
        if method in self.delays:
            time.sleep(self.delays[method])
        with self.lock:
            failure = self.failures.get(method)
            if failure is not None and failure.times is not None:
                if failure.times <= 0:
                    failure = None
                else:
                    failure.times -= 1
        if failure is not None:
            abort(context, failure)

    # -- the RPCs --------------------------------------------------------------------------

    def CheckAccess(
        self, request: authz_pb2.CheckAccessRequest, context: grpc.ServicerContext
    ) -> authz_pb2.CheckAccessResponse:
        self._enter("CheckAccess", request, context)
        return decide(request)

    def BatchCheckAccess(
        self, request: authz_pb2.BatchCheckAccessRequest, context: grpc.ServicerContext
    ) -> authz_pb2.BatchCheckAccessResponse:
        self._enter("BatchCheckAccess", request, context)
        return authz_pb2.BatchCheckAccessResponse(results=[decide(check) for check in request.checks])

    def GrantRelation(
        self, request: authz_pb2.GrantRelationRequest, context: grpc.ServicerContext
    ) -> authz_pb2.GrantRelationResponse:
        self._enter("GrantRelation", request, context)
        if not (request.attestation.authorizes_acting and request.attestation.changes_accurate):
            abort(
                context,
                Failure(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "the two attestations are required",
                    [
                        ("attestation.authorizes_acting", "must be true"),
                        ("attestation.changes_accurate", "must be true"),
                    ],
                ),
            )
        contact_id = request.contact_id or ("C-NEW" if request.HasField("new_contact") else "")
        return authz_pb2.GrantRelationResponse(
            relation_id="R-9",
            contact_id=contact_id,
            link_code_sent=request.HasField("new_contact"),
            revision="7",
        )

    def RevokeRelation(
        self, request: authz_pb2.RevokeRelationRequest, context: grpc.ServicerContext
    ) -> authz_pb2.RevokeRelationResponse:
        self._enter("RevokeRelation", request, context)
        return authz_pb2.RevokeRelationResponse(relations_ended=1, subjects_removed=2, revision="8")

    def IssueLinkCode(
        self, request: authz_pb2.IssueLinkCodeRequest, context: grpc.ServicerContext
    ) -> authz_pb2.IssueLinkCodeResponse:
        self._enter("IssueLinkCode", request, context)
        return authz_pb2.IssueLinkCodeResponse(expires_at=timestamp_pb2.Timestamp(seconds=1_800_000_000))

    def UpdateContact(
        self, request: authz_pb2.UpdateContactRequest, context: grpc.ServicerContext
    ) -> authz_pb2.UpdateContactResponse:
        self._enter("UpdateContact", request, context)
        return authz_pb2.UpdateContactResponse(changed_fields=["first_name"], revision="8")

    def UpdateRelation(
        self, request: authz_pb2.UpdateRelationRequest, context: grpc.ServicerContext
    ) -> authz_pb2.UpdateRelationResponse:
        self._enter("UpdateRelation", request, context)
        return authz_pb2.UpdateRelationResponse()

    def ResolveMigrationIssue(
        self, request: authz_pb2.ResolveMigrationIssueRequest, context: grpc.ServicerContext
    ) -> authz_pb2.ResolveMigrationIssueResponse:
        self._enter("ResolveMigrationIssue", request, context)
        return authz_pb2.ResolveMigrationIssueResponse()

    def RedeemLinkCode(
        self, request: authz_pb2.RedeemLinkCodeRequest, context: grpc.ServicerContext
    ) -> authz_pb2.RedeemLinkCodeResponse:
        self._enter("RedeemLinkCode", request, context)
        return authz_pb2.RedeemLinkCodeResponse(contact_id="C-1", organization_id="ORG-SQC")

    def LinkLegacyAccess(
        self, request: authz_pb2.LinkLegacyAccessRequest, context: grpc.ServicerContext
    ) -> authz_pb2.LinkLegacyAccessResponse:
        self._enter("LinkLegacyAccess", request, context)
        return authz_pb2.LinkLegacyAccessResponse(contact_ids=["C-1", "C-2"])

    def ListProfiles(
        self, request: authz_pb2.ListProfilesRequest, context: grpc.ServicerContext
    ) -> authz_pb2.ListProfilesResponse:
        self._enter("ListProfiles", request, context)
        return authz_pb2.ListProfilesResponse(
            profiles=[authz_pb2.Profile(contact_id="C-1", organization_id="ORG-SQC", role=authz_pb2.ROLE_DIRIGEANT)]
        )

    def ListContacts(
        self, request: authz_pb2.ListContactsRequest, context: grpc.ServicerContext
    ) -> authz_pb2.ListContactsResponse:
        self._enter("ListContacts", request, context)
        rows, token = page(self.contacts, request.page_size, request.page_token)
        return authz_pb2.ListContactsResponse(contacts=rows, next_page_token=token)

    def ListAuthorizations(
        self, request: authz_pb2.ListAuthorizationsRequest, context: grpc.ServicerContext
    ) -> authz_pb2.ListAuthorizationsResponse:
        self._enter("ListAuthorizations", request, context)
        rows, token = page(self.authorizations, request.page_size, request.page_token)
        return authz_pb2.ListAuthorizationsResponse(authorizations=rows, next_page_token=token)


def decide(request: authz_pb2.CheckAccessRequest) -> authz_pb2.CheckAccessResponse:
    """Allowed only on ``rapport_mensuel``; explains when asked."""
    allowed = request.subject == "rapport_mensuel" and request.right != authz_pb2.RIGHT_UNSPECIFIED
    if not request.explain:
        return authz_pb2.CheckAccessResponse(allowed=allowed, revision="5")
    return authz_pb2.CheckAccessResponse(
        allowed=allowed,
        reason="personne responsable" if allowed else "no relation",
        path=["R-1"] if allowed else [],
        revision="5",
    )


def page(rows: Sequence[Any], page_size: int, page_token: str) -> tuple[list[Any], str]:
    """Pages of ``page_size`` rows (2 when 0), tokens ``"p<offset>"``."""
    size = page_size or 2
    start = int(page_token[1:]) if page_token else 0
    end = start + size
    return list(rows[start:end]), (f"p{end}" if end < len(rows) else "")


def abort(context: grpc.ServicerContext, failure: Failure) -> None:
    if failure.raw_details is not None:
        context.set_trailing_metadata(((DETAILS_KEY, failure.raw_details),))
        context.abort(failure.code, failure.message)
    status = status_pb2.Status(code=failure.code.value[0], message=failure.message)
    if failure.violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=name, description=why)
                for name, why in failure.violations
            ]
        )
        status.details.add().Pack(bad_request)
    if status.code == code_pb2.OK:  # pragma: no cover - tests only configure failures
        raise AssertionError("a failure needs a non-OK code")
    context.abort_with_status(rpc_status.to_status(status))


@dataclass
class FakeServer:
    server: grpc.Server
    servicer: FakeAuthz
    target: str

    def stop(self) -> None:
        self.server.stop(grace=None)


def start_fake_server() -> FakeServer:
    servicer = FakeAuthz()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    authz_pb2_grpc.add_AuthzServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return FakeServer(server, servicer, f"127.0.0.1:{port}")
