"""Typed exceptions raised by the authz clients, one per status code callers act on.

Every failed call raises an :class:`AuthzClientError` (or a subclass chosen by the status
code). ``field_violations`` carries the ``google.rpc.BadRequest`` details the server sends
with ``INVALID_ARGUMENT``, as ``(field, description)`` pairs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped, unused-ignore]
from grpc_status import rpc_status

__all__ = [
    "AlreadyExistsError",
    "AuthzClientError",
    "FailedPreconditionError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "UnauthenticatedError",
    "UnavailableError",
    "deadline_passed",
    "error_from_aio_rpc_error",
    "error_from_rpc_error",
]

_DETAILS_KEY = "grpc-status-details-bin"


class AuthzClientError(Exception):
    """A call to the authz service failed.

    Attributes:
        code: the gRPC status code of the failure.
        message: the status message sent by the server (or by gRPC itself).
        field_violations: ``(field, description)`` pairs from ``google.rpc.BadRequest``
            details, empty when the server sent none.
        reason: the stable ``google.rpc.ErrorInfo`` reason (e.g. ``"NOT_A_MANAGER"``, see the
            server's docs/ERRORS.md); empty when the server sent none (INVALID_ARGUMENT).
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        field_violations: Iterable[tuple[str, str]] = (),
        reason: str = "",
    ) -> None:
        self.code: grpc.StatusCode = code
        self.message: str = message
        self.field_violations: list[tuple[str, str]] = list(field_violations)
        self.reason: str = reason
        super().__init__(self._describe())

    def _describe(self) -> str:
        text = f"{self.code.name}: {self.message}"
        # The server's message often is the violation itself ("subject: unknown subject 'x'"):
        # only what it does not already say is added.
        extra = [f"{field}: {why}" for field, why in self.field_violations if f"{field}: {why}" not in self.message]
        if extra:
            text += " (" + "; ".join(extra) + ")"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, "
            f"field_violations={self.field_violations!r}, reason={self.reason!r})"
        )


class InvalidArgumentError(AuthzClientError):
    """``INVALID_ARGUMENT``: a malformed or missing field, or a wrong, used or expired link code."""


class NotFoundError(AuthzClientError):
    """``NOT_FOUND``: unknown organization, contact or relation."""


class PermissionDeniedError(AuthzClientError):
    """``PERMISSION_DENIED``: the actor may not manage this organization."""


class FailedPreconditionError(AuthzClientError):
    """``FAILED_PRECONDITION``: e.g. delegating more than the organization holds, inactive contact."""


class ResourceExhaustedError(AuthzClientError):
    """``RESOURCE_EXHAUSTED``: e.g. too many wrong link codes."""


class UnauthenticatedError(AuthzClientError):
    """``UNAUTHENTICATED``: the calling service has no valid credentials."""


class UnavailableError(AuthzClientError):
    """``UNAVAILABLE``: the server (or its store, for a write) cannot be reached; retrying may help."""


class AlreadyExistsError(AuthzClientError):
    """``ALREADY_EXISTS``."""


_BY_CODE: dict[grpc.StatusCode, type[AuthzClientError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
}


def deadline_passed(attempts: int) -> AuthzClientError:
    """The error of a call whose deadline passed between retries, before another attempt."""
    return AuthzClientError(
        grpc.StatusCode.DEADLINE_EXCEEDED, f"the deadline passed after {attempts} attempt(s), before another"
    )


def _make(code: grpc.StatusCode, message: str, status: status_pb2.Status | None) -> AuthzClientError:
    cls = _BY_CODE.get(code, AuthzClientError)
    return cls(code, message, _field_violations(status), _reason(status))


def _reason(status: status_pb2.Status | None) -> str:
    if status is None:
        return ""
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                return str(info.reason)
    return ""


def _field_violations(status: status_pb2.Status | None) -> list[tuple[str, str]]:
    if status is None:
        return []
    violations: list[tuple[str, str]] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            if detail.Unpack(bad_request):
                violations.extend((v.field, v.description) for v in bad_request.field_violations)
    return violations


def _code_and_message(error: Any) -> tuple[grpc.StatusCode, str]:
    # A grpc.RpcError raised by a call is also a grpc.Call; one raised by hand may not be.
    code = error.code() if callable(getattr(error, "code", None)) else None
    details = error.details() if callable(getattr(error, "details", None)) else None
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    return code, details if isinstance(details, str) else str(error)


def error_from_rpc_error(error: grpc.RpcError) -> AuthzClientError:
    """The typed exception for a failed call of a sync (``grpc.Channel``) stub."""
    code, message = _code_and_message(error)
    status: status_pb2.Status | None = None
    if callable(getattr(error, "trailing_metadata", None)):
        try:
            status = rpc_status.from_call(error)
        except Exception:  # undecodable or inconsistent details: keep the code and message
            status = None
    return _make(code, message, status)


def error_from_aio_rpc_error(error: grpc.RpcError) -> AuthzClientError:
    """The typed exception for a failed call of an async (``grpc.aio.Channel``) stub.

    ``grpc.aio.AioRpcError`` holds its trailing metadata already, so the
    ``grpc-status-details-bin`` entry is read from it directly.
    """
    code, message = _code_and_message(error)
    status: status_pb2.Status | None = None
    metadata = error.trailing_metadata() if callable(getattr(error, "trailing_metadata", None)) else None
    for key, value in metadata or ():
        if key == _DETAILS_KEY and isinstance(value, bytes):
            try:
                status = status_pb2.Status.FromString(value)
            except Exception:  # undecodable details: keep the code and message
                status = None
            break
    return _make(code, message, status)
