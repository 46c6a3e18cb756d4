"""Domain errors, one class per status the contract names.

No gRPC import here: `authz.server.errors` maps each class to a status code, once.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AlreadyExists",
    "AuthzError",
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
    """Base of every error a caller may see. The message is safe to show."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(AuthzError):
    """Malformed input. Carries one violation per bad field (google.rpc.BadRequest)."""

    def __init__(self, message: str, violations: list[FieldViolation] | None = None) -> None:
        super().__init__(message)
        self.violations: list[FieldViolation] = list(violations or [])

    @classmethod
    def field(cls, field_path: str, description: str) -> InvalidArgument:
        return cls(f"{field_path}: {description}", [FieldViolation(field_path, description)])


class InvalidLinkCode(InvalidArgument):
    """Wrong, used or expired link code: one message for all three, so guesses learn nothing."""

    MESSAGE = "the link code is not valid (wrong, already used or expired)"

    def __init__(self) -> None:
        super().__init__(self.MESSAGE, [FieldViolation("code", "not a valid link code")])


class NotFound(AuthzError):
    pass


class PermissionDenied(AuthzError):
    pass


class FailedPrecondition(AuthzError):
    pass


class AlreadyExists(AuthzError):
    pass


class ResourceExhausted(AuthzError):
    pass


class Unauthenticated(AuthzError):
    pass


class Unavailable(AuthzError):
    pass
