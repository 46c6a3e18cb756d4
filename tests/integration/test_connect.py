"""The HTTP/JSON face (Connect protocol) of a real server: same answers, same callers, same errors as gRPC."""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from google.rpc import error_details_pb2

from authz.config import ConfigError, Settings
from authz.engine.policy import Policy
from authz.server.app import AuthzApp
from authz.server.auth import hash_token, require_callers_beyond_loopback
from authz.server.connect import check_http_listen
from authz.v1 import authz_pb2

from ..conftest import Clock, Running, load_demo, settings_for
from ..security.test_callers import PORTAL_TOKEN, make_pki, write_callers

SERVICE = "/authz.v1.AuthzService/"
PR, IND, SQC = "C-PR", "C-IND", "ORG-SQC"


def post(
    server: Running,
    method: str,
    body: bytes | dict[str, Any],
    *,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
    verb: str = "POST",
) -> tuple[int, dict[str, str], bytes]:
    assert server.app.http is not None
    connection = http.client.HTTPConnection("127.0.0.1", server.app.http.port, timeout=10)
    try:
        payload = json.dumps(body).encode() if isinstance(body, dict) else body
        connection.request(
            verb, SERVICE + method, body=payload, headers={"Content-Type": content_type, **(headers or {})}
        )
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def call(server: Running, method: str, body: dict[str, Any], **kwargs: Any) -> tuple[int, dict[str, Any]]:
    status, headers, payload = post(server, method, body, **kwargs)
    assert headers["content-type"] == "application/json"
    return status, json.loads(payload)


def unpadded(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture
def http_demo(start_server: Callable[..., Running]) -> Running:
    return start_server(http_listen="127.0.0.1:0")


def test_check_access_over_json_answers_as_grpc_does(http_demo: Running) -> None:
    status, allowed = call(
        http_demo,
        "CheckAccess",
        {"principalId": PR, "organizationId": SQC, "subject": "relations", "right": "RIGHT_WRITE", "explain": True},
    )
    assert status == 200
    assert allowed["allowed"] is True
    assert allowed["path"] and allowed["reason"]
    grpc_answer = http_demo.client.check(PR, SQC, "relations", "write")
    assert allowed["policyHash"] == grpc_answer.policy_hash
    assert allowed["revision"] == grpc_answer.revision
    # The proto's own field names are accepted too; a denial is an answer, with `allowed` left out (false).
    status, denied = call(
        http_demo,
        "CheckAccess",
        {"principal_id": IND, "organization_id": SQC, "subject": "relations", "right": "RIGHT_WRITE"},
    )
    assert status == 200
    assert "allowed" not in denied and denied["revision"]


def test_a_refused_write_carries_every_violation_as_bad_request(http_demo: Running) -> None:
    status, error = call(
        http_demo,
        "GrantRelation",
        {"actorId": PR, "organizationId": SQC, "contactId": IND, "role": "ROLE_MEMBRE_DU_PERSONNEL"},
    )
    assert status == 400
    assert error["code"] == "invalid_argument"
    (detail,) = error["details"]
    assert detail["type"] == "google.rpc.BadRequest"
    decoded = error_details_pb2.BadRequest.FromString(unpadded(detail["value"]))
    fields = [violation.field for violation in decoded.field_violations]
    assert "attestation.authorizes_acting" in fields
    assert detail["debug"]["fieldViolations"][0]["field"] == fields[0]


def test_a_denied_write_carries_error_info_with_its_reason(http_demo: Running) -> None:
    status, error = call(
        http_demo,
        "GrantRelation",
        {
            "actorId": IND,
            "organizationId": SQC,
            "contactId": PR,
            "role": "ROLE_MEMBRE_DU_PERSONNEL",
            "attestation": {"authorizesActing": True, "changesAccurate": True},
        },
    )
    assert status == 403
    assert error["code"] == "permission_denied"
    (detail,) = error["details"]
    assert detail["type"] == "google.rpc.ErrorInfo"
    info = error_details_pb2.ErrorInfo.FromString(unpadded(detail["value"]))
    assert info.domain == "authz.ccq.qc.ca" and info.reason
    assert detail["debug"] == {"reason": info.reason, "domain": info.domain}


def test_a_write_goes_through_and_is_seen_over_grpc(start_server: Callable[..., Running], database_url: str) -> None:
    http_demo = start_server(database_url, http_listen="127.0.0.1:0")
    status, granted = call(
        http_demo,
        "UpdateRelation",
        {
            "actorId": PR,
            "organizationId": SQC,
            "relationId": "R-IND",
            "addSubjects": [{"subject": "rapport_mensuel", "right": "RIGHT_WRITE"}],
            "attestation": {"changesAccurate": True},
        },
    )
    assert status == 200, granted
    assert granted["relationId"] == "R-IND"
    assert http_demo.client.allowed(IND, SQC, "rapport_mensuel", "write")


def test_malformed_requests_are_invalid_argument(http_demo: Running) -> None:
    for body in (b"{not json", b'{"principalId": 3}', b'{"noSuchField": true}', b'{"right": "RIGHT_NOPE"}'):
        status, error = call(http_demo, "CheckAccess", body)  # type: ignore[arg-type]
        assert (status, error["code"]) == (400, "invalid_argument"), body
        assert "CheckAccessRequest" in error["message"]
    status, error = call(http_demo, "CheckAccess", {}, headers={"Connect-Timeout-Ms": "soon"})
    assert (status, error["code"]) == (400, "invalid_argument")
    # Binary bodies that are no message of the method: the gRPC face's own check answers.
    status, error = call(http_demo, "CheckAccess", b"\xff\xff\xff", content_type="application/proto")
    assert (status, error["code"]) == (400, "invalid_argument")


def test_what_is_not_a_unary_call_of_the_service_is_refused(http_demo: Running) -> None:
    status, error = call(http_demo, "NoSuchMethod", {})
    assert (status, error["code"]) == (404, "unimplemented")
    status, error = call(http_demo, "Watch", {})
    assert (status, error["code"]) == (501, "unimplemented")
    assert "gRPC" in error["message"]
    status, headers, _ = post(http_demo, "CheckAccess", b"", verb="GET")
    assert status == 405 and headers["allow"] == "POST"
    status, headers, payload = post(http_demo, "CheckAccess", b"", verb="HEAD")
    assert status == 405 and payload == b""
    status, headers, _ = post(http_demo, "CheckAccess", b"{}", content_type="text/plain")
    assert status == 415 and "application/json" in headers["accept-post"]


def test_binary_and_gzip_bodies(http_demo: Running) -> None:
    request = authz_pb2.CheckAccessRequest(
        principal_id=PR, organization_id=SQC, subject="relations", right=authz_pb2.RIGHT_WRITE
    )
    status, headers, payload = post(
        http_demo, "CheckAccess", request.SerializeToString(), content_type="application/proto"
    )
    assert status == 200 and headers["content-type"] == "application/proto"
    assert authz_pb2.CheckAccessResponse.FromString(payload).allowed
    zipped = gzip.compress(
        json.dumps({"principalId": PR, "organizationId": SQC, "subject": "relations", "right": 2}).encode()
    )
    status, answer = call(http_demo, "CheckAccess", zipped, headers={"Content-Encoding": "gzip"})  # type: ignore[arg-type]
    assert status == 200 and answer["allowed"] is True


def test_a_body_beyond_the_message_limit_is_resource_exhausted(start_server: Callable[..., Running]) -> None:
    server = start_server(http_listen="127.0.0.1:0", max_message_bytes=2000)
    status, error = call(server, "CheckAccess", {"principalId": "x" * 5000})
    assert (status, error["code"]) == (429, "resource_exhausted")


def test_the_callers_file_rules_the_http_face_too(start_server: Callable[..., Running], tmp_path: Path) -> None:
    tokens = {"portal": "portal-token-0123456789abcdef", "report": "report-token-0123456789abcdef"}
    callers = tmp_path / "callers.json"
    callers.write_text(
        json.dumps(
            {
                "callers": [
                    {"name": "portal", "token_sha256": hash_token(tokens["portal"]), "methods": ["*"]},
                    {"name": "report", "token_sha256": hash_token(tokens["report"]), "methods": ["CheckAccess"]},
                ]
            }
        )
    )
    server = start_server(http_listen="127.0.0.1:0", callers_file=callers)
    check = {"principalId": PR, "organizationId": SQC, "subject": "relations", "right": "RIGHT_WRITE"}
    status, error = call(server, "CheckAccess", check)
    assert (status, error["code"]) == (401, "unauthenticated")
    status, error = call(server, "CheckAccess", check, headers={"Authorization": "Bearer not-a-token"})
    assert (status, error["code"]) == (401, "unauthenticated")
    report = {"Authorization": f"Bearer {tokens['report']}"}
    status, answer = call(server, "CheckAccess", check, headers=report)
    assert status == 200 and answer["allowed"] is True
    status, error = call(server, "ListContacts", {"actorId": PR, "organizationId": SQC}, headers=report)
    assert (status, error["code"]) == (403, "permission_denied")
    assert "report" in error["message"]
    portal = {"Authorization": f"Bearer {tokens['portal']}"}
    status, listed = call(server, "ListContacts", {"actorId": PR, "organizationId": SQC}, headers=portal)
    assert status == 200 and listed["contacts"]


def test_under_mutual_tls_the_certificate_names_the_http_caller(
    start_server: Callable[..., Running], tmp_path: Path
) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    make_pki(pki)
    server = start_server(
        http_listen="127.0.0.1:0",
        callers_file=write_callers(tmp_path / "callers.json"),
        tls_cert=pki / "server.pem",
        tls_key=pki / "server.key",
        tls_client_ca=pki / "ca.pem",
    )
    assert server.app.http is not None

    def https(name: str, method: str, body: dict[str, Any], token: str | None = None) -> tuple[int, dict[str, Any]]:
        context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        context.load_cert_chain(str(pki / f"{name}.pem"), str(pki / f"{name}.key"))
        assert server.app.http is not None
        connection = http.client.HTTPSConnection("localhost", server.app.http.port, context=context, timeout=10)
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        try:
            connection.request("POST", SERVICE + method, body=json.dumps(body), headers=headers)
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()

    check = {"principalId": PR, "organizationId": SQC, "subject": "relations", "right": "RIGHT_WRITE"}
    # A client that connects and never starts its handshake holds up no one else.
    silent = socket.create_connection(("127.0.0.1", server.app.http.port), timeout=10)
    # The certificate names the monthly-report service: it may check, not list contacts.
    status, answer = https("report", "CheckAccess", check)
    assert status == 200 and answer["allowed"] is True
    status, error = https("report", "ListContacts", {"actorId": PR, "organizationId": SQC})
    assert (status, error["code"]) == (403, "permission_denied")
    # A certificate no caller owns is refused, alone or with a valid token (as on gRPC).
    status, error = https("stranger", "CheckAccess", check)
    assert (status, error["code"]) == (401, "unauthenticated")
    status, error = https("stranger", "CheckAccess", check, token=PORTAL_TOKEN)
    assert (status, error["code"]) == (401, "unauthenticated")
    # No client certificate: the handshake itself fails.
    bare = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    connection = http.client.HTTPSConnection("localhost", server.app.http.port, context=bare, timeout=10)
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
        connection.request(
            "POST", SERVICE + "CheckAccess", body=json.dumps(check), headers={"Content-Type": "application/json"}
        )
        connection.getresponse().read()
    connection.close()
    silent.close()


def test_an_open_http_listener_needs_a_callers_file(tmp_path: Path) -> None:
    settings = Settings(database_url="sqlite://", http_listen="0.0.0.0:8080")
    with pytest.raises(ConfigError, match="without caller credentials"):
        require_callers_beyond_loopback(settings)
    with pytest.raises(ConfigError, match="without caller credentials"):
        check_http_listen(settings)
    with pytest.raises(ConfigError, match="host:port"):
        check_http_listen(Settings(database_url="sqlite://", http_listen="8080"))
    with pytest.raises(ConfigError, match="fixed port"):
        check_http_listen(Settings(database_url="sqlite://", http_listen="127.0.0.1:0", processes=2))
    check_http_listen(Settings(database_url="sqlite://", http_listen="127.0.0.1:8080", processes=2))


def test_curl_works_unaided(http_demo: Running) -> None:
    curl = shutil.which("curl")
    if curl is None:
        if os.environ.get("CI") == "true":
            pytest.fail("curl is required in CI: the HTTP/JSON face's documented call is made with it")
        pytest.skip("curl is not installed")
    assert http_demo.app.http is not None
    url = f"http://127.0.0.1:{http_demo.app.http.port}{SERVICE}CheckAccess"
    # The documented command (README, "HTTP/JSON"), as is.
    done = subprocess.run(
        [
            curl,
            "-sS",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            '{"principalId": "C-PR", "organizationId": "ORG-SQC", "subject": "relations", "right": "RIGHT_WRITE"}',
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert json.loads(done.stdout)["allowed"] is True
    refused = subprocess.run(
        [curl, "-sS", "-w", "\n%{http_code}", "-X", "POST", "-H", "Content-Type: application/json", "-d", "{}", url],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    body, _, code = refused.stdout.rpartition("\n")
    assert code == "400" and json.loads(body)["code"] == "invalid_argument"


def test_stopping_the_server_closes_the_http_face(tmp_path: Path, policy: Policy, clock: Clock) -> None:
    url = f"sqlite:///{tmp_path / 'stopping.db'}"
    load_demo(url, policy)
    app = AuthzApp(settings_for(url, tmp_path, http_listen="127.0.0.1:0"), clock=clock)
    app.start()
    assert app.http is not None
    port = app.http.port
    check = json.dumps({"principalId": PR, "organizationId": SQC, "subject": "relations", "right": "RIGHT_WRITE"})
    kept = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        kept.request("POST", SERVICE + "CheckAccess", body=check, headers={"Content-Type": "application/json"})
        first = kept.getresponse()
        assert first.status == 200 and json.loads(first.read())["allowed"] is True
        app.stop(grace=1)
        # A connection kept alive from before: told to go away, then closed.
        kept.request("POST", SERVICE + "CheckAccess", body=check, headers={"Content-Type": "application/json"})
        late = kept.getresponse()
        assert late.status == 503 and json.loads(late.read())["code"] == "unavailable"
        assert late.getheader("Connection") == "close"
    finally:
        kept.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_authz_serve_http_listen_flag(tmp_path: Path) -> None:
    authz = str(Path(sys.executable).with_name("authz"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")}
    env["AUTHZ_LISTEN"] = "127.0.0.1:0"
    process = subprocess.Popen(
        [authz, "serve", "--demo", "--http-listen", "127.0.0.1:0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = 0
        for line in process.stdout:
            if line.startswith("authz serving HTTP/JSON on 127.0.0.1:"):
                port = int(line.rsplit(":", 1)[1])
                break
        assert port, "authz serve did not print its HTTP port"
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        body = {"principalId": PR, "organizationId": SQC, "subject": "relations", "right": "RIGHT_WRITE"}
        connection.request(
            "POST", SERVICE + "CheckAccess", body=json.dumps(body), headers={"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        assert response.status == 200 and json.loads(response.read())["allowed"] is True
        connection.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
