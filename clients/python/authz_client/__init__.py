"""Typed Python client of the authz service (package ``authz.v1``), sync and async.

    from authz_client import AuthzClient, Right

    with AuthzClient("authz:50051", token=service_token) as authz:
        if authz.allowed("C-1", "ORG-SQC", "rapport_mensuel", Right.RIGHT_WRITE):
            ...

Methods take plain Python values and return the protobuf response messages of
``authz.v1.authz_pb2``. A failed call raises an :class:`AuthzClientError` subclass chosen by
its status code; ``ValueError`` is raised, before any call, only for misuse of the client
(two grantees, no revocation scope, a naive datetime...).
"""

from authz.v1.authz_pb2 import (
    AuthorizationRow,
    CheckAccessRequest,
    CheckAccessResponse,
    ContactRow,
    NewContact,
    Profile,
    Right,
    Role,
    SubjectRight,
)

from ._requests import FULLY_CONSISTENT, DateLike, RightLike, RoleLike, SubjectRightLike, check_request
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

__all__ = [
    "DEFAULT_TIMEOUT",
    "FULLY_CONSISTENT",
    "AlreadyExistsError",
    "AsyncAuthzClient",
    "AuthorizationRow",
    "AuthzClient",
    "AuthzClientError",
    "CheckAccessRequest",
    "CheckAccessResponse",
    "ContactRow",
    "DateLike",
    "FailedPreconditionError",
    "InvalidArgumentError",
    "NewContact",
    "NotFoundError",
    "PermissionDeniedError",
    "Profile",
    "ResourceExhaustedError",
    "Right",
    "RightLike",
    "Role",
    "RoleLike",
    "SubjectRight",
    "SubjectRightLike",
    "UnauthenticatedError",
    "UnavailableError",
    "check_request",
]
