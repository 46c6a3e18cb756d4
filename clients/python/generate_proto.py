"""Generate the client's own copy of the messages and stubs: authz_client/v1 (run by `make proto`).

    python clients/python/generate_proto.py [OUT_DIR]

protoc names modules after the proto's path, so its output imports ``authz.v1``: the
server's package, which a client install does not have. This runs protoc on
protos/authz/v1/authz.proto into a scratch folder, then points those imports (and the
module name the messages register under) at ``authz_client.v1``. Only the Python
module paths change: the package ``authz.v1`` inside the descriptor, and so the method
names on the wire, stay as the proto says. tests/unit/test_client_generated_code.py
runs this into a temporary folder and compares, so the copy never drifts from the proto.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

CLIENT_ROOT = Path(__file__).resolve().parent
REPO_ROOT = CLIENT_ROOT.parents[1]
PROTO = Path("authz") / "v1" / "authz.proto"
GENERATED = ("authz_pb2.py", "authz_pb2.pyi", "authz_pb2_grpc.py", "authz_pb2_grpc.pyi")
DEFAULT_OUT = CLIENT_ROOT / "authz_client" / "v1"
INIT_TEXT = '"""Generated from protos/authz/v1/authz.proto by `make proto` (clients/python/generate_proto.py)."""\n'

# (old, new) pairs applied in order; each names a Python module path, never a proto name.
_REWRITES = (
    ("from authz.v1 import ", "from authz_client.v1 import "),
    ("'authz.v1.authz_pb2'", "'authz_client.v1.authz_pb2'"),
    ("generated code in authz/v1/authz_pb2_grpc.py", "generated code in authz_client/v1/authz_pb2_grpc.py"),
)


def rewrite(text: str) -> str:
    for old, new in _REWRITES:
        text = text.replace(old, new)
    return text


def generate(out_dir: Path, protos: Path = REPO_ROOT / "protos") -> list[Path]:
    """Write the four generated files and an ``__init__.py`` into ``out_dir``; return their paths."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    with tempfile.TemporaryDirectory(prefix="authz-client-proto-") as scratch:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"-I{protos}",
                f"--python_out={scratch}",
                f"--grpc_python_out={scratch}",
                f"--mypy_out={scratch}",
                f"--mypy_grpc_out={scratch}",
                str(protos / PROTO),
            ],
            check=True,
            env=env,
            capture_output=True,
        )
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name in GENERATED:
            target = out_dir / name
            target.write_text(rewrite((Path(scratch) / "authz" / "v1" / name).read_text(encoding="utf-8")), "utf-8")
            written.append(target)
    init = out_dir / "__init__.py"
    init.write_text(INIT_TEXT, encoding="utf-8")
    return [*written, init]


if __name__ == "__main__":
    for path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT):
        print(path)
