"""Domain errors, one class per status the contract names.

No gRPC import here: `authz.server.errors` maps each class to a status code, once.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AlreadyExists",
    "AuthzError",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "InvalidArgument",
    "InvalidLinkCode",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
]


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class AuthzError(Exception):
    """Base of every error a caller may see. The message is safe to show.

    `reason` is the stable UPPER_SNAKE_CASE word callers branch on (sent as google.rpc.ErrorInfo);
    each class has a default, and a raise site names a more precise one where callers need it.
    """

    default_reason = "ERROR"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason


class InvalidArgument(AuthzError):
    """Malformed input. Carries one violation per bad field (google.rpc.BadRequest)."""

    default_reason = "INVALID_ARGUMENT"

    def __init__(
        self, message: str, violations: list[FieldViolation] | None = None, *, reason: str | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.violations: list[FieldViolation] = list(violations or [])

    @classmethod
    def field(cls, field_path: str, description: str) -> InvalidArgument:
        return cls(f"{field_path}: {description}", [FieldViolation(field_path, description)])


class InvalidLinkCode(InvalidArgument):
    """Wrong, used or expired link code: one message for all three, so guesses learn nothing."""

    MESSAGE = "the link code is not valid (wrong, already used or expired)"

    def __init__(self) -> None:
        super().__init__(self.MESSAGE, [FieldViolation("code", "not a valid link code")], reason="INVALID_LINK_CODE")


class NotFound(AuthzError):
    default_reason = "NOT_FOUND"


class PermissionDenied(AuthzError):
    default_reason = "PERMISSION_DENIED"


class FailedPrecondition(AuthzError):
    default_reason = "FAILED_PRECONDITION"


class AlreadyExists(AuthzError):
    default_reason = "ALREADY_EXISTS"


class ResourceExhausted(AuthzError):
    default_reason = "RESOURCE_EXHAUSTED"


class Unauthenticated(AuthzError):
    default_reason = "UNAUTHENTICATED"


class Unavailable(AuthzError):
    default_reason = "UNAVAILABLE"


class DeadlineExceeded(AuthzError):
    default_reason = "DEADLINE_EXCEEDED"
