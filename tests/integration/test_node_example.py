"""The Node example of docs/CALLING-FROM-NODE.md, run as written against a real server with the demo data."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from authz.server.auth import hash_token

from ..conftest import Running

pytestmark = pytest.mark.node

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "node"
_STAMP = ".authz-lock-sha256"  # written after an `npm ci` of the lockfile whose hash it holds


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required in CI: the Node example is part of the documented contract")
        pytest.skip(f"{name} is not installed")
    return found


@pytest.fixture(scope="module")
def installed() -> str:
    """`node`, once examples/node/node_modules holds exactly its lockfile (npm ci, skipped when it already does)."""
    node = _tool("node")
    npm = _tool("npm")
    lock = hashlib.sha256((EXAMPLE / "package-lock.json").read_bytes()).hexdigest()
    stamp = EXAMPLE / "node_modules" / _STAMP
    if not stamp.exists() or stamp.read_text() != lock:
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=EXAMPLE,
            check=True,
            capture_output=True,
            timeout=300,
        )
        stamp.write_text(lock)
    return node


def run_example(node: str, target: str, token: str | None = None) -> list[str]:
    env = {**os.environ, "AUTHZ_TARGET": target}
    env.pop("AUTHZ_TOKEN", None)
    if token is not None:
        env["AUTHZ_TOKEN"] = token
    done = subprocess.run(
        [node, "check.js"], cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_the_node_example_checks_and_decodes_error_details(installed: str, demo: Running) -> None:
    lines = run_example(installed, f"127.0.0.1:{demo.app.port}")
    revision = demo.client.check("C-PR", "ORG-SQC", "relations", "write").revision
    assert lines[0] == f"CheckAccess C-PR relations write on ORG-SQC: allowed=true revision={revision}"
    assert lines[1].startswith("GrantRelation without attestation: INVALID_ARGUMENT ")
    # Every violation, decoded from the google.rpc.BadRequest in the trailer.
    assert lines[2:4] == [
        "  violation attestation.authorizes_acting: must be attested (true)",
        "  violation attestation.changes_accurate: must be attested (true)",
    ]
    assert lines[4].startswith("GrantRelation by C-IND: PERMISSION_DENIED ")
    assert lines[5].startswith("  reason ") and lines[5].endswith(" (authz.ccq.qc.ca)")
    assert len(lines) == 6


def test_the_node_example_sends_its_token(installed: str, start_server: Callable[..., Running], tmp_path: Path) -> None:
    token = "node-example-token-0123456789"
    callers = tmp_path / "callers.json"
    callers.write_text(json.dumps({"callers": [{"name": "node", "token_sha256": hash_token(token), "methods": ["*"]}]}))
    server = start_server(callers_file=callers)
    lines = run_example(installed, f"127.0.0.1:{server.app.port}", token=token)
    assert lines[0].startswith("CheckAccess C-PR relations write on ORG-SQC: allowed=true ")
    env = {**os.environ, "AUTHZ_TARGET": f"127.0.0.1:{server.app.port}", "AUTHZ_TOKEN": "wrong-token"}
    refused = subprocess.run(
        [installed, "check.js"], cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert refused.returncode == 1 and "UNAUTHENTICATED" in refused.stderr.upper()
