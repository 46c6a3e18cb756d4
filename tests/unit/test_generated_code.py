"""The committed generated code is exactly what protoc makes of the proto, so no one edits it by hand."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ("authz_pb2.py", "authz_pb2.pyi", "authz_pb2_grpc.py", "authz_pb2_grpc.pyi")


def test_generated_code_matches_the_proto(tmp_path: Path) -> None:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{ROOT / 'protos'}",
            f"--python_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            f"--mypy_out={tmp_path}",
            f"--mypy_grpc_out={tmp_path}",
            str(ROOT / "protos" / "authz" / "v1" / "authz.proto"),
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    stale = [
        name
        for name in GENERATED
        if (tmp_path / "authz" / "v1" / name).read_text() != (ROOT / "authz" / "v1" / name).read_text()
    ]
    assert not stale, f"authz/v1 is stale for {stale}: run `make proto` and commit"
