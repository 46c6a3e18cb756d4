"""Who may call: caller credentials, per-caller RPC permissions, and the listening socket's TLS.

Each calling service is named in a callers file (YAML or JSON)::

    callers:
      - name: portal
        token_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
        methods: ["*"]
      - name: monthly-report
        tls_common_name: monthly-report.ccq.internal   # mutual TLS instead of (or besides) a token
        methods: [CheckAccess, BatchCheckAccess]
      - name: cache-feeder
        token_sha256: ...
        methods: [Watch]          # Watch is given by name only: "*" does not include it
      - name: self-service
        token_sha256: ...
        methods: ["*"]
        require_account: true   # every write names the end-user account (x-authz-account metadata),
                                # and the actor must be one of that account's linked profiles

The file holds no secret: a token is kept as its SHA-256 (`authz callers hash-token`
makes one). A call names itself with `authorization: Bearer <token>` metadata or, when
the server requires client certificates, with the certificate's common name. Health and
reflection stay open, so that probes and grpcurl need nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml

from authz import errors
from authz.calls import ACCOUNT_METADATA, account_scope, caller_scope
from authz.config import ConfigError, Settings
from authz.server.errors import abort_with
from authz.v1 import authz_pb2

__all__ = [
    "AUTHZ_METHODS",
    "NAMED_ONLY",
    "Caller",
    "CallerAuthInterceptor",
    "Callers",
    "bind",
    "hash_token",
    "is_loopback",
    "require_callers_beyond_loopback",
    "server_interceptors",
]

log = logging.getLogger("authz.auth")

_SERVICE = authz_pb2.DESCRIPTOR.services_by_name["AuthzService"]
_PREFIX = f"/{_SERVICE.full_name}/"
AUTHZ_METHODS = frozenset(method.name for method in _SERVICE.methods)
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
# Refused the same way whatever went wrong, so a prober learns nothing about which part failed.
NO_CREDENTIALS = "this service requires caller credentials (authorization: Bearer <token> or a client certificate)"
BAD_CREDENTIALS = "the caller credentials are not valid"


# RPCs a callers file must name: "*" does not include them.
NAMED_ONLY = frozenset({"Watch"})


def hash_token(token: str) -> str:
    """The form a token takes in the callers file: SHA-256, lower-case hex."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Caller:
    name: str
    methods: frozenset[str]  # short RPC names, or {"*"} for every RPC
    token_sha256: str | None = None
    tls_common_name: str | None = None
    # Writes must name an end-user account, and act only as one of its linked profiles.
    require_account: bool = False

    def may_call(self, method: str) -> bool:
        # Watch streams every organization's changes: it is given by name, never by "*".
        return method in self.methods or ("*" in self.methods and method not in NAMED_ONLY)


class Callers:
    """The callers file, validated whole: a typo in it stops the server at start, not in production."""

    def __init__(self, callers: Iterable[Caller]) -> None:
        self.callers = tuple(callers)
        names = [caller.name for caller in self.callers]
        if len(set(names)) != len(names):
            raise ValueError("callers file: each caller name must appear once")
        hashes = [caller.token_sha256 for caller in self.callers if caller.token_sha256]
        if len(set(hashes)) != len(hashes):
            raise ValueError("callers file: two callers share one token")
        self._by_common_name = {c.tls_common_name: c for c in self.callers if c.tls_common_name}

    @classmethod
    def load(cls, path: Path) -> Callers:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        return cls.parse(data, str(path))

    @classmethod
    def parse(cls, data: Any, source: str = "callers file") -> Callers:
        if not isinstance(data, Mapping) or not isinstance(data.get("callers"), list) or not data["callers"]:
            raise ValueError(f"{source}: expected a mapping with a non-empty `callers` list")
        callers = []
        for index, entry in enumerate(data["callers"]):
            where = f"{source}: callers[{index}]"
            if not isinstance(entry, Mapping):
                raise ValueError(f"{where}: expected a mapping")
            unknown = set(entry) - {"name", "token_sha256", "tls_common_name", "methods", "require_account"}
            if unknown:
                # A clear-text `token:` key lands here: the file must not hold the secret itself.
                raise ValueError(f"{where}: unknown keys {sorted(unknown)} (tokens are given as token_sha256)")
            name = entry.get("name")
            if not isinstance(name, str) or not name:
                raise ValueError(f"{where}: `name` is required")
            token_sha256 = entry.get("token_sha256")
            if token_sha256 is not None and (
                not isinstance(token_sha256, str) or not _HEX_SHA256.fullmatch(token_sha256.lower())
            ):
                raise ValueError(f"{where} ({name}): token_sha256 must be 64 hexadecimal digits")
            common_name = entry.get("tls_common_name")
            if common_name is not None and (not isinstance(common_name, str) or not common_name):
                raise ValueError(f"{where} ({name}): tls_common_name must be a non-empty string")
            if token_sha256 is None and common_name is None:
                raise ValueError(f"{where} ({name}): give token_sha256, tls_common_name or both")
            methods = entry.get("methods")
            if not isinstance(methods, list) or not methods or not all(isinstance(m, str) for m in methods):
                raise ValueError(f'{where} ({name}): `methods` must list RPC names, or be ["*"]')
            wrong = sorted(set(methods) - AUTHZ_METHODS - {"*"})
            if wrong:
                raise ValueError(f"{where} ({name}): unknown RPCs {wrong}; known: {sorted(AUTHZ_METHODS)}")
            require_account = entry.get("require_account", False)
            if not isinstance(require_account, bool):
                raise ValueError(f"{where} ({name}): require_account must be true or false")
            callers.append(
                Caller(
                    name=name,
                    methods=frozenset(methods),
                    token_sha256=token_sha256.lower() if token_sha256 else None,
                    tls_common_name=common_name,
                    require_account=require_account,
                )
            )
        return cls(callers)

    def by_token(self, token: str) -> Caller | None:
        digest = hash_token(token)
        found = None
        # Every entry is compared, in constant time each: the time taken says nothing of which one matched.
        for caller in self.callers:
            if caller.token_sha256 is not None and hmac.compare_digest(caller.token_sha256, digest):
                found = caller
        return found

    def by_common_name(self, common_name: str) -> Caller | None:
        return self._by_common_name.get(common_name)


def _bearer(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    """The bearer token of the call; "" when the header is not one bearer token.

    Two `authorization` headers are refused rather than one of them taken: a proxy and a
    caller that disagree about who is calling must not be settled by header order.
    """
    values = [value for key, value in metadata or () if key == "authorization"]
    if not values:
        return None
    if len(values) > 1:
        return ""
    text = values[0].decode("latin-1") if isinstance(values[0], bytes) else values[0]
    scheme, _, token = text.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _account(metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
    """The end-user account named with the call; "" when none, or when it is named twice (ambiguous)."""
    values = [value for key, value in metadata or () if key == ACCOUNT_METADATA]
    if len(values) != 1:
        return ""
    return values[0].decode("latin-1") if isinstance(values[0], bytes) else values[0]


def _common_name(context: grpc.ServicerContext) -> str | None:
    # Present only when the TLS handshake verified a client certificate against the client CA.
    values = context.auth_context().get("x509_common_name") or []
    return values[0].decode() if values else None


class CallerAuthInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Authenticates every AuthzService call, then checks the caller may call that RPC.

    The certificate is only visible from the servicer context, so the check runs
    wrapped around the handler rather than before it is chosen.
    """

    def __init__(self, callers: Callers) -> None:
        self.callers = callers

    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(handler_call_details)
        method_path: str = handler_call_details.method
        if handler is None or not method_path.startswith(_PREFIX):
            return handler  # health and reflection stay open for probes
        method = method_path.removeprefix(_PREFIX)
        token = _bearer(handler_call_details.invocation_metadata)
        account = _account(handler_call_details.invocation_metadata)

        def admitted(context: grpc.ServicerContext) -> Caller:
            caller = self._authenticate(token, context)
            if not caller.may_call(method):
                log.warning("caller %s may not call %s", caller.name, method)
                abort_with(
                    context,
                    errors.PermissionDenied(
                        f"caller {caller.name!r} may not call {method}", reason="CALLER_NOT_ALLOWED"
                    ),
                )
            return caller

        if handler.unary_unary is not None:
            inner = handler.unary_unary

            def guarded(request: Any, context: grpc.ServicerContext) -> Any:
                caller = admitted(context)
                with caller_scope(caller.name), account_scope(account, required=caller.require_account):
                    return inner(request, context)

            return grpc.unary_unary_rpc_method_handler(
                guarded,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:  # Watch
            streaming = handler.unary_stream

            def guarded_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                caller = admitted(context)
                with caller_scope(caller.name), account_scope(account, required=caller.require_account):
                    yield from streaming(request, context)

            return grpc.unary_stream_rpc_method_handler(
                guarded_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return None  # no client-streaming RPC exists: anything else is refused

    def _authenticate(self, token: str | None, context: grpc.ServicerContext) -> Caller:
        common_name = _common_name(context)
        by_certificate = self.callers.by_common_name(common_name) if common_name else None
        if common_name is not None and by_certificate is None:
            # A certificate the CA signed but no caller owns is someone else's: a token beside it does
            # not make the call the token's caller (the certificate may be a stolen key's).
            log.warning("refused certificate %r: no caller has that common name", common_name)
            abort_with(context, errors.Unauthenticated(BAD_CREDENTIALS, reason="UNKNOWN_CERTIFICATE"))
        if token is not None:
            by_token = self.callers.by_token(token) if token else None
            # A token and a certificate naming two different callers is someone's mistake or someone's trick.
            if by_token is None or (by_certificate is not None and by_certificate is not by_token):
                log.warning("refused a call with invalid credentials from %s", context.peer())
                abort_with(context, errors.Unauthenticated(BAD_CREDENTIALS, reason="BAD_CREDENTIALS"))
            return by_token
        if by_certificate is not None:
            return by_certificate
        abort_with(context, errors.Unauthenticated(NO_CREDENTIALS, reason="NO_CREDENTIALS"))


def is_loopback(listen: str) -> bool:
    """Whether `host:port` only accepts connections from this machine."""
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name, or 0.0.0.0 / [::] spelled otherwise: treat as reachable from outside


def require_callers_beyond_loopback(settings: Settings) -> None:
    """Stop right here when the listener would be reachable from other machines with no callers configured."""
    if settings.callers_file is None and not is_loopback(settings.listen):
        raise ConfigError(
            f"refusing to listen on {settings.listen} without caller credentials: "
            "set AUTHZ_CALLERS_FILE (--callers-file), or listen on 127.0.0.1"
        )
    if settings.callers_file is None and settings.http_listen and not is_loopback(settings.http_listen):
        raise ConfigError(
            f"refusing to serve HTTP on {settings.http_listen} without caller credentials: "
            "set AUTHZ_CALLERS_FILE (--callers-file), or listen on 127.0.0.1"
        )


def server_interceptors(settings: Settings) -> list[grpc.ServerInterceptor]:
    """The caller check, or nothing on loopback without a callers file; refuses an open listener without one."""
    require_callers_beyond_loopback(settings)
    if settings.callers_file is None:
        log.warning("no callers file: any local process may call (loopback only; set AUTHZ_CALLERS_FILE)")
        return []
    try:
        callers = Callers.load(settings.callers_file)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot use the callers file: {exc}") from exc
    log.info("callers: %s", ", ".join(f"{c.name} ({len(c.methods)} rpc)" for c in callers.callers))
    return [CallerAuthInterceptor(callers)]


def bind(server: grpc.Server, settings: Settings) -> int:
    """Listen as the settings say: TLS when a certificate is given, client certificates required with a client CA."""
    if settings.tls_cert is None and settings.tls_key is None:
        if settings.tls_client_ca is not None:
            raise ConfigError("AUTHZ_TLS_CLIENT_CA needs AUTHZ_TLS_CERT and AUTHZ_TLS_KEY (the server's own)")
        if settings.callers_file is not None and not is_loopback(settings.listen):
            log.warning("bearer tokens travel in clear on %s: set AUTHZ_TLS_CERT and AUTHZ_TLS_KEY", settings.listen)
        return int(server.add_insecure_port(settings.listen))
    if settings.tls_cert is None or settings.tls_key is None:
        raise ConfigError("TLS needs both AUTHZ_TLS_CERT and AUTHZ_TLS_KEY")
    try:
        key = settings.tls_key.read_bytes()
        cert = settings.tls_cert.read_bytes()
        client_ca = settings.tls_client_ca.read_bytes() if settings.tls_client_ca else None
    except OSError as exc:
        raise ConfigError(f"cannot read TLS files: {exc.strerror}: {exc.filename}") from exc
    credentials = grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )
    return int(server.add_secure_port(settings.listen, credentials))
