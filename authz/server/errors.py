"""Domain errors to gRPC statuses, in one table, with google.rpc.BadRequest details."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar
from functools import wraps
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from authz import errors
from authz.calls import caller_name, deadline_scope

__all__ = [
    "ERROR_DOMAIN",
    "MAX_VIOLATIONS",
    "STATUS_OF",
    "DecodeErrorInterceptor",
    "abort_with",
    "handle_errors",
    "handle_stream_errors",
    "within_deadline",
]

log = logging.getLogger("authz.server")

ERROR_DOMAIN = "authz.ccq.qc.ca"

STATUS_OF: dict[type[errors.AuthzError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
}
# What an unexpected failure answers: no detail of it, a reason all the same.
_INTERNAL = "internal error; it was logged"


def _status_code(error: errors.AuthzError) -> grpc.StatusCode:
    for kind in type(error).__mro__:
        if kind in STATUS_OF:
            return STATUS_OF[kind]
    return grpc.StatusCode.INTERNAL


# What one error's details may carry: gRPC refuses trailers past 8 KB (and the caller's channel
# may refuse far less), so a batch of a thousand bad items reports the first ones and a count.
MAX_VIOLATIONS = 20
_MAX_DESCRIPTION = 200
_MAX_MESSAGE = 1000


def _capped(violations: list[errors.FieldViolation]) -> list[error_details_pb2.BadRequest.FieldViolation]:
    kept = [
        error_details_pb2.BadRequest.FieldViolation(field=v.field[:200], description=v.description[:_MAX_DESCRIPTION])
        for v in violations[:MAX_VIOLATIONS]
    ]
    if len(violations) > MAX_VIOLATIONS:
        kept.append(
            error_details_pb2.BadRequest.FieldViolation(
                field="...", description=f"{len(violations) - MAX_VIOLATIONS} more violations not listed"
            )
        )
    return kept


def to_status(error: errors.AuthzError) -> Any:
    code = _status_code(error)
    details = []
    if isinstance(error, errors.InvalidArgument):
        if error.violations:
            bad_request = error_details_pb2.BadRequest(field_violations=_capped(error.violations))
            packed = any_pb2.Any()
            packed.Pack(bad_request)
            details.append(packed)
    else:
        # Callers branch on the reason, never on the English message.
        info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN)
        packed = any_pb2.Any()
        packed.Pack(info)
        details.append(packed)
    message = error.message if len(error.message) <= _MAX_MESSAGE else error.message[: _MAX_MESSAGE - 1] + "…"
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=details)
    return rpc_status.to_status(status)


def abort_with(context: grpc.ServicerContext, error: errors.AuthzError) -> NoReturn:
    context.abort_with_status(to_status(error))
    raise AssertionError("unreachable")  # abort_with_status raises


F = TypeVar("F", bound=Callable[..., Any])

# Set by `within_deadline`, which wraps every write: a refused write is logged.
_WRITING: ContextVar[bool] = ContextVar("authz_writing", default=False)
_LOGGED_ID = 128
_LOGGED_REASON = 300


def _log_refused_write(rpc: str, request: Any, error: errors.AuthzError) -> None:
    """One line per refused write: which service, acting as whom, why. Never a secret: requests'
    codes and passwords are not logged, and error messages never hold them."""
    actor = str(getattr(request, "actor_id", "") or getattr(request, "account_id", ""))
    code = _status_code(error)
    level = (
        logging.WARNING
        if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.RESOURCE_EXHAUSTED)
        else logging.INFO
    )
    # %r: an id the caller wrote cannot forge a log line (it is quoted, its control characters escaped).
    log.log(
        level,
        "refused %s: caller=%r actor=%r status=%s reason=%r",
        rpc,
        caller_name() or "-",
        actor[:_LOGGED_ID],
        code.name,
        error.message[:_LOGGED_REASON],
    )


def handle_errors(method: F) -> F:
    """Turn domain errors into their status; anything else into INTERNAL, logged, with no detail."""

    @wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except errors.AuthzError as error:
            if _WRITING.get():
                _log_refused_write(method.__name__, request, error)
            abort_with(context, error)
        except Exception:
            log.exception("%s failed", method.__name__)
            abort_with(context, errors.AuthzError(_INTERNAL, reason="INTERNAL"))

    return wrapper  # type: ignore[return-value]


def handle_stream_errors(method: F) -> F:
    """`handle_errors` for a server-streaming handler (a generator)."""

    @wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            yield from method(self, request, context)
        except errors.AuthzError as error:
            abort_with(context, error)
        except Exception:
            log.exception("%s failed", method.__name__)
            abort_with(context, errors.AuthzError(_INTERNAL, reason="INTERNAL"))

    return wrapper  # type: ignore[return-value]


def within_deadline(method: F) -> F:
    """Carry the caller's deadline into the command (writes): no work starts after it, none commits after it.

    Goes outside `handle_errors`, so the deadline is set while the command runs.
    """

    @wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        remaining = context.time_remaining()
        if not context.is_active() or (remaining is not None and remaining <= 0):
            # The caller has given up already: doing the write now would only surprise them.
            abort_with(
                context,
                errors.DeadlineExceeded("the deadline passed before the call started", reason="DEADLINE_PASSED"),
            )
        writing = _WRITING.set(True)
        try:
            with deadline_scope(remaining):
                return method(self, request, context)
        finally:
            _WRITING.reset(writing)

    return wrapper  # type: ignore[return-value]


class _Undecodable:
    """What a request that could not be parsed becomes, so the handler can answer INVALID_ARGUMENT."""

    __slots__ = ()


_UNDECODABLE = _Undecodable()


class DecodeErrorInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """A request that cannot be deserialized is the caller's error: INVALID_ARGUMENT, not INTERNAL."""

    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        parse = handler.request_deserializer

        def tolerant(data: bytes) -> Any:
            try:
                return parse(data)
            except Exception:
                return _UNDECODABLE

        if handler.unary_stream is not None:  # Watch: the same answer before any item is sent
            streaming = handler.unary_stream

            def guarded_stream(request: Any, context: grpc.ServicerContext) -> Any:
                if request is _UNDECODABLE:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the request is not a valid message of this method")
                yield from streaming(request, context)

            return grpc.unary_stream_rpc_method_handler(
                guarded_stream, request_deserializer=tolerant, response_serializer=handler.response_serializer
            )
        if handler.unary_unary is None:
            return handler
        inner = handler.unary_unary

        def guarded(request: Any, context: grpc.ServicerContext) -> Any:
            if request is _UNDECODABLE:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the request is not a valid message of this method")
            return inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            guarded, request_deserializer=tolerant, response_serializer=handler.response_serializer
        )
