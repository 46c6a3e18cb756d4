"""Proto messages to command requests and back. Ids are validated and NFC-normalized here, once."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from authz.commands.base import Attestation
from authz.commands.grant import GrantRelationRequest, NewContactData
from authz.commands.revoke import RevokeRelationRequest
from authz.domain.ids import check_id
from authz.domain.model import Right, Role
from authz.errors import FieldViolation, InvalidArgument
from authz.v1 import authz_pb2 as pb

__all__ = [
    "ROLE_FROM_PB",
    "ROLE_TO_PB",
    "Ids",
    "grant_request",
    "revoke_request",
    "right_from_pb",
    "role_from_pb",
    "timestamp",
]

ROLE_FROM_PB: dict[int, Role] = {
    pb.ROLE_DIRIGEANT: Role.DIRIGEANT,
    pb.ROLE_REPRESENTANT: Role.REPRESENTANT,
    pb.ROLE_MEMBRE_DU_PERSONNEL: Role.MEMBRE_DU_PERSONNEL,
    pb.ROLE_PERSONNE_RESPONSABLE: Role.PERSONNE_RESPONSABLE,
    pb.ROLE_INDIVIDU_AUTORISE: Role.INDIVIDU_AUTORISE,
}
ROLE_TO_PB: dict[Role | None, int] = {role: value for value, role in ROLE_FROM_PB.items()}
ROLE_TO_PB[None] = pb.ROLE_UNSPECIFIED
MAX_TEXT = 1000


class Ids:
    """Collects every violation of a request before failing, so the caller sees them all."""

    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []

    def required(self, field_path: str, value: str) -> str:
        return check_id(field_path, value, self.violations)

    def optional(self, field_path: str, value: str) -> str:
        return check_id(field_path, value, self.violations) if value else ""

    def text(self, field_path: str, value: str, limit: int = MAX_TEXT) -> str:
        if len(value) > limit:
            self.violations.append(FieldViolation(field_path, f"must be at most {limit} characters"))
        return value

    def add(self, field_path: str, description: str) -> None:
        self.violations.append(FieldViolation(field_path, description))

    def done(self) -> None:
        if self.violations:
            summary = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
            raise InvalidArgument(f"invalid request: {summary}", self.violations)


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


def grant_request(request: pb.GrantRelationRequest) -> GrantRelationRequest:
    ids = Ids()
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
            first_name=ids.text("new_contact.first_name", c.first_name),
            last_name=ids.text("new_contact.last_name", c.last_name),
            email=ids.text("new_contact.email", c.email),
            language=ids.text("new_contact.language", c.language),
            phone=ids.text("new_contact.phone", c.phone),
        )
    target = ids.optional("target_organization_id", request.target_organization_id)
    role = role_from_pb(request.role, ids, required=False)
    subjects = []
    for index, item in enumerate(request.subjects):
        subjects.append((ids.text(f"subjects[{index}].subject", item.subject, 64), right_from_pb(item.right)))
    request_id = ids.optional("request_id", request.request_id)
    ids.text("start_date", request.start_date, 10)
    ids.text("end_date", request.end_date, 10)
    ids.done()
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


def revoke_request(request: pb.RevokeRelationRequest) -> RevokeRelationRequest:
    ids = Ids()
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
        subjects = tuple(ids.text(f"subjects.subjects[{i}]", s, 64) for i, s in enumerate(request.subjects.subjects))
    request_id = ids.optional("request_id", request.request_id)
    ids.done()
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
