"""Typed Python client of the authz service (package ``authz.v1``), sync and async.

    from authz_client import AuthzClient, Right

    with AuthzClient("authz:50051", token=service_token) as authz:
        if authz.allowed("C-1", "ORG-SQC", "rapport_mensuel", Right.RIGHT_WRITE):
            ...

Methods take plain Python values and return the protobuf response messages of
``authz_client.v1.authz_pb2`` (the package's own copy of the generated code). A failed call
raises an :class:`AuthzClientError` subclass chosen by its status code, after retries of
``UNAVAILABLE`` (:class:`RetryPolicy`); ``ValueError`` is raised, before any call, only for
misuse of the client (two grantees, no revocation scope, a naive datetime...).
"""

from ._connection import DEFAULT_RETRY, RetryPolicy, Tls
from ._requests import (
    FULLY_CONSISTENT,
    DateLike,
    PhoneLike,
    RightLike,
    RoleLike,
    SubjectRightLike,
    check_request,
    relation_update,
)
from .aio import AsyncAuthzClient
from .client import DEFAULT_TIMEOUT, AuthzClient
from .errors import (
    AlreadyExistsError,
    AuthzClientError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)
from .v1.authz_pb2 import (
    AuthorizationRow,
    CatalogueRole,
    CatalogueSubject,
    CheckAccessRequest,
    CheckAccessResponse,
    Contact,
    ContactRow,
    FieldChange,
    MigrationIssue,
    NewContact,
    Origin,
    Phone,
    Profile,
    RelationUpdate,
    RequestRow,
    Right,
    Role,
    SubjectRight,
)
from .v1.authz_pb2 import Client as ClientOrganization

__all__ = [
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUT",
    "FULLY_CONSISTENT",
    "AlreadyExistsError",
    "AsyncAuthzClient",
    "AuthorizationRow",
    "AuthzClient",
    "AuthzClientError",
    "CatalogueRole",
    "CatalogueSubject",
    "CheckAccessRequest",
    "CheckAccessResponse",
    "ClientOrganization",
    "Contact",
    "ContactRow",
    "DateLike",
    "FailedPreconditionError",
    "FieldChange",
    "InvalidArgumentError",
    "MigrationIssue",
    "NewContact",
    "NotFoundError",
    "Origin",
    "PermissionDeniedError",
    "Phone",
    "PhoneLike",
    "Profile",
    "RelationUpdate",
    "RequestRow",
    "ResourceExhaustedError",
    "RetryPolicy",
    "Right",
    "RightLike",
    "Role",
    "RoleLike",
    "SubjectRight",
    "SubjectRightLike",
    "Tls",
    "UnauthenticatedError",
    "UnavailableError",
    "check_request",
    "relation_update",
]
