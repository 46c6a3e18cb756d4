"""Serve an in-process fake of the authz service for the client tests.

Only ``authz_client`` is needed (installed, or from this folder): these tests run in an
environment with the client alone, as CI does after `pip install ./clients/python`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

_CLIENT_ROOT = Path(__file__).resolve().parents[1]  # clients/python
_TESTS = Path(__file__).resolve().parent
for _path in (_CLIENT_ROOT, _TESTS):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import pytest  # noqa: E402
from fake_authz import FakeAuthz, FakeServer, start_fake_server  # noqa: E402


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeServer]:
    server = start_fake_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def fake(fake_server: FakeServer) -> FakeAuthz:
    """The fake servicer, with its recorded calls and configured failures cleared for this test."""
    fake_server.servicer.reset()
    return fake_server.servicer


@pytest.fixture()
def target(fake_server: FakeServer) -> str:
    return fake_server.target
