"""Hot reload of a running server: valid, invalid, valid edits while a client keeps checking."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from authz_client import Right
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import select

from authz.domain.model import Right as DomainRight
from authz.domain.model import Role
from authz.engine.index import DecisionEngine
from authz.engine.policy import Policy
from authz.policytools.validate import validate
from authz.server.reload import POLICY_HEALTH_NAME, PolicyWatcher
from authz.store import tables
from tests.conftest import Running
from tests.policies.helpers import DIRIGEANT_MANAGES, copy_policy, edit

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_edits_of_a_running_server_take_effect_only_when_valid(
    start_server: Callable[..., Running], tmp_path: Path
) -> None:
    folder = copy_policy(tmp_path / "policy")
    original = validate(folder).content_hash
    server = start_server(policy_dir=folder)
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{server.app.port}"))

    def policy_health() -> int:
        return int(health.Check(health_pb2.HealthCheckRequest(service=POLICY_HEALTH_NAME), timeout=5).status)

    samples: list[tuple[float, bool, str]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def keep_checking() -> None:
        while not stop.is_set():
            try:
                response = server.client.check("C-DIR1", "ORG-SQC", "relations", Right.RIGHT_WRITE)
                samples.append((time.monotonic(), response.allowed, response.policy_hash))
            except BaseException as exc:  # any failed request fails the test
                errors.append(exc)
                return

    def latest_hash() -> str:
        return samples[-1][2] if samples else ""

    checker = threading.Thread(target=keep_checking, daemon=True)
    checker.start()
    try:
        wait_until(lambda: len(samples) > 20 or bool(errors))
        assert not errors, errors
        assert latest_hash() == original and samples[-1][1] is True
        assert policy_health() == SERVING

        # 1. Valid: dirigeants no longer manage. Takes effect at the next poll.
        edit(folder, "policy.csv", DIRIGEANT_MANAGES, "")
        edited = validate(folder).content_hash
        wait_until(lambda: latest_hash() == edited)
        assert policy_health() == SERVING

        # 2. Invalid: an unknown role. Refused; the edited policy keeps serving.
        edit(folder, "policy.csv", "g2, write, read\n", "g2, write, read\ng, directeur, relations, write\n")
        broken = validate(folder).content_hash
        wait_until(lambda: policy_health() == NOT_SERVING)
        during_invalid = len(samples)
        time.sleep(1.2)  # a few more polls: nothing changes
        assert {h for _, _, h in samples[during_invalid:]} == {edited}
        assert server.app.policy_watcher.status.pending_hash == broken

        # 3. Valid again: back to the shipped content.
        copy_policy(folder)
        wait_until(lambda: latest_hash() == original)
        assert policy_health() == SERVING
        wait_until(lambda: len(samples) > during_invalid + 200)
    finally:
        stop.set()
        checker.join(timeout=10)
    assert not errors, errors

    # Each decision matches the policy it says it was made under, and the policy switched
    # exactly twice: original -> edited -> original, never to the invalid one.
    assert {(h, allowed) for _, allowed, h in samples} == {(original, True), (edited, False)}
    phases = [h for i, (_, _, h) in enumerate(samples) if i == 0 or samples[i - 1][2] != h]
    assert phases == [original, edited, original]

    with server.store.engine.connect() as connection:
        rows = connection.execute(
            select(tables.audit_log.c.action, tables.audit_log.c.changes)
            .where(tables.audit_log.c.actor_id == "policy-reload")
            .order_by(tables.audit_log.c.id)
        ).all()
    assert [(action, changes["policy_hash"]) for action, changes in rows] == [
        ("policy_reload", edited),
        ("policy_reload_refused", broken),
        ("policy_reload", original),
    ]
    assert any("unknown role 'directeur'" in error for error in rows[1][1]["errors"])


def test_a_reload_request_revalidates_at_once(tmp_path: Path) -> None:
    """What SIGHUP does: no wait for the next poll (here an hour away)."""
    folder = copy_policy(tmp_path / "policy")
    engine = DecisionEngine(Policy.load(folder))
    watcher = PolicyWatcher(folder, engine, interval=3600)
    watcher.start()
    try:
        edit(folder, "policy.csv", DIRIGEANT_MANAGES, "")
        watcher.request_reload()
        wait_until(lambda: watcher.status.reloads == 1, timeout=5)
        assert engine.policy.content_hash == validate(folder).content_hash
        assert engine.policy.default_right(Role.DIRIGEANT, "relations") is DomainRight.NONE
    finally:
        watcher.stop()


def test_sighup_makes_authz_serve_reload_its_policy(tmp_path: Path) -> None:
    folder = copy_policy(tmp_path / "policy")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = dict(os.environ, AUTHZ_LISTEN=f"127.0.0.1:{port}", AUTHZ_POLICY_DIR=str(folder), AUTHZ_GRACE_SECONDS="1")
    env.pop("AUTHZ_DATABASE_URL", None)
    authz = str(Path(sys.executable).with_name("authz"))
    process = subprocess.Popen(
        [authz, "serve"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or []), daemon=True)
    reader.start()
    try:
        wait_until(lambda: any("authz serving on" in line for line in lines), timeout=30)
        digest = validate(folder).content_hash
        # Unchanged files: polling would never reload; only SIGHUP re-validates and re-applies.
        process.send_signal(signal.SIGHUP)
        wait_until(lambda: any(f"re-validated on request, unchanged: {digest}" in line for line in lines), timeout=10)
        # Nothing changed: the log does not call it a reload from a policy to itself.
        assert not any(f"{digest} -> {digest}" in line for line in lines)
        assert process.poll() is None
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)


def test_authz_serve_refuses_to_start_on_an_invalid_policy(tmp_path: Path) -> None:
    broken = Path(__file__).resolve().parent / "fixtures" / "broken" / "unknown_role"
    env = dict(os.environ, AUTHZ_LISTEN="127.0.0.1:0", AUTHZ_POLICY_DIR=str(broken))
    env.pop("AUTHZ_DATABASE_URL", None)
    authz = str(Path(sys.executable).with_name("authz"))
    done = subprocess.run([authz, "serve"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"{broken / 'policy.csv'}:19: error: unknown role 'directeur'" in done.stderr
