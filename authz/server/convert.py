"""Proto messages to command requests and back, every one of them: the servicer only delegates.

Input rules are not written here: they live in authz/domain/validation.py and are called
here, at the edge, as they are by the commands and the import.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from authz.commands.authorizations import AuthorizationRow, ListAuthorizationsRequest, ListAuthorizationsResult, Origin
from authz.commands.base import Attestation
from authz.commands.catalogue import Catalogue
from authz.commands.check import CheckRequest, CheckResult
from authz.commands.clients import ListClientsRequest, ListClientsResult
from authz.commands.contacts import (
    ContactDetails,
    ContactRow,
    GetContactRequest,
    ListContactsRequest,
    ListContactsResult,
)
from authz.commands.forms import ADD_FORM, CHANGE_FORM, LINK_CODE_FORM, box_violations, refuse_if_any
from authz.commands.grant import GrantRelationRequest, GrantRelationResult, NewContactData
from authz.commands.legacy import LinkLegacyAccessRequest, LinkLegacyAccessResult
from authz.commands.link_codes import (
    IssueLinkCodeRequest,
    IssueLinkCodeResult,
    RedeemLinkCodeRequest,
    RedeemLinkCodeResult,
)
from authz.commands.lookups import LookupRequest, LookupResult
from authz.commands.migration_issues import (
    ListMigrationIssuesRequest,
    ListMigrationIssuesResult,
    ResolveMigrationIssueRequest,
    ResolveMigrationIssueResult,
)
from authz.commands.profiles import ListProfilesRequest, Profile
from authz.commands.requests import ListRequestsRequest, ListRequestsResult
from authz.commands.revoke import RevokeRelationRequest, RevokeRelationResult
from authz.commands.update_contact import (
    MASK_PATHS,
    MAX_RELATION_UPDATES,
    RelationUpdate,
    UpdateContactRequest,
    UpdateContactResult,
)
from authz.commands.update_relation import UpdateRelationRequest, UpdateRelationResult
from authz.domain.model import Right, Role
from authz.domain.phones import MAX_PHONES, PhoneNumber
from authz.domain.validation import (
    MAX_EMAIL,
    MAX_NAME,
    MAX_PASSWORD,
    MAX_PHONE,
    MAX_SUBJECT,
    MAX_TOKEN,
    MAX_USERNAME,
    Violations,
    instant_problem,
)
from authz.engine.policy import Policy
from authz.replication.reads import ReadConsistency
from authz.replication.tokens import TokenFormat
from authz.replication.watch import Checkpoint
from authz.store.changes import Change
from authz.store.interface import MigrationIssueRecord
from authz.v1 import authz_pb2 as pb

__all__ = [
    "ROLE_FROM_PB",
    "ROLE_TO_PB",
    "Ids",
    "authorizations_response",
    "catalogue_response",
    "check_request",
    "check_response",
    "clients_response",
    "consistency",
    "contact_response",
    "contacts_response",
    "get_contact_request",
    "grant_request",
    "grant_response",
    "issue_link_code_request",
    "issue_link_code_response",
    "legacy_request",
    "legacy_response",
    "list_authorizations_request",
    "list_clients_request",
    "list_contacts_request",
    "list_migration_issues_request",
    "list_profiles_request",
    "list_requests_request",
    "lookup_organizations_request",
    "lookup_organizations_response",
    "lookup_principals_request",
    "lookup_principals_response",
    "migration_issues_response",
    "profiles_response",
    "redeem_request",
    "redeem_response",
    "requests_response",
    "resolve_migration_issue_request",
    "resolve_migration_issue_response",
    "revoke_request",
    "revoke_response",
    "right_from_pb",
    "role_from_pb",
    "timestamp",
    "update_contact_request",
    "update_contact_response",
    "update_relation_request",
    "update_relation_response",
    "watch_request",
    "watch_response",
]

MAX_DESIGNATED = 100  # contacts one legacy login may be asked to link at once

ROLE_FROM_PB: dict[int, Role] = {
    pb.ROLE_DIRIGEANT: Role.DIRIGEANT,
    pb.ROLE_REPRESENTANT: Role.REPRESENTANT,
    pb.ROLE_MEMBRE_DU_PERSONNEL: Role.MEMBRE_DU_PERSONNEL,
    pb.ROLE_PERSONNE_RESPONSABLE: Role.PERSONNE_RESPONSABLE,
    pb.ROLE_INDIVIDU_AUTORISE: Role.INDIVIDU_AUTORISE,
}
ROLE_TO_PB: dict[Role | None, int] = {role: value for value, role in ROLE_FROM_PB.items()}
ROLE_TO_PB[None] = pb.ROLE_UNSPECIFIED


class Ids(Violations):
    """Collects every violation of a request before failing, so the caller sees them all."""

    def required(self, field_path: str, value: str) -> str:
        return self.id(field_path, value)

    def optional(self, field_path: str, value: str) -> str:
        return self.id(field_path, value, required=False)

    def nonempty(self, field_path: str, value: str, limit: int) -> str:
        if not value:
            self.add(field_path, "must not be empty")
        return self.text(field_path, value, limit)

    def done(self) -> None:
        refuse_if_any(self, "invalid request")


def _finish(ids: Ids, carried: bool, attestation: pb.Attestation, form: tuple[str, ...]) -> None:
    """End a write's conversion: carried on, the command refuses the findings with its own; here,
    a malformed request is refused with its form's boxes, so a caller learns every problem at once."""
    if carried:
        return
    if ids.items:
        box_violations(_attestation(attestation), form, ids)
    ids.done()


def role_from_pb(value: int, ids: Ids, field_path: str = "role", *, required: bool) -> Role | None:
    if value == pb.ROLE_UNSPECIFIED:
        if required:
            ids.add(field_path, "must be set")
        return None
    role = ROLE_FROM_PB.get(value)
    if role is None:
        ids.add(field_path, f"unknown role {value}")
    return role


def right_from_pb(value: int) -> Right:
    if value in (pb.RIGHT_READ, pb.RIGHT_WRITE):
        return Right(value)
    return Right.NONE


def timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def _attestation(message: pb.Attestation) -> Attestation:
    return Attestation(message.authorizes_acting, message.changes_accurate)


def grant_request(request: pb.GrantRelationRequest, carry: Ids | None = None) -> GrantRelationRequest:
    """`carry`: the edge's findings go on to the command, which adds its own and refuses them all at once."""
    ids = carry if carry is not None else Ids()
    actor_id = ids.required("actor_id", request.actor_id)
    organization_id = ids.required("organization_id", request.organization_id)
    grantee = request.WhichOneof("grantee")
    contact_id = ids.required("contact_id", request.contact_id) if grantee == "contact_id" else ""
    grantee_org = (
        ids.required("grantee_organization_id", request.grantee_organization_id)
        if grantee == "grantee_organization_id"
        else ""
    )
    if grantee is None:
        ids.add("grantee", "one of contact_id, new_contact, grantee_organization_id is required")
    new_contact = None
    if grantee == "new_contact":
        c = request.new_contact
        new_contact = NewContactData(
            first_name=ids.text("new_contact.first_name", c.first_name, MAX_NAME),
            last_name=ids.text("new_contact.last_name", c.last_name, MAX_NAME),
            email=ids.text("new_contact.email", c.email, MAX_EMAIL),
            language=ids.text("new_contact.language", c.language, 2),
            phone=ids.text("new_contact.phone", c.phone, MAX_PHONE),
            create_anyway=c.create_anyway,
        )
    target = ids.optional("target_organization_id", request.target_organization_id)
    role = role_from_pb(request.role, ids, required=False)
    subjects = []
    for index, item in enumerate(request.subjects):
        subjects.append((ids.text(f"subjects[{index}].subject", item.subject, MAX_SUBJECT), right_from_pb(item.right)))
    request_id = ids.optional("request_id", request.request_id)
    ids.text("start_date", request.start_date, 10)
    ids.text("end_date", request.end_date, 10)
    _finish(ids, carry is not None, request.attestation, ADD_FORM)
    return GrantRelationRequest(
        actor_id=actor_id,
        organization_id=organization_id,
        contact_id=contact_id,
        new_contact=new_contact,
        grantee_organization_id=grantee_org,
        target_organization_id=target,
        role=role,
        start_date=request.start_date,
        end_date=request.end_date,
        subjects=tuple(subjects),
        attestation=_attestation(request.attestation),
        request_id=request_id,
    )


def revoke_request(request: pb.RevokeRelationRequest, carry: Ids | None = None) -> RevokeRelationRequest:
    """`carry`: the edge's findings go on to the command, which adds its own and refuses them all at once."""
    ids = carry if carry is not None else Ids()
    actor_id = ids.required("actor_id", request.actor_id)
    organization_id = ids.required("organization_id", request.organization_id)
    grantee = request.WhichOneof("grantee")
    if grantee is None:
        ids.add("grantee", "one of contact_id, grantee_organization_id is required")
    contact_id = ids.required("contact_id", request.contact_id) if grantee == "contact_id" else ""
    grantee_org = (
        ids.required("grantee_organization_id", request.grantee_organization_id)
        if grantee == "grantee_organization_id"
        else ""
    )
    scope = request.WhichOneof("scope")
    relation_ids: tuple[str, ...] = ()
    subjects_relation_id = ""
    subjects: tuple[str, ...] = ()
    if scope is None:
        ids.add("scope", "one of all_relations, relations, subjects is required")
    elif scope == "all_relations" and not request.all_relations:
        ids.add("all_relations", "must be true when chosen")
    elif scope == "relations":
        if not request.relations.relation_ids:
            ids.add("relations.relation_ids", "name at least one relation")
        relation_ids = tuple(
            ids.required(f"relations.relation_ids[{i}]", value)
            for i, value in enumerate(request.relations.relation_ids)
        )
    elif scope == "subjects":
        subjects_relation_id = ids.required("subjects.relation_id", request.subjects.relation_id)
        subjects = tuple(
            ids.text(f"subjects.subjects[{i}]", s, MAX_SUBJECT) for i, s in enumerate(request.subjects.subjects)
        )
    request_id = ids.optional("request_id", request.request_id)
    _finish(ids, carry is not None, request.attestation, CHANGE_FORM)
    return RevokeRelationRequest(
        actor_id=actor_id,
        organization_id=organization_id,
        contact_id=contact_id,
        grantee_organization_id=grantee_org,
        all_relations=scope == "all_relations",
        relation_ids=relation_ids,
        subjects_relation_id=subjects_relation_id,
        subjects=subjects,
        attestation=_attestation(request.attestation),
        request_id=request_id,
    )


def grant_response(result: GrantRelationResult) -> pb.GrantRelationResponse:
    return pb.GrantRelationResponse(
        relation_id=result.relation_id,
        contact_id=result.contact_id,
        link_code_sent=result.link_code_sent,
        revision=result.revision,
    )


def revoke_response(result: RevokeRelationResult) -> pb.RevokeRelationResponse:
    return pb.RevokeRelationResponse(
        relations_ended=result.relations_ended, subjects_removed=result.subjects_removed, revision=result.revision
    )


# -- checks
def instant(request: pb.CheckAccessRequest, now: Callable[[], datetime]) -> float:
    """`at` as epoch seconds (unset: now). Range is the command's and `check_request`'s to judge."""
    if request.HasField("at"):
        if not 0 <= request.at.nanos < 1_000_000_000:
            # Outside every range: the hot path declines it and the general one reports `at`.
            return math.nan
        return request.at.seconds + request.at.nanos / 1e9
    return now().timestamp()


def check_request(
    request: pb.CheckAccessRequest, ids: Ids, prefix: str, policy: Policy, now: Callable[[], datetime]
) -> CheckRequest:
    principal = ids.required(f"{prefix}principal_id", request.principal_id)
    organization = ids.required(f"{prefix}organization_id", request.organization_id)
    # A retired subject is known: the command answers "not allowed" (the policy folder's retired.csv).
    if request.subject not in policy.subjects and request.subject not in policy.retired:
        ids.add(f"{prefix}subject", f"unknown subject {request.subject[:MAX_SUBJECT]!r}")
    if request.right not in (pb.RIGHT_READ, pb.RIGHT_WRITE):
        ids.add(f"{prefix}right", "must be RIGHT_READ or RIGHT_WRITE")
    if request.HasField("at"):
        ids.check(f"{prefix}at", instant_problem(request.at.seconds, request.at.nanos))
    return CheckRequest(principal, organization, request.subject, request.right, instant(request, now), request.explain)


def check_response(result: CheckResult) -> pb.CheckAccessResponse:
    return pb.CheckAccessResponse(
        allowed=result.allowed,
        reason=result.reason,
        path=result.path,
        revision=result.revision,
        policy_hash=result.policy_hash,
    )


# -- link codes and legacy access
def issue_link_code_request(request: pb.IssueLinkCodeRequest) -> IssueLinkCodeRequest:
    ids = Ids()
    command = IssueLinkCodeRequest(
        actor_id=ids.required("actor_id", request.actor_id),
        organization_id=ids.required("organization_id", request.organization_id),
        contact_id=ids.required("contact_id", request.contact_id),
        request_id=ids.optional("request_id", request.request_id),
        attestation=_attestation(request.attestation),
    )
    if ids.items:  # malformed: refused here, with the form's boxes (the command names them with the rest)
        box_violations(_attestation(request.attestation), LINK_CODE_FORM, ids)
    ids.done()
    return command


def issue_link_code_response(result: IssueLinkCodeResult) -> pb.IssueLinkCodeResponse:
    return pb.IssueLinkCodeResponse(
        expires_at=timestamp(datetime.fromisoformat(result.expires_at)), revision=result.revision
    )


def redeem_request(request: pb.RedeemLinkCodeRequest) -> RedeemLinkCodeRequest:
    ids = Ids()
    account_id = ids.required("account_id", request.account_id)
    code = ids.nonempty("code", request.code, 64)
    ids.done()
    return RedeemLinkCodeRequest(account_id, code)


def redeem_response(result: RedeemLinkCodeResult) -> pb.RedeemLinkCodeResponse:
    return pb.RedeemLinkCodeResponse(
        contact_id=result.contact_id,
        organization_id=result.organization_id,
        revision=result.revision,
        profiles=[_profile(p) for p in result.profiles],
    )


def legacy_request(request: pb.LinkLegacyAccessRequest) -> LinkLegacyAccessRequest:
    ids = Ids()
    account_id = ids.required("account_id", request.account_id)
    username = ids.nonempty("legacy_username", request.legacy_username, MAX_USERNAME)
    password = ids.nonempty("legacy_password", request.legacy_password, MAX_PASSWORD)
    if len(request.contact_ids) > MAX_DESIGNATED:
        ids.add("contact_ids", f"at most {MAX_DESIGNATED} contacts")
    designated = tuple(ids.required(f"contact_ids[{i}]", c) for i, c in enumerate(request.contact_ids[:MAX_DESIGNATED]))
    ids.done()
    return LinkLegacyAccessRequest(account_id, username, password, designated)


def legacy_response(result: LinkLegacyAccessResult) -> pb.LinkLegacyAccessResponse:
    return pb.LinkLegacyAccessResponse(
        contact_ids=result.contact_ids, revision=result.revision, profiles=[_profile(p) for p in result.profiles]
    )


# -- reads
def list_profiles_request(request: pb.ListProfilesRequest) -> ListProfilesRequest:
    ids = Ids()
    account_id = ids.required("account_id", request.account_id)
    ids.done()
    return ListProfilesRequest(account_id)


def _profile(p: Profile) -> pb.Profile:
    return pb.Profile(
        contact_id=p.contact_id,
        organization_id=p.organization_id,
        organization_name=p.organization_name,
        role=ROLE_TO_PB[p.role],  # type: ignore[arg-type]
        relation_id=p.relation_id,
        can_manage=p.can_manage,
    )


def profiles_response(profiles: list[Profile]) -> pb.ListProfilesResponse:
    return pb.ListProfilesResponse(profiles=[_profile(p) for p in profiles])


def list_contacts_request(request: pb.ListContactsRequest) -> ListContactsRequest:
    ids = Ids()
    command = ListContactsRequest(
        actor_id=ids.required("actor_id", request.actor_id),
        organization_id=ids.required("organization_id", request.organization_id),
        page_size=request.page_size,
        page_token=ids.text("page_token", request.page_token, MAX_TOKEN),
        contact_id=ids.optional("contact_id", request.contact_id),
        query=ids.text("query", request.query, MAX_NAME),
    )
    ids.done()
    return command


def _contact_row(row: ContactRow) -> pb.ContactRow:
    return pb.ContactRow(
        contact_id=row.contact_id,
        display_name=row.display_name,
        role=ROLE_TO_PB[row.role],  # type: ignore[arg-type]
        organization_id=row.organization_id,
        active=row.active,
        relation_id=row.relation_id,
        start_date=row.start_date,
        end_date=row.end_date,
        via_organization_id=row.via_organization_id,
        organization_name=row.organization_name,
    )


def contacts_response(result: ListContactsResult) -> pb.ListContactsResponse:
    return pb.ListContactsResponse(
        contacts=[_contact_row(row) for row in result.contacts], next_page_token=result.next_page_token
    )


def list_authorizations_request(request: pb.ListAuthorizationsRequest) -> ListAuthorizationsRequest:
    ids = Ids()
    command = ListAuthorizationsRequest(
        actor_id=ids.required("actor_id", request.actor_id),
        organization_id=ids.required("organization_id", request.organization_id),
        contact_id=ids.optional("contact_id", request.contact_id),
        page_size=request.page_size,
        page_token=ids.text("page_token", request.page_token, MAX_TOKEN),
    )
    ids.done()
    return command


def _authorization_row(row: AuthorizationRow) -> pb.AuthorizationRow:
    return pb.AuthorizationRow(
        subject=row.subject,
        right=int(row.right),  # type: ignore[arg-type]
        organization_id=row.organization_id,
        contact_id=row.contact_id,
        role=ROLE_TO_PB[row.role],  # type: ignore[arg-type]
        active=row.active,
        relation_id=row.relation_id,
        grantee_organization_id=row.grantee_organization_id,
        via_organization_id=row.via_organization_id,
        organization_name=row.organization_name,
        contact_name=row.contact_name,
        start_date=row.start_date,
        end_date=row.end_date,
        origin=ORIGIN_TO_PB[row.origin],  # type: ignore[arg-type]
        removable=row.removable,
    )


ORIGIN_TO_PB: dict[Origin, int] = {
    Origin.GRANTED: pb.ORIGIN_GRANTED,
    Origin.ROLE_DEFAULT: pb.ORIGIN_ROLE_DEFAULT,
    Origin.ORGANIZATION: pb.ORIGIN_ORGANIZATION,
    Origin.DELEGATED: pb.ORIGIN_DELEGATED,
}


def authorizations_response(result: ListAuthorizationsResult) -> pb.ListAuthorizationsResponse:
    return pb.ListAuthorizationsResponse(
        authorizations=[_authorization_row(row) for row in result.authorizations],
        next_page_token=result.next_page_token,
    )


# -- the guide's other screens
def get_contact_request(request: pb.GetContactRequest) -> GetContactRequest:
    ids = Ids()
    command = GetContactRequest(
        actor_id=ids.required("actor_id", request.actor_id),
        organization_id=ids.required("organization_id", request.organization_id),
        contact_id=ids.required("contact_id", request.contact_id),
    )
    ids.done()
    return command


def contact_response(details: ContactDetails) -> pb.Contact:
    contact = details.contact
    phones = [pb.Phone(type=p.type, number=p.number, region=p.region) for p in details.phones]
    return pb.Contact(
        contact_id=contact.id,
        first_name=contact.first_name,
        last_name=contact.last_name,
        email=contact.email,
        language=contact.language,
        phones=phones,
        relations=[_contact_row(row) for row in details.relations],
    )


def update_contact_request(request: pb.UpdateContactRequest, carry: Ids | None = None) -> UpdateContactRequest:
    """`carry`: the edge's findings go on to the command, which adds its own and refuses them all at once."""
    ids = carry if carry is not None else Ids()
    paths = list(request.update_mask.paths)
    if len(paths) > len(MASK_PATHS):
        ids.add("update_mask", f"at most {len(MASK_PATHS)} fields")
    command = UpdateContactRequest(
        actor_id=ids.required("actor_id", request.actor_id),
        organization_id=ids.required("organization_id", request.organization_id),
        contact_id=ids.required("contact_id", request.contact_id),
        update_mask=tuple(ids.text(f"update_mask.paths[{i}]", p, 64) for i, p in enumerate(paths[:10])),
        first_name=ids.text("first_name", request.first_name, MAX_NAME),
        last_name=ids.text("last_name", request.last_name, MAX_NAME),
        email=ids.text("email", request.email, MAX_EMAIL),
        language=ids.text("language", request.language, 2),
        phone=ids.text("phone", request.phone, MAX_PHONE),
        phone_type=ids.text("phone_type", request.phone_type, 20),
        issue_link_code=request.issue_link_code,
        attestation=_attestation(request.attestation),
        request_id=ids.optional("request_id", request.request_id),
        # Past the limits the command refuses the list; only the sizes of what it reads are bounded here.
        relation_updates=tuple(
            RelationUpdate(
                relation_id=ids.text(f"relation_updates[{i}].relation_id", u.relation_id, MAX_TOKEN),
                end_date=ids.text(f"relation_updates[{i}].end_date", u.end_date, 10),
                add_subjects=tuple(
                    (
                        ids.text(f"relation_updates[{i}].add_subjects[{j}].subject", s.subject, MAX_SUBJECT),
                        right_from_pb(s.right),
                    )
                    for j, s in enumerate(u.add_subjects)
                ),
            )
            for i, u in enumerate(request.relation_updates[: MAX_RELATION_UPDATES + 1])
        ),
        phones=tuple(
            PhoneNumber(
                ids.text(f"phones[{i}].type", p.type, 20),
                ids.text(f"phones[{i}].number", p.number, MAX_PHONE),
                ids.text(f"phones[{i}].region", p.region, 2),
            )
            for i, p in enumerate(request.phones[: MAX_PHONES + 1])
        ),
    )
    _finish(ids, carry is not None, request.attestation, CHANGE_FORM)
    return command


def update_contact_response(result: UpdateContactResult) -> pb.UpdateContactResponse:
    return pb.UpdateContactResponse(
        changed_fields=result.changed_fields,
        confirmation_sent=result.confirmation_sent,
        link_code_sent=result.link_code_sent,
        revision=result.revision,
    )


def update_relation_request(request: pb.UpdateRelationRequest, carry: Ids | None = None) -> UpdateRelationRequest:
    """`carry`: the edge's findings go on to the command, which adds its own and refuses them all at once."""
    ids = carry if carry is not None else Ids()
    subjects = [
        (ids.text(f"add_subjects[{i}].subject", item.subject, MAX_SUBJECT), right_from_pb(item.right))
        for i, item in enumerate(request.add_subjects)
    ]
    command = UpdateRelationRequest(
        actor_id=ids.required("actor_id", request.actor_id),
        organization_id=ids.required("organization_id", request.organization_id),
        relation_id=ids.required("relation_id", request.relation_id),
        end_date=ids.text("end_date", request.end_date, 10),
        add_subjects=tuple(subjects),
        attestation=_attestation(request.attestation),
        request_id=ids.optional("request_id", request.request_id),
    )
    _finish(ids, carry is not None, request.attestation, CHANGE_FORM)
    return command


def update_relation_response(result: UpdateRelationResult) -> pb.UpdateRelationResponse:
    return pb.UpdateRelationResponse(
        relation_id=result.relation_id,
        end_date=result.end_date,
        subjects_added=result.subjects_added,
        revision=result.revision,
    )


def list_requests_request(request: pb.ListRequestsRequest) -> ListRequestsRequest:
    ids = Ids()
    command = ListRequestsRequest(
        actor_id=ids.required("actor_id", request.actor_id),
        organization_id=ids.required("organization_id", request.organization_id),
        page_size=request.page_size,
        page_token=ids.text("page_token", request.page_token, MAX_TOKEN),
        mine=request.mine,
    )
    ids.done()
    return command


def requests_response(result: ListRequestsResult) -> pb.ListRequestsResponse:
    return pb.ListRequestsResponse(
        requests=[
            pb.RequestRow(
                request_id=row.id,
                at=timestamp(row.at),
                actor_id=row.actor_id,
                actor_name=row.actor_name,
                action=row.action,
                attestation=pb.Attestation(
                    authorizes_acting=row.attestation.get("authorizes_acting", False),
                    changes_accurate=row.attestation.get("changes_accurate", False),
                ),
                changes_json=row.changes_json,
                caller=row.caller,
                revision=row.revision,
                changes=[pb.FieldChange(field=c.field, before=c.before, after=c.after) for c in row.changes],
                summary=row.summary,
            )
            for row in result.requests
        ],
        next_page_token=result.next_page_token,
    )


def list_migration_issues_request(request: pb.ListMigrationIssuesRequest) -> ListMigrationIssuesRequest:
    ids = Ids()
    command = ListMigrationIssuesRequest(
        actor_id=ids.required("actor_id", request.actor_id),
        organization_id=ids.required("organization_id", request.organization_id),
        include_resolved=request.include_resolved,
        page_size=request.page_size,
        page_token=ids.text("page_token", request.page_token, MAX_TOKEN),
    )
    ids.done()
    return command


def _migration_issue(issue: MigrationIssueRecord) -> pb.MigrationIssue:
    message = pb.MigrationIssue(
        issue_id=str(issue.id),
        section=issue.section,
        row_id=issue.row_id or "",
        reason=issue.reason,
        row_json=json.dumps(issue.row, sort_keys=True, ensure_ascii=False, default=str),
        reported_at=timestamp(issue.reported_at),
        resolved=issue.resolved_at is not None,
        resolved_by=issue.resolved_by or "",
        resolution=issue.resolution or "",
    )
    if issue.resolved_at is not None:
        message.resolved_at.CopyFrom(timestamp(issue.resolved_at))
    return message


def migration_issues_response(result: ListMigrationIssuesResult) -> pb.ListMigrationIssuesResponse:
    return pb.ListMigrationIssuesResponse(
        issues=[_migration_issue(issue) for issue in result.issues], next_page_token=result.next_page_token
    )


def resolve_migration_issue_request(request: pb.ResolveMigrationIssueRequest) -> ResolveMigrationIssueRequest:
    ids = Ids()
    issue_id = 0
    if not request.issue_id.isascii() or not request.issue_id.isdigit() or len(request.issue_id) > 18:
        ids.add("issue_id", "must be the issue_id a ListMigrationIssues row gave")
    else:
        issue_id = int(request.issue_id)
    command = ResolveMigrationIssueRequest(
        actor_id=ids.required("actor_id", request.actor_id),
        organization_id=ids.required("organization_id", request.organization_id),
        issue_id=issue_id,
        attestation=_attestation(request.attestation),
        request_id=ids.optional("request_id", request.request_id),
    )
    if ids.items:  # malformed: refused here, with the form's boxes (the command names them with the rest)
        box_violations(_attestation(request.attestation), CHANGE_FORM, ids)
    ids.done()
    return command


def resolve_migration_issue_response(result: ResolveMigrationIssueResult) -> pb.ResolveMigrationIssueResponse:
    return pb.ResolveMigrationIssueResponse(revision=result.revision)


# -- replicas
def consistency(message: pb.Consistency, tokens: TokenFormat, field_path: str = "consistency") -> ReadConsistency:
    """A read's consistency; a token that is malformed or from another store is INVALID_ARGUMENT."""
    which = message.WhichOneof("requirement")
    if which == "at_least_as_fresh":
        path = f"{field_path}.at_least_as_fresh"
        return ReadConsistency(at_least=tokens.parse(message.at_least_as_fresh, path), field_path=path)
    if which == "fully_consistent" and message.fully_consistent:
        return ReadConsistency(fully=True, field_path=f"{field_path}.fully_consistent")
    return ReadConsistency()


def watch_request(request: pb.WatchRequest, tokens: TokenFormat) -> int | None:
    if not request.after_revision:
        return None
    return tokens.parse(request.after_revision, "after_revision")


def watch_response(item: Change | Checkpoint, tokens: TokenFormat) -> pb.WatchResponse:
    if isinstance(item, Checkpoint):
        return pb.WatchResponse(revision=tokens.token(item.revision), checkpoint=True)
    response = pb.WatchResponse(
        revision=tokens.token(item.revision),
        committed_at=timestamp(item.committed_at),
        operation=item.operation,
        reload=item.relations is None,
    )
    for relation in item.relations or ():
        changed = response.relations.add(
            relation_id=relation.id,
            kind=relation.kind.value,
            organization_id=relation.organization_id,
            contact_id=relation.contact_id or "",
            grantee_organization_id=relation.grantee_organization_id or "",
            via_organization_id=relation.via_organization_id or "",
            role=ROLE_TO_PB[relation.role],
            start_date=relation.start_date.isoformat(),
            end_date=relation.end_date.isoformat(),
            subjects=[
                pb.SubjectRight(subject=subject, right=int(right))  # type: ignore[arg-type]
                for subject, right in sorted(relation.subjects.items())
            ],
        )
        if relation.ended_at is not None:
            changed.ended_at.CopyFrom(timestamp(relation.ended_at))
    return response


# -- lookups
def _lookup_request(
    request: pb.LookupPrincipalsRequest | pb.LookupOrganizationsRequest, anchor_field: str, anchor: str, policy: Policy
) -> LookupRequest:
    # `consistency` is read by no one yet: every lookup answers from this process's memory
    # (minimize_latency), which one process keeps as fresh as its own committed writes.
    ids = Ids()
    anchor_id = ids.required(anchor_field, anchor)
    if request.subject not in policy.subjects:
        ids.add("subject", f"unknown subject {request.subject[:MAX_SUBJECT]!r}")
    if request.right not in (pb.RIGHT_READ, pb.RIGHT_WRITE):
        ids.add("right", "must be RIGHT_READ or RIGHT_WRITE")
    at = None
    if request.HasField("at"):
        ids.check("at", instant_problem(request.at.seconds, request.at.nanos))
        at = request.at.seconds + request.at.nanos / 1e9
    token = ids.text("page_token", request.page_token, MAX_TOKEN)
    ids.done()
    return LookupRequest(anchor_id, request.subject, request.right, at, request.page_size, token, request.explain)


def lookup_principals_request(request: pb.LookupPrincipalsRequest, policy: Policy) -> LookupRequest:
    return _lookup_request(request, "organization_id", request.organization_id, policy)


def lookup_organizations_request(request: pb.LookupOrganizationsRequest, policy: Policy) -> LookupRequest:
    return _lookup_request(request, "principal_id", request.principal_id, policy)


def _explanations(result: LookupResult) -> list[pb.LookupExplanation]:
    return [pb.LookupExplanation(id=e.id, reason=e.reason, path=e.path) for e in result.explanations]


def lookup_principals_response(result: LookupResult) -> pb.LookupPrincipalsResponse:
    return pb.LookupPrincipalsResponse(
        principal_ids=result.ids,
        next_page_token=result.next_page_token,
        revision=result.revision,
        explanations=_explanations(result),
    )


def lookup_organizations_response(result: LookupResult) -> pb.LookupOrganizationsResponse:
    return pb.LookupOrganizationsResponse(
        organization_ids=result.ids,
        next_page_token=result.next_page_token,
        revision=result.revision,
        explanations=_explanations(result),
    )


# -- the screens' catalogue and clients
def _subject_rights(grants: dict[str, Right]) -> list[pb.SubjectRight]:
    return [pb.SubjectRight(subject=s, right=int(r)) for s, r in sorted(grants.items())]  # type: ignore[arg-type]


def catalogue_response(catalogue: Catalogue) -> pb.GetCatalogueResponse:
    return pb.GetCatalogueResponse(
        subjects=[
            pb.CatalogueSubject(
                code=s.code, label_fr=s.label_fr, label_en=s.label_en, grantable=s.grantable, delegable=s.delegable
            )
            for s in catalogue.subjects
        ],
        roles=[
            pb.CatalogueRole(
                role=ROLE_TO_PB[r.role],  # type: ignore[arg-type]
                code=r.role.value,
                label_fr=r.label_fr,
                label_en=r.label_en,
                defaults=_subject_rights(r.defaults),
            )
            for r in catalogue.roles
        ],
        policy_hash=catalogue.policy_hash,
    )


def list_clients_request(request: pb.ListClientsRequest) -> ListClientsRequest:
    ids = Ids()
    command = ListClientsRequest(
        actor_id=ids.required("actor_id", request.actor_id),
        organization_id=ids.required("organization_id", request.organization_id),
        page_size=request.page_size,
        page_token=ids.text("page_token", request.page_token, MAX_TOKEN),
    )
    ids.done()
    return command


def clients_response(result: ListClientsResult) -> pb.ListClientsResponse:
    return pb.ListClientsResponse(
        clients=[
            pb.Client(
                organization_id=c.organization_id,
                organization_name=c.organization_name,
                subjects=_subject_rights(c.subjects),
                start_date=c.start_date.isoformat(),
                end_date=c.end_date.isoformat(),
            )
            for c in result.clients
        ],
        next_page_token=result.next_page_token,
    )
