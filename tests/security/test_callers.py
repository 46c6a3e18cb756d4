"""Callers are authenticated and each may call only its RPCs (ASVS V8.2, V8.3; UNAUTHENTICATED without a known token)."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from authz_client import AuthzClient, PermissionDeniedError, UnauthenticatedError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from authz.config import ConfigError, Settings
from authz.server.app import STORE_HEALTH_NAME, AuthzApp
from authz.server.auth import BAD_CREDENTIALS, NO_CREDENTIALS, Callers, hash_token, is_loopback

from ..conftest import Running
from ..integration.helpers import row_counts

PORTAL_TOKEN = "portal-3c5e0f6b1d9a4c7e8f2a0b4d6e8f1a3c"
REPORT_TOKEN = "monthly-report-9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d"
PR, SQC = "C-PR", "ORG-SQC"


def write_callers(path: Path) -> Path:
    path.write_text(
        json.dumps(
            {
                "callers": [
                    # Watch is given by name: "*" does not include it.
                    {"name": "portal", "token_sha256": hash_token(PORTAL_TOKEN), "methods": ["*", "Watch"]},
                    {
                        "name": "monthly-report",
                        "token_sha256": hash_token(REPORT_TOKEN),
                        "tls_common_name": "monthly-report.ccq.internal",
                        "methods": ["CheckAccess", "BatchCheckAccess"],
                    },
                ]
            }
        )
    )
    return path


@pytest.fixture
def guarded(start_server: Callable[..., Running], tmp_path: Path) -> Running:
    return start_server(callers_file=write_callers(tmp_path / "callers.json"))


def client_for(server: Running, token: str | None) -> AuthzClient:
    return AuthzClient(f"127.0.0.1:{server.app.port}", token=token, timeout=5)


def test_no_credentials_is_unauthenticated_and_changes_nothing(guarded: Running) -> None:
    before = row_counts(guarded)
    with client_for(guarded, None) as anonymous:
        with pytest.raises(UnauthenticatedError) as check:
            anonymous.check(PR, SQC, "profil", "read")
        with pytest.raises(UnauthenticatedError) as grant:
            anonymous.grant_relation(
                PR, SQC, contact_id="C-IND", role="membre_du_personnel", subjects=[("profil", "read")], attest=True
            )
    assert check.value.message == NO_CREDENTIALS and grant.value.message == NO_CREDENTIALS
    assert row_counts(guarded) == before


def test_a_wrong_token_is_unauthenticated_and_not_echoed(guarded: Running) -> None:
    wrong = "portal-0000000000000000000000000000000"
    with client_for(guarded, wrong) as impostor, pytest.raises(UnauthenticatedError) as refused:
        impostor.check(PR, SQC, "profil", "read")
    assert refused.value.message == BAD_CREDENTIALS and wrong not in str(refused.value)
    # Not a bearer token at all: the same refusal.
    channel = grpc.insecure_channel(f"127.0.0.1:{guarded.app.port}")
    from authz.v1 import authz_pb2, authz_pb2_grpc

    stub = authz_pb2_grpc.AuthzServiceStub(channel)
    with pytest.raises(grpc.RpcError) as basic:
        stub.CheckAccess(
            authz_pb2.CheckAccessRequest(principal_id=PR, organization_id=SQC, subject="profil", right=1),
            metadata=(("authorization", f"Basic {PORTAL_TOKEN}"),),
            timeout=5,
        )
    assert basic.value.code() is grpc.StatusCode.UNAUTHENTICATED
    channel.close()


def test_the_report_service_may_check_but_not_grant(guarded: Running) -> None:
    before = row_counts(guarded)
    with client_for(guarded, REPORT_TOKEN) as report:
        assert report.allowed(PR, SQC, "relations", "write")
        assert report.batch_check([]) == []
        with pytest.raises(PermissionDeniedError) as grant:
            report.grant_relation(
                PR, SQC, contact_id="C-IND", role="membre_du_personnel", subjects=[("profil", "read")], attest=True
            )
        with pytest.raises(PermissionDeniedError):
            report.issue_link_code(PR, SQC, "C-IND", attest=True)
    assert grant.value.message == "caller 'monthly-report' may not call GrantRelation"
    assert row_counts(guarded) == before
    with client_for(guarded, PORTAL_TOKEN) as portal:
        portal.grant_relation(
            PR,
            SQC,
            contact_id="C-IND",
            role="membre_du_personnel",
            subjects=[("paiements_et_releves", "read")],
            attest=True,
        )
    assert row_counts(guarded) != before


def test_health_and_reflection_stay_open_to_probes(guarded: Running) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{guarded.app.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", STORE_HEALTH_NAME):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        (reply,) = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        assert "authz.v1.AuthzService" in [s.name for s in reply.list_services_response.service]


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "[::]:0", "10.1.2.3:0", "authz.example:0"])
def test_beyond_loopback_it_refuses_to_start_without_callers(listen: str, tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'a.db'}", listen=listen)
    with pytest.raises(ConfigError) as refused:
        AuthzApp(settings)
    assert "without caller credentials" in str(refused.value)
    assert not (tmp_path / "a.db").exists()  # refused before anything was opened


def test_loopback_names() -> None:
    assert all(is_loopback(x) for x in ("127.0.0.1:1", "localhost:1", "[::1]:1", "127.8.0.1:1"))
    assert not any(is_loopback(x) for x in ("0.0.0.0:1", "[::]:1", "192.168.1.2:1", "host:1"))


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ({"callers": [{"name": "x", "token": "clear-text", "methods": ["*"]}]}, "unknown keys ['token']"),
        ({"callers": [{"name": "x", "token_sha256": "abc", "methods": ["*"]}]}, "64 hexadecimal digits"),
        ({"callers": [{"name": "x", "token_sha256": "a" * 64, "methods": ["CheckAcess"]}]}, "unknown RPCs"),
        ({"callers": [{"name": "x", "methods": ["*"]}]}, "give token_sha256, tls_common_name or both"),
        ({"callers": []}, "non-empty `callers` list"),
        (
            {"callers": [{"name": n, "token_sha256": "a" * 64, "methods": ["*"]} for n in ("x", "y")]},
            "share one token",
        ),
    ],
)
def test_a_wrong_callers_file_stops_the_start(content: object, problem: str, tmp_path: Path) -> None:
    path = tmp_path / "callers.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=re.escape(problem)):
        Callers.load(path)
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'a.db'}", listen="127.0.0.1:0", callers_file=path)
    with pytest.raises(ConfigError, match="cannot use the callers file"):
        AuthzApp(settings)


def test_a_yaml_callers_file_works_too(start_server: Callable[..., Running], tmp_path: Path) -> None:
    path = tmp_path / "callers.yaml"
    path.write_text(f"callers:\n  - name: portal\n    token_sha256: {hash_token(PORTAL_TOKEN)}\n    methods: ['*']\n")
    server = start_server(callers_file=path)
    with client_for(server, PORTAL_TOKEN) as portal:
        assert portal.allowed(PR, SQC, "profil", "read")
    with client_for(server, REPORT_TOKEN) as other, pytest.raises(UnauthenticatedError):
        other.allowed(PR, SQC, "profil", "read")


def test_secrets_never_reach_logs_or_errors(guarded: Running, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    """Tokens, link codes and legacy passwords: in no log line, in no error message."""
    caplog.set_level(logging.DEBUG)
    wrong_token = "wrong-token-7f1e2d3c4b5a69788796a5b4c3d2e1f0"
    errors: list[str] = []
    with client_for(guarded, wrong_token) as impostor:
        try:
            impostor.check(PR, SQC, "profil", "read")
        except Exception as error:
            errors.append(str(error))
    password = "not-the-password-5e6f7a8b"
    guess = "ABCD-EFGH-JKMN-PQRS"
    with client_for(guarded, PORTAL_TOKEN) as portal:
        portal.issue_link_code(PR, SQC, "C-IND", attest=True)
        for call in (
            lambda: portal.link_legacy_access("acct-x", "sqc-admin", password),
            lambda: portal.redeem_link_code("acct-x", guess),
        ):
            try:
                call()
            except Exception as error:
                errors.append(str(error))
    assert len(errors) == 3
    issued = [
        line.split(": ", 1)[1] for body in guarded.emails() for line in body.splitlines() if "Code de liaison" in line
    ]
    assert issued
    text = "\n".join([*errors, *(record.getMessage() for record in caplog.records), caplog.text])
    for secret in (PORTAL_TOKEN, wrong_token, password, guess, *issued):
        assert secret not in text
    assert "invalid credentials" in caplog.text  # the refusal itself is logged, without the token


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(folder: Path) -> None:
    """A CA, a server certificate for 127.0.0.1/localhost, and two client certificates signed by the CA."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=authz-test-ca", cwd=folder)  # fmt: skip
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, common_name, ext in (
        ("server", "localhost", ["-extfile", "server.ext"]),
        ("report", "monthly-report.ccq.internal", []),
        ("stranger", "stranger.ccq.internal", []),
    ):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={common_name}", cwd=folder)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", *ext, cwd=folder)  # fmt: skip


def test_mutual_tls_identifies_the_caller(start_server: Callable[..., Running], tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    make_pki(pki)
    server = start_server(
        callers_file=write_callers(tmp_path / "callers.json"),
        tls_cert=pki / "server.pem",
        tls_key=pki / "server.key",
        tls_client_ca=pki / "ca.pem",
    )
    target = f"localhost:{server.app.port}"
    ca = (pki / "ca.pem").read_bytes()

    def credentials(name: str | None) -> grpc.ChannelCredentials:
        if name is None:
            return grpc.ssl_channel_credentials(root_certificates=ca)
        return grpc.ssl_channel_credentials(ca, (pki / f"{name}.key").read_bytes(), (pki / f"{name}.pem").read_bytes())

    # The certificate names the monthly-report service: it may check, not grant.
    with AuthzClient(target, credentials=credentials("report"), timeout=5) as report:
        assert report.allowed(PR, SQC, "relations", "write")
        with pytest.raises(PermissionDeniedError):
            report.issue_link_code(PR, SQC, "C-IND", attest=True)
    # A certificate from the right CA that no caller owns: refused.
    with AuthzClient(target, credentials=credentials("stranger"), timeout=5) as stranger:
        with pytest.raises(UnauthenticatedError) as refused:
            stranger.allowed(PR, SQC, "profil", "read")
        assert refused.value.message == BAD_CREDENTIALS
    # A token with a certificate no caller owns: refused too (the certificate is someone else's).
    with AuthzClient(target, credentials=credentials("stranger"), token=PORTAL_TOKEN, timeout=5) as mixed:
        with pytest.raises(UnauthenticatedError) as refused:
            mixed.allowed(PR, SQC, "profil", "read")
        assert refused.value.message == BAD_CREDENTIALS
    # A token and a certificate naming two different callers: someone's mistake or trick, refused.
    with (
        AuthzClient(target, credentials=credentials("report"), token=PORTAL_TOKEN, timeout=5) as mixed,
        pytest.raises(UnauthenticatedError),
    ):
        mixed.allowed(PR, SQC, "profil", "read")
    # No client certificate at all: the TLS handshake itself fails.
    with AuthzClient(target, credentials=credentials(None), token=PORTAL_TOKEN, timeout=5) as bare:
        with pytest.raises(Exception) as handshake:
            bare.allowed(PR, SQC, "profil", "read")
        assert getattr(handshake.value, "code", None) == grpc.StatusCode.UNAVAILABLE
    # Plain text on a TLS port: no answer either.
    with client_for(server, PORTAL_TOKEN) as clear, pytest.raises(Exception) as plaintext:
        clear.allowed(PR, SQC, "profil", "read")
    assert getattr(plaintext.value, "code", None) == grpc.StatusCode.UNAVAILABLE


def test_the_cli_hashes_a_token_read_on_stdin_and_refuses_an_open_listener(tmp_path: Path) -> None:
    authz = str(Path(sys.executable).with_name("authz"))
    hashed = subprocess.run(
        [authz, "callers", "hash-token"], input=f"{PORTAL_TOKEN}\n", capture_output=True, text=True, timeout=60
    )
    assert hashed.returncode == 0 and hashed.stdout.strip() == f"token_sha256: {hash_token(PORTAL_TOKEN)}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")}
    refused = subprocess.run(
        [authz, "serve", "--listen", "0.0.0.0:0", "--database-url", f"sqlite:///{tmp_path / 'open.db'}"],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert refused.returncode == 2  # a configuration error: exit code 2
    assert "refusing to listen on 0.0.0.0:0 without caller credentials" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (tmp_path / "open.db").exists()
