"""The same service over HTTP/JSON: the unary calls of the Connect protocol (connectrpc.com/docs/protocol).

    curl -X POST -H 'Content-Type: application/json' \\
         -d '{"principalId": "C-PR", "organizationId": "ORG-SQC", "subject": "relations", "right": "RIGHT_WRITE"}' \\
         http://127.0.0.1:8080/authz.v1.AuthzService/CheckAccess

`POST /authz.v1.AuthzService/<Method>` with a JSON body (`application/json`, the proto3 JSON
mapping: camelCase or the proto's own field names, enums by name) or a binary one
(`application/proto`). The answer is the response message in the same encoding; an error is
Connect's JSON error, `{"code": "invalid_argument", "message": …, "details": [{"type":
"google.rpc.BadRequest", "value": <base64>, "debug": {…}}]}`, with the HTTP status Connect gives
that code.

Nothing here decides anything: every call runs through the gRPC server's own handler chain (its
interceptors: access log and metrics, the callers file, undecodable requests; then the servicer
and its error mapping) with a ServicerContext that records what the handler answers. The
commands, the callers file (`Authorization: Bearer <token>`, or the client certificate's common
name under mutual TLS) and the statuses with their details are therefore the gRPC face's own.

Why not the `connectrpc` package: its releases (0.9 to 0.13, beta) run on their own protobuf
runtime (`protobuf-py`), not the google.protobuf classes grpcio and the servicer use, so every call
would convert each message between two runtimes, a third generated copy of the proto would be
committed, and an ASGI or WSGI server would still be needed. This module is the Connect unary
protocol over the standard library's threading HTTP server, with google.protobuf's JSON mapping.

Watch, a server stream, is not served here: Connect streams need an enveloped body that curl and
plain HTTP clients cannot read unaided; it stays on gRPC.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NoReturn

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.message import Message
from google.rpc import status_pb2

from authz.config import ConfigError, Settings
from authz.server.auth import is_loopback
from authz.v1 import authz_pb2, authz_pb2_grpc

__all__ = ["CONNECT_CODES", "ConnectServer"]

log = logging.getLogger("authz.http")

_SERVICE = authz_pb2.DESCRIPTOR.services_by_name["AuthzService"]
_PREFIX = f"/{_SERVICE.full_name}/"
_DETAILS_KEY = "grpc-status-details-bin"

# Each gRPC status as Connect names it, with the HTTP status Connect answers it with.
CONNECT_CODES: dict[grpc.StatusCode, tuple[str, int]] = {
    grpc.StatusCode.CANCELLED: ("canceled", 499),
    grpc.StatusCode.UNKNOWN: ("unknown", 500),
    grpc.StatusCode.INVALID_ARGUMENT: ("invalid_argument", 400),
    grpc.StatusCode.DEADLINE_EXCEEDED: ("deadline_exceeded", 504),
    grpc.StatusCode.NOT_FOUND: ("not_found", 404),
    grpc.StatusCode.ALREADY_EXISTS: ("already_exists", 409),
    grpc.StatusCode.PERMISSION_DENIED: ("permission_denied", 403),
    grpc.StatusCode.RESOURCE_EXHAUSTED: ("resource_exhausted", 429),
    grpc.StatusCode.FAILED_PRECONDITION: ("failed_precondition", 400),
    grpc.StatusCode.ABORTED: ("aborted", 409),
    grpc.StatusCode.OUT_OF_RANGE: ("out_of_range", 400),
    grpc.StatusCode.UNIMPLEMENTED: ("unimplemented", 501),
    grpc.StatusCode.INTERNAL: ("internal", 500),
    grpc.StatusCode.UNAVAILABLE: ("unavailable", 503),
    grpc.StatusCode.DATA_LOSS: ("data_loss", 500),
    grpc.StatusCode.UNAUTHENTICATED: ("unauthenticated", 401),
}
_JSON = "application/json"
_PROTO = "application/proto"
# Headers that describe this HTTP message rather than the call: not handed on as call metadata.
_NOT_METADATA = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "content-length",
        "content-type",
        "content-encoding",
        "accept-encoding",
        "transfer-encoding",
        "te",
        "upgrade",
        "connect-protocol-version",
        "connect-timeout-ms",
    }
)
_MAX_TIMEOUT_DIGITS = 10  # Connect-Timeout-Ms is at most 10 digits
_IDLE_SECONDS = 60.0  # a kept-alive connection that sends nothing for this long is closed


class CallError(Exception):
    """A call's end in error, as the handler chain left it: the status, its message and details."""

    def __init__(self, code: grpc.StatusCode, message: str, details: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = list(details)


class _Aborted(Exception):
    """Raised by `abort`, as grpc's own context raises, so the handler stops right there."""


@dataclass(frozen=True)
class _CallDetails(grpc.HandlerCallDetails):  # type: ignore[misc]
    method: str
    invocation_metadata: tuple[tuple[str, str], ...]


class HttpServicerContext(grpc.ServicerContext):  # type: ignore[misc]
    """What a handler sees of one HTTP call: its metadata, peer, deadline, certificate; what it answers."""

    def __init__(
        self,
        metadata: tuple[tuple[str, str], ...],
        peer: str,
        deadline: float | None,
        common_name: str | None,
    ) -> None:
        self._metadata = metadata
        self._peer = peer
        self._deadline = deadline
        self._common_name = common_name
        self._code: grpc.StatusCode | None = None
        self._details = ""
        self._status_details: list[Any] = []
        self.initial_metadata: list[tuple[str, str]] = []
        self.trailers: list[tuple[str, str]] = []
        self._callbacks: list[Callable[[], None]] = []

    # -- what the call carries
    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def peer(self) -> str:
        return self._peer

    def peer_identities(self) -> list[bytes] | None:
        return [self._common_name.encode()] if self._common_name else None

    def peer_identity_key(self) -> str | None:
        return "x509_common_name" if self._common_name else None

    def auth_context(self) -> dict[str, list[bytes]]:
        # Only a certificate the TLS handshake verified against the client CA is named, as with gRPC.
        return {"x509_common_name": [self._common_name.encode()]} if self._common_name else {}

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def is_active(self) -> bool:
        return self._deadline is None or time.monotonic() < self._deadline

    def cancel(self) -> None:
        self._code = self._code or grpc.StatusCode.CANCELLED

    def add_callback(self, callback: Callable[[], None]) -> bool:
        self._callbacks.append(callback)
        return True

    def run_callbacks(self) -> None:
        for callback in self._callbacks:
            try:
                callback()
            except Exception:
                log.exception("a call's termination callback failed")

    # -- what the handler answers
    def send_initial_metadata(self, initial_metadata: Iterable[tuple[str, str | bytes]]) -> None:
        self.initial_metadata.extend(_text_pairs(initial_metadata))

    def set_trailing_metadata(self, trailing_metadata: Iterable[tuple[str, str | bytes]]) -> None:
        self.trailers = _text_pairs(trailing_metadata)

    def trailing_metadata(self) -> list[tuple[str, str]]:
        return self.trailers

    def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        self._code, self._details = code, details
        raise _Aborted(details)

    def abort_with_status(self, status: grpc.Status) -> NoReturn:
        for key, value in status.trailing_metadata or ():
            if key == _DETAILS_KEY:
                self._status_details = list(status_pb2.Status.FromString(value).details)
        self.abort(status.code, status.details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def details(self) -> str:
        return self._details

    def set_compression(self, compression: grpc.Compression) -> None:
        pass  # the answer is sent as the HTTP side decides

    def disable_next_message_compression(self) -> None:
        pass

    def error(self) -> CallError | None:
        if self._code is None or self._code is grpc.StatusCode.OK:
            return None
        return CallError(self._code, self._details, self._status_details)


def _text_pairs(pairs: Iterable[tuple[str, str | bytes]]) -> list[tuple[str, str]]:
    # Binary metadata (-bin keys) travels base64-encoded in HTTP headers, as gRPC-Web and Connect do.
    return [(key, base64.b64encode(value).decode() if isinstance(value, bytes) else value) for key, value in pairs]


class _Recorder:
    """Stands for a grpc.Server while the generated code registers the servicer: keeps its method handlers."""

    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}

    def add_generic_rpc_handlers(self, handlers: Iterable[Any]) -> None:
        pass  # the same handlers come again, by name, just below

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.handlers.update(handlers)


class Dispatcher:
    """Runs one call of the service through the handler chain the gRPC server uses."""

    def __init__(self, servicer: authz_pb2_grpc.AuthzServiceServicer, interceptors: Sequence[Any]) -> None:
        recorder = _Recorder()
        authz_pb2_grpc.add_AuthzServiceServicer_to_server(servicer, recorder)
        self._handlers = recorder.handlers
        self._interceptors = tuple(interceptors)

    def _handler(self, details: _CallDetails, index: int = 0) -> Any:
        # The first interceptor is the outermost, as in grpc.server(interceptors=...).
        if index == len(self._interceptors):
            return self._handlers.get(details.method.removeprefix(_PREFIX))
        return self._interceptors[index].intercept_service(lambda d: self._handler(d, index + 1), details)

    def call(self, method: str, request: Message | bytes, context: HttpServicerContext) -> Message:
        """The response message; CallError for an error status. `request`: a message, or its bytes."""
        details = _CallDetails(method=_PREFIX + method, invocation_metadata=context.invocation_metadata())
        handler = self._handler(details)
        if handler is None or handler.unary_unary is None:
            raise CallError(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not served here")
        if isinstance(request, bytes):
            request = handler.request_deserializer(request)
        try:
            response = handler.unary_unary(request, context)
        except _Aborted:
            response = None
        except Exception:
            # What the servicer's own error handling did not turn into a status (an interceptor's failure).
            log.exception("HTTP call %s failed", method)
            raise CallError(grpc.StatusCode.INTERNAL, "internal error; it was logged") from None
        finally:
            context.run_callbacks()
        error = context.error()
        if error is not None:
            raise error
        if not isinstance(response, Message):
            raise CallError(grpc.StatusCode.INTERNAL, "internal error; it was logged")
        return response


def _request_class(method: str) -> type[Message]:
    return message_factory.GetMessageClass(_SERVICE.methods_by_name[method].input_type)


def error_body(error: CallError) -> dict[str, Any]:
    """Connect's JSON error: its code, the message, and each google.rpc detail with its JSON form."""
    name, _ = CONNECT_CODES.get(error.code, ("unknown", 500))
    body: dict[str, Any] = {"code": name}
    if error.message:
        body["message"] = error.message
    details = []
    for packed in error.details:
        type_name = packed.type_url.rsplit("/", 1)[-1]
        detail: dict[str, Any] = {"type": type_name, "value": base64.b64encode(packed.value).decode().rstrip("=")}
        try:
            described = descriptor_pool.Default().FindMessageTypeByName(type_name)
            detail["debug"] = json_format.MessageToDict(
                message_factory.GetMessageClass(described).FromString(packed.value)
            )
        except (KeyError, TypeError):
            pass  # a detail of a type this process does not know: the bytes alone
        details.append(detail)
    if details:
        body["details"] = details
    return body


class _Handler(BaseHTTPRequestHandler):
    """One connection: HTTP/1.1 with keep-alive, each POST one call."""

    protocol_version = "HTTP/1.1"
    server_version = "authz"
    sys_version = ""  # the Server header names no Python version
    timeout = _IDLE_SECONDS
    server: _HttpServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        # Connect's GET form is for methods marked free of side effects; none of this service's is.
        self._refuse(HTTPStatus.METHOD_NOT_ALLOWED, "use POST", extra=[("Allow", "POST")])

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    def do_POST(self) -> None:
        started = time.monotonic()
        owner = self.server.owner
        if owner.closing:
            self.close_connection = True
            self._send_error(CallError(grpc.StatusCode.UNAVAILABLE, "the server is shutting down"), _JSON)
            return
        path = self.path.split("?", 1)[0]
        method = path.removeprefix(_PREFIX) if path.startswith(_PREFIX) else ""
        if method not in _SERVICE.methods_by_name:
            self._discard_body()
            body = error_body(CallError(grpc.StatusCode.UNIMPLEMENTED, f"no procedure {path}"))
            self._send(HTTPStatus.NOT_FOUND, _JSON, json.dumps(body).encode())
            return
        content_type = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if content_type not in (_JSON, _PROTO):
            self._discard_body()
            self._refuse(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                "Content-Type must be application/json or application/proto",
                extra=[("Accept-Post", f"{_JSON}, {_PROTO}")],
            )
            return
        try:
            received = self._read_body(owner.max_message_bytes)
            if _SERVICE.methods_by_name[method].server_streaming:
                raise CallError(
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"{method} is a stream: call it over gRPC (Connect streams are not served)",
                )
            self._check_protocol_version()
            context = HttpServicerContext(self._metadata(), self._peer(), self._deadline(started), self._common_name())
            request: Message | bytes = received if content_type == _PROTO else _parse_json(method, received)
            with owner.slots:
                if owner.closing:  # waited for a slot while `stop` drained the calls before it
                    raise CallError(grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
                response = owner.dispatcher.call(method, request, context)
        except CallError as error:
            self._send_error(error, content_type)
            return
        payload = (
            response.SerializeToString()
            if content_type == _PROTO
            else json.dumps(json_format.MessageToDict(response), ensure_ascii=False).encode()
        )
        headers = [*context.initial_metadata, *((f"trailer-{key}", value) for key, value in context.trailers)]
        self._send(HTTPStatus.OK, content_type, payload, extra=headers)

    # -- reading the call
    def _read_body(self, limit: int) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            raise CallError(grpc.StatusCode.INVALID_ARGUMENT, "send the body with a Content-Length, not chunked")
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            self.close_connection = True
            raise CallError(grpc.StatusCode.INVALID_ARGUMENT, "Content-Length is not a number") from None
        if length < 0 or length > limit:
            self.close_connection = True  # the body is not read: the connection cannot carry another call
            raise CallError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"the request is larger than {limit} bytes")
        body = self.rfile.read(length)
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding == "gzip":
            try:
                body = _gunzip(body, limit)
            except (OSError, EOFError, zlib.error):
                raise CallError(grpc.StatusCode.INVALID_ARGUMENT, "the body is not valid gzip") from None
        elif encoding != "identity":
            raise CallError(grpc.StatusCode.UNIMPLEMENTED, f"Content-Encoding {encoding!r} is not supported (gzip is)")
        return body

    def _discard_body(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            length = -1
        if 0 <= length <= self.server.owner.max_message_bytes:
            self.rfile.read(length)
        else:
            self.close_connection = True

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return tuple((key.lower(), value) for key, value in self.headers.items() if key.lower() not in _NOT_METADATA)

    def _check_protocol_version(self) -> None:
        # Optional, so that curl works unaided; when given, it must be the version this server speaks.
        version = self.headers.get("Connect-Protocol-Version")
        if version is not None and version.strip() != "1":
            raise CallError(grpc.StatusCode.INVALID_ARGUMENT, f"Connect-Protocol-Version {version!r}: only 1 is known")

    def _peer(self) -> str:
        host, port = self.client_address[0], self.client_address[1]
        return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"

    def _deadline(self, started: float) -> float | None:
        text = self.headers.get("Connect-Timeout-Ms")
        if text is None:
            return None
        text = text.strip()
        if not text.isdigit() or len(text) > _MAX_TIMEOUT_DIGITS:
            raise CallError(grpc.StatusCode.INVALID_ARGUMENT, "Connect-Timeout-Ms must be a positive integer")
        return started + int(text) / 1000

    def _common_name(self) -> str | None:
        if not isinstance(self.connection, ssl.SSLSocket):
            return None
        certificate = self.connection.getpeercert()
        if not certificate:
            return None  # no client certificate was asked for, or none was given
        subject: Any = certificate.get("subject", ())
        for rdn in subject:
            for key, value in rdn:
                if key == "commonName":
                    return str(value)
        return None

    # -- answering
    def _send_error(self, error: CallError, content_type: str) -> None:
        _, status = CONNECT_CODES.get(error.code, ("unknown", 500))
        # Connect sends errors of unary calls as JSON whatever the request's encoding.
        self._send(status, _JSON, json.dumps(error_body(error), ensure_ascii=False).encode())

    def _refuse(self, status: HTTPStatus, message: str, extra: Sequence[tuple[str, str]] = ()) -> None:
        code = (
            grpc.StatusCode.UNIMPLEMENTED
            if status is HTTPStatus.METHOD_NOT_ALLOWED
            else grpc.StatusCode.INVALID_ARGUMENT
        )
        body = json.dumps(error_body(CallError(code, message))).encode()
        self._send(status, _JSON, body, extra=extra)

    def _send(self, status: int, content_type: str, payload: bytes, extra: Sequence[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in extra:
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":  # a HEAD answer has the headers of a body, never the body
            self.wfile.write(payload)


def _parse_json(method: str, body: bytes) -> Message:
    message = _request_class(method)()
    if not body.strip():
        return message  # an empty body is the empty request
    try:
        json_format.Parse(body.decode("utf-8"), message)
    except (json_format.ParseError, UnicodeDecodeError, RecursionError) as exc:
        raise CallError(
            grpc.StatusCode.INVALID_ARGUMENT, f"the request is not a valid JSON {message.DESCRIPTOR.name}: {exc}"
        ) from None
    return message


def _gunzip(body: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = inflater.decompress(body, limit + 1)
    if len(out) > limit:
        raise CallError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"the request is larger than {limit} bytes once inflated")
    if not inflater.eof:
        raise zlib.error("truncated gzip body")
    return out


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True  # idle kept-alive connections never hold the process; calls are drained by `stop`
    owner: ConnectServer
    tls: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        # The handshake runs here, in the connection's own thread: a client that connects and says
        # nothing holds only its thread, until the timeout, never the accept loop.
        request.settimeout(_IDLE_SECONDS)
        try:
            wrapped = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            log.info("TLS handshake with %s failed: %s", client_address[0], exc)
            return
        try:
            super().finish_request(wrapped, client_address)
        finally:
            self.shutdown_request(wrapped)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A connection reset or timed out mid-call: the client's affair, not a server fault.
        log.debug("HTTP connection from %s ended in error", client_address[0], exc_info=True)


class _HttpServer6(_HttpServer):
    address_family = socket.AF_INET6


class ConnectServer:
    """The HTTP/JSON listener: `start()`, then `stop(grace)`; `port` is the bound port."""

    def __init__(self, settings: Settings, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.max_message_bytes = settings.max_message_bytes
        # As many calls at once as the gRPC server's worker threads; more wait for a slot.
        self._capacity = settings.max_workers
        self.slots = threading.BoundedSemaphore(self._capacity)
        self.closing = False
        listen = settings.http_listen
        check_http_listen(settings)
        host, _, port_text = listen.rpartition(":")
        host = host.strip("[]")
        self._server: _HttpServer = (_HttpServer6 if ":" in host else _HttpServer)(
            (host, int(port_text)), _Handler, bind_and_activate=False
        )
        # Several worker processes share one port (authz serve --processes N), as the gRPC port does.
        self._server.allow_reuse_port = settings.processes > 1
        try:
            self._server.server_bind()
            self._server.server_activate()
        except OSError as exc:
            self._server.server_close()
            raise ConfigError(f"cannot listen on {listen} (AUTHZ_HTTP_LISTEN): {exc}") from exc
        self._server.owner = self
        if settings.tls_cert is not None and settings.tls_key is not None:
            self._server.tls = _tls_context(settings)
        elif settings.callers_file is not None and not is_loopback(listen):
            log.warning("bearer tokens travel in clear on %s: set AUTHZ_TLS_CERT and AUTHZ_TLS_KEY", listen)
        self.port = int(self._server.server_address[1])
        self.host = host
        self._thread = threading.Thread(target=self._server.serve_forever, name="authz-http", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("serving HTTP/JSON (Connect) on %s:%d", self.host, self.port)

    def stop(self, grace: float) -> None:
        """Stop accepting, answer UNAVAILABLE to new calls on open connections, wait for calls in flight."""
        self.closing = True
        if self._thread.is_alive():  # shutdown() waits for a serving loop, which never ran if never started
            self._server.shutdown()
        self._server.server_close()
        deadline = time.monotonic() + grace
        taken = 0
        # Every slot taken back means no call is running any more.
        while taken < self._capacity and self.slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            taken += 1
        for _ in range(taken):
            self.slots.release()


def _tls_context(settings: Settings) -> ssl.SSLContext:
    """The gRPC listener's certificate; with a client CA, every caller presents a certificate it signed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    assert settings.tls_cert is not None and settings.tls_key is not None
    try:
        context.load_cert_chain(str(settings.tls_cert), str(settings.tls_key))
        if settings.tls_client_ca is not None:
            context.load_verify_locations(str(settings.tls_client_ca))
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot use the TLS files for AUTHZ_HTTP_LISTEN: {exc}") from exc
    return context


def check_http_listen(settings: Settings) -> None:
    """The HTTP listener's own rules: callers required beyond loopback, as for gRPC; a fixed port with processes."""
    listen = settings.http_listen
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ConfigError(f"AUTHZ_HTTP_LISTEN={listen!r}: expected host:port")
    if settings.callers_file is None and not is_loopback(listen):
        raise ConfigError(
            f"refusing to serve HTTP on {listen} without caller credentials: "
            "set AUTHZ_CALLERS_FILE (--callers-file), or listen on 127.0.0.1"
        )
    if settings.processes > 1 and int(port_text) == 0:
        raise ConfigError("AUTHZ_HTTP_LISTEN needs a fixed port with AUTHZ_PROCESSES > 1 (port 0 differs per worker)")
