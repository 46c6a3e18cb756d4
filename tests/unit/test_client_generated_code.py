"""The client's copy of the generated code (clients/python/authz_client/v1) is exactly what
`make proto` makes of the proto today, and imports nothing of the server."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLIENT_V1 = ROOT / "clients" / "python" / "authz_client" / "v1"


def _generator() -> object:
    spec = importlib.util.spec_from_file_location("generate_proto", ROOT / "clients" / "python" / "generate_proto.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_client_generated_code_matches_the_proto(tmp_path: Path) -> None:
    generator = _generator()
    written = generator.generate(tmp_path)  # type: ignore[attr-defined]
    names = sorted(path.name for path in written)
    assert names == sorted([*generator.GENERATED, "__init__.py"])  # type: ignore[attr-defined]
    stale = [name for name in names if (tmp_path / name).read_text() != (CLIENT_V1 / name).read_text()]
    assert not stale, f"clients/python/authz_client/v1 is stale for {stale}: run `make proto` and commit"


def test_client_copy_imports_no_server_module_and_keeps_the_wire_names() -> None:
    for name in ("authz_pb2.py", "authz_pb2_grpc.py", "authz_pb2.pyi", "authz_pb2_grpc.pyi"):
        text = (CLIENT_V1 / name).read_text()
        assert "from authz.v1" not in text and "import authz.v1" not in text, name
    assert "'/authz.v1.AuthzService/CheckAccess'" in (CLIENT_V1 / "authz_pb2_grpc.py").read_text()
    # In a fresh interpreter with the repository root kept off the path, the client still imports.
    code = (
        "import sys; sys.path = [p for p in sys.path if p not in ('', {root!r})]; "
        "sys.path.insert(0, {client!r}); "
        "import authz_client, authz_client.v1.authz_pb2 as pb; "
        "assert 'authz' not in sys.modules, sorted(m for m in sys.modules if m.startswith('authz')); "
        "print(pb.DESCRIPTOR.package)"
    ).format(root=str(ROOT), client=str(ROOT / "clients" / "python"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "authz.v1"
