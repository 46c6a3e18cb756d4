"""Plain Python arguments -> request messages, shared by the sync and async clients.

Only programming errors are caught here (two grantees, no scope, a naive datetime...), with
``ValueError``; everything the server can judge (unknown ids, bad dates, missing
attestation) is left to the server and comes back as a typed ``AuthzClientError``.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Sequence
from typing import Any, TypeAlias

from google.protobuf import timestamp_pb2

from .v1 import authz_pb2

RightLike: TypeAlias = "authz_pb2.Right.ValueType | str"
"""A ``Right`` value, or its name: ``"read"``, ``"write"``, ``"RIGHT_READ"``..."""

RoleLike: TypeAlias = "authz_pb2.Role.ValueType | str"
"""A ``Role`` value, or its name: ``"dirigeant"``, ``"ROLE_REPRESENTANT"``..."""

SubjectRightLike: TypeAlias = "authz_pb2.SubjectRight | tuple[str, RightLike]"
"""A ``SubjectRight`` message or a ``(subject, right)`` pair."""

DateLike: TypeAlias = "_dt.date | str | None"
"""A ``datetime.date``, a ``YYYY-MM-DD`` string, or ``None`` for the server's default."""


def right_value(right: RightLike) -> authz_pb2.Right.ValueType:
    """A ``Right`` from its value or (case-insensitive) name, with or without the ``RIGHT_`` prefix."""
    if isinstance(right, str):
        name = right.strip().upper()
        if not name.startswith("RIGHT_"):
            name = "RIGHT_" + name
        try:
            return authz_pb2.Right.Value(name)
        except ValueError:
            raise ValueError(f"unknown right {right!r}") from None
    return right


def role_value(role: RoleLike) -> authz_pb2.Role.ValueType:
    """A ``Role`` from its value or (case-insensitive) name, with or without the ``ROLE_`` prefix."""
    if isinstance(role, str):
        name = role.strip().upper()
        if not name.startswith("ROLE_"):
            name = "ROLE_" + name
        try:
            return authz_pb2.Role.Value(name)
        except ValueError:
            raise ValueError(f"unknown role {role!r}") from None
    return role


def timestamp(value: _dt.datetime) -> timestamp_pb2.Timestamp:
    """A Timestamp from a timezone-aware datetime (a naive one is ambiguous, so refused)."""
    if not isinstance(value, _dt.datetime):
        raise ValueError(f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware, e.g. datetime.now(timezone.utc)")
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value.astimezone(_dt.UTC))
    return stamp


def date_text(value: DateLike, name: str) -> str:
    """``YYYY-MM-DD`` for a date, the string itself for a string, ``""`` for None."""
    if value is None:
        return ""
    if isinstance(value, _dt.datetime):
        raise ValueError(f"{name} must be a datetime.date or a YYYY-MM-DD string, not a datetime")
    if isinstance(value, _dt.date):
        return value.isoformat()
    if isinstance(value, str):
        return value
    raise ValueError(f"{name} must be a datetime.date or a YYYY-MM-DD string, got {type(value).__name__}")


def subject_rights(subjects: Iterable[SubjectRightLike]) -> list[authz_pb2.SubjectRight]:
    """``SubjectRight`` messages from messages or ``(subject, right)`` pairs."""
    if isinstance(subjects, str | bytes):
        raise ValueError("subjects must be a list of SubjectRight or (subject, right) pairs, not a string")
    result: list[authz_pb2.SubjectRight] = []
    for item in subjects:
        if isinstance(item, authz_pb2.SubjectRight):
            result.append(item)
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            result.append(authz_pb2.SubjectRight(subject=item[0], right=right_value(item[1])))
        else:
            raise ValueError(f"expected a SubjectRight or a (subject, right) pair, got {item!r}")
    return result


def strings(values: Sequence[str], name: str) -> list[str]:
    """A list of strings, refusing a bare string (which is a sequence of characters)."""
    if isinstance(values, str | bytes):
        raise ValueError(f"{name} must be a list of strings, not a single string")
    return list(values)


def attestation(attest: bool) -> authz_pb2.Attestation:
    """Both boxes ticked only when the caller explicitly attests; otherwise an empty one (refused)."""
    if attest is True:
        return authz_pb2.Attestation(authorizes_acting=True, changes_accurate=True)
    return authz_pb2.Attestation()


FULLY_CONSISTENT = "fully_consistent"  # as `consistency=`: at least as fresh as the store's newest write


def set_consistency(request: Any, consistency: str | None) -> Any:
    """``consistency``: None (answer from memory now), a write's ``revision`` (never older than it)
    or FULLY_CONSISTENT."""
    if consistency == FULLY_CONSISTENT:
        request.consistency.fully_consistent = True
    elif consistency:
        request.consistency.at_least_as_fresh = consistency
    return request


def check_request(
    principal_id: str,
    organization_id: str,
    subject: str,
    right: RightLike,
    *,
    at: _dt.datetime | None = None,
    explain: bool = False,
    consistency: str | None = None,
) -> authz_pb2.CheckAccessRequest:
    """A ``CheckAccessRequest``, e.g. to build the list given to ``batch_check``."""
    request = authz_pb2.CheckAccessRequest(
        principal_id=principal_id,
        organization_id=organization_id,
        subject=subject,
        right=right_value(right),
        explain=explain,
    )
    if at is not None:
        request.at.CopyFrom(timestamp(at))
    return set_consistency(request, consistency)  # type: ignore[no-any-return]


def batch_check_request(
    checks: Sequence[authz_pb2.CheckAccessRequest], consistency: str | None = None
) -> authz_pb2.BatchCheckAccessRequest:
    for check in checks:
        if not isinstance(check, authz_pb2.CheckAccessRequest):
            raise ValueError(f"batch_check takes CheckAccessRequest messages (see check_request), got {check!r}")
    return set_consistency(authz_pb2.BatchCheckAccessRequest(checks=checks), consistency)  # type: ignore[no-any-return]


def grant_relation_request(
    actor_id: str,
    organization_id: str,
    *,
    contact_id: str | None,
    new_contact: authz_pb2.NewContact | None,
    grantee_organization_id: str | None,
    target_organization_id: str,
    role: RoleLike,
    start_date: DateLike,
    end_date: DateLike,
    subjects: Iterable[SubjectRightLike],
    attest: bool,
    request_id: str,
) -> authz_pb2.GrantRelationRequest:
    given = [
        name
        for name, value in (
            ("contact_id", contact_id),
            ("new_contact", new_contact),
            ("grantee_organization_id", grantee_organization_id),
        )
        if value is not None
    ]
    if len(given) != 1:
        raise ValueError(
            "grant_relation needs exactly one grantee: contact_id, new_contact or grantee_organization_id"
            + (f" (got {', '.join(given)})" if given else "")
        )
    request = authz_pb2.GrantRelationRequest(
        actor_id=actor_id,
        organization_id=organization_id,
        target_organization_id=target_organization_id,
        role=role_value(role),
        start_date=date_text(start_date, "start_date"),
        end_date=date_text(end_date, "end_date"),
        subjects=subject_rights(subjects),
        attestation=attestation(attest),
        request_id=request_id,
    )
    if contact_id is not None:
        request.contact_id = contact_id
    elif grantee_organization_id is not None:
        request.grantee_organization_id = grantee_organization_id
    elif new_contact is not None:
        if not isinstance(new_contact, authz_pb2.NewContact):
            raise ValueError(f"new_contact must be a NewContact message, got {type(new_contact).__name__}")
        request.new_contact.SetInParent()  # an empty NewContact is still the chosen grantee
        request.new_contact.CopyFrom(new_contact)
    return request


def revoke_relation_request(
    actor_id: str,
    organization_id: str,
    *,
    contact_id: str | None,
    grantee_organization_id: str | None,
    all_relations: bool,
    relation_ids: Sequence[str] | None,
    relation_id: str | None,
    subjects: Sequence[str] | None,
    attest: bool,
    request_id: str,
) -> authz_pb2.RevokeRelationRequest:
    if contact_id is not None and grantee_organization_id is not None:
        raise ValueError("revoke_relation takes at most one grantee: contact_id or grantee_organization_id")
    if (relation_id is None) != (subjects is None):
        raise ValueError("revoking subjects needs both relation_id and subjects")
    scopes = [
        name
        for name, chosen in (
            ("all_relations", all_relations is True),
            ("relation_ids", relation_ids is not None),
            ("subjects", subjects is not None),
        )
        if chosen
    ]
    if len(scopes) != 1:
        raise ValueError(
            "revoke_relation needs exactly one scope: all_relations=True, relation_ids=[...], "
            "or relation_id=... with subjects=[...]" + (f" (got {', '.join(scopes)})" if scopes else "")
        )
    request = authz_pb2.RevokeRelationRequest(
        actor_id=actor_id,
        organization_id=organization_id,
        attestation=attestation(attest),
        request_id=request_id,
    )
    if contact_id is not None:
        request.contact_id = contact_id
    elif grantee_organization_id is not None:
        request.grantee_organization_id = grantee_organization_id
    if all_relations is True:
        request.all_relations = True
    elif relation_ids is not None:
        request.relations.SetInParent()  # an empty list is still the chosen scope
        request.relations.CopyFrom(authz_pb2.RelationIds(relation_ids=strings(relation_ids, "relation_ids")))
    elif subjects is not None and relation_id is not None:
        request.subjects.SetInParent()
        request.subjects.CopyFrom(
            authz_pb2.SubjectRevocation(relation_id=relation_id, subjects=strings(subjects, "subjects"))
        )
    return request


# -- the guide's other screens


def change_attestation(attest: bool) -> authz_pb2.Attestation:
    """The one box of the change, removal and link-code forms ("les modifications demandées sont exactes")."""
    return authz_pb2.Attestation(changes_accurate=attest is True)


PhoneLike: TypeAlias = "authz_pb2.Phone | str | tuple[str, str] | tuple[str, str, str]"
"""A ``Phone``, a number, ``(type, number)`` or ``(type, number, region)``."""


def relation_update(
    relation_id: str, *, end_date: DateLike = None, add_subjects: Iterable[SubjectRightLike] = ()
) -> authz_pb2.RelationUpdate:
    """One relation's change inside ``update_contact`` (what ``update_relation`` takes)."""
    return authz_pb2.RelationUpdate(
        relation_id=relation_id, end_date=date_text(end_date, "end_date"), add_subjects=subject_rights(add_subjects)
    )


def phone_messages(phones: Iterable[PhoneLike]) -> list[authz_pb2.Phone]:
    """``Phone`` messages from messages, numbers, or ``(type, number[, region])`` tuples."""
    if isinstance(phones, str | bytes):
        raise ValueError("phones must be a list of numbers, Phone messages or (type, number[, region]) tuples")
    result: list[authz_pb2.Phone] = []
    for item in phones:
        if isinstance(item, authz_pb2.Phone):
            result.append(item)
        elif isinstance(item, str):
            result.append(authz_pb2.Phone(number=item))
        elif isinstance(item, tuple) and len(item) in (2, 3) and all(isinstance(part, str) for part in item):
            result.append(authz_pb2.Phone(type=item[0], number=item[1], region=item[2] if len(item) == 3 else ""))
        else:
            raise ValueError(f"expected a Phone, a number or (type, number[, region]), got {item!r}")
    return result


def update_contact_request(
    actor_id: str,
    organization_id: str,
    contact_id: str,
    *,
    changes: dict[str, str | None],
    issue_link_code: bool,
    attest: bool,
    request_id: str,
    relation_updates: Iterable[authz_pb2.RelationUpdate] = (),
    phones: Iterable[PhoneLike] | None = None,
) -> authz_pb2.UpdateContactRequest:
    """The fields given (not None) change; the mask names exactly those (``phones`` when given:
    the list replaces every number). ``relation_updates`` change the contact's relations in the same write."""
    given = {name: value for name, value in changes.items() if value is not None}
    updates = list(relation_updates)
    for update in updates:
        if not isinstance(update, authz_pb2.RelationUpdate):
            raise ValueError(f"relation_updates takes RelationUpdate messages (see relation_update), got {update!r}")
    request = authz_pb2.UpdateContactRequest(
        actor_id=actor_id,
        organization_id=organization_id,
        contact_id=contact_id,
        issue_link_code=issue_link_code,
        attestation=change_attestation(attest),
        request_id=request_id,
        relation_updates=updates,
    )
    for name, value in given.items():
        setattr(request, name, value)
    request.update_mask.paths.extend(given)
    if phones is not None:
        request.phones.extend(phone_messages(phones))
        request.update_mask.paths.append("phones")
    return request


def update_relation_request(
    actor_id: str,
    organization_id: str,
    relation_id: str,
    *,
    end_date: DateLike,
    add_subjects: Iterable[SubjectRightLike],
    attest: bool,
    request_id: str,
) -> authz_pb2.UpdateRelationRequest:
    return authz_pb2.UpdateRelationRequest(
        actor_id=actor_id,
        organization_id=organization_id,
        relation_id=relation_id,
        end_date=date_text(end_date, "end_date"),
        add_subjects=subject_rights(add_subjects),
        attestation=change_attestation(attest),
        request_id=request_id,
    )


# -- the screens' catalogue and clients


def list_clients_request(
    actor_id: str, organization_id: str, *, page_size: int, page_token: str, consistency: str | None
) -> authz_pb2.ListClientsRequest:
    request = authz_pb2.ListClientsRequest(
        actor_id=actor_id, organization_id=organization_id, page_size=page_size, page_token=page_token
    )
    return set_consistency(request, consistency)  # type: ignore[no-any-return]
