"""The client against the real server: retrying across a restart, token and TLS in one call, error text."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest
from authz_client import AuthzClient, InvalidArgumentError, RetryPolicy, Tls, UnavailableError

from authz.engine.policy import Policy
from authz.server.app import AuthzApp, open_store

from ..conftest import load_demo, settings_for
from ..security.test_callers import PORTAL_TOKEN, make_pki, write_callers
from .test_serve_process import free_port

PR, SQC, LUC = "C-PR", "ORG-SQC", "C-IND"


class CountingJitter:
    def __init__(self) -> None:
        self.pauses = 0

    def __call__(self, low: float, high: float) -> float:
        self.pauses += 1
        return high


def test_the_client_retries_across_a_server_restart(tmp_path: Path, policy: Policy) -> None:
    url = f"sqlite:///{tmp_path / 'authz.db'}"
    port = free_port()
    settings = settings_for(url, tmp_path).with_overrides(listen=f"127.0.0.1:{port}")
    open_store(settings).close()
    load_demo(url, policy)
    first = AuthzApp(settings)
    first.start()
    jitter = CountingJitter()
    retry = RetryPolicy(max_attempts=40, initial_backoff=0.05, max_backoff=0.3, jitter=jitter)
    apps = [first]
    with AuthzClient(f"127.0.0.1:{port}", timeout=30, retry=retry) as client:
        try:
            assert client.allowed(PR, SQC, "relations", "write")
            first.stop(grace=0)

            # Down: a write without a request id is not retried, and says so at once.
            with pytest.raises(UnavailableError):
                client.issue_link_code(PR, SQC, LUC, attest=True)
            assert jitter.pauses == 0

            def come_back() -> None:
                time.sleep(1.0)
                second = AuthzApp(settings)
                second.start()
                apps.append(second)

            restart = threading.Thread(target=come_back)
            restart.start()
            # A read and a write carrying a request id, sent while the server is away, answer once it is back.
            assert client.allowed(PR, SQC, "relations", "write")
            assert jitter.pauses > 0
            issued = client.issue_link_code(PR, SQC, LUC, request_id="retry-across-restart", attest=True)
            restart.join()
            again = client.issue_link_code(PR, SQC, LUC, request_id="retry-across-restart", attest=True)
            assert again.expires_at == issued.expires_at  # the same request answered twice, written once
        finally:
            for app in apps[1:]:
                app.stop(grace=0)


def test_token_and_tls_in_one_call(tmp_path: Path, start_server: object, caplog: pytest.LogCaptureFixture) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    make_pki(pki)
    server = start_server(  # type: ignore[operator]
        callers_file=write_callers(tmp_path / "callers.json"), tls_cert=pki / "server.pem", tls_key=pki / "server.key"
    )
    caplog.set_level(logging.INFO, logger="authz.access")
    with AuthzClient(f"localhost:{server.app.port}", token=PORTAL_TOKEN, tls=Tls(ca=pki / "ca.pem")) as client:
        assert client.allowed(PR, SQC, "relations", "write")
        client.issue_link_code(PR, SQC, LUC, request_id="tls-1", attest=True)
    logged = [r for r in caplog.records if r.name == "authz.access" and getattr(r, "request_id", "") == "tls-1"]
    assert [(r.caller, r.status) for r in logged] == [("portal", "OK")]  # type: ignore[attr-defined]
    # Dialing the address instead of the name: the certificate is checked against server_name.
    with AuthzClient(
        f"127.0.0.1:{server.app.port}",
        token=PORTAL_TOKEN,
        tls=Tls(ca=(pki / "ca.pem").read_bytes(), server_name="localhost"),
    ) as client:
        assert client.allowed(PR, SQC, "relations", "write")


def test_server_errors_read_once(demo: object) -> None:
    client: AuthzClient = demo.client  # type: ignore[attr-defined]
    with pytest.raises(InvalidArgumentError) as caught:
        client.check(PR, SQC, "formation", "read")
    text = str(caught.value)
    assert "unknown subject 'formation'" in text and text.count("unknown subject 'formation'") == 1
