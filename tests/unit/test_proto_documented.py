"""The proto is the API's reference for callers in every language: each of its parts says what it is."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parents[2]
PROTO = ROOT / "protos" / "authz" / "v1" / "authz.proto"

# Source-location path tags (descriptor.proto field numbers).
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 4, 5, 6
_MESSAGE_FIELD, _MESSAGE_NESTED, _MESSAGE_ENUM, _MESSAGE_ONEOF = 2, 3, 4, 8
_ENUM_VALUE, _SERVICE_METHOD = 2, 2


def _described_file() -> descriptor_pb2.FileDescriptorProto:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{ROOT / 'protos'}",
            "--include_source_info",
            "--descriptor_set_out=/dev/stdout",
            str(PROTO),
        ],
        check=True,
        capture_output=True,
    ).stdout
    files = descriptor_pb2.FileDescriptorSet.FromString(out)
    return files.file[0]


def _commented(file: descriptor_pb2.FileDescriptorProto) -> set[tuple[int, ...]]:
    return {
        tuple(location.path)
        for location in file.source_code_info.location
        if location.leading_comments.strip() or location.trailing_comments.strip()
    }


def _parts(file: descriptor_pb2.FileDescriptorProto) -> list[tuple[str, tuple[int, ...]]]:
    parts: list[tuple[str, tuple[int, ...]]] = []

    def message(described: descriptor_pb2.DescriptorProto, path: tuple[int, ...], name: str) -> None:
        parts.append((f"message {name}", path))
        for i, field in enumerate(described.field):
            parts.append((f"field {name}.{field.name}", (*path, _MESSAGE_FIELD, i)))
        for i, oneof in enumerate(described.oneof_decl):
            parts.append((f"oneof {name}.{oneof.name}", (*path, _MESSAGE_ONEOF, i)))
        for i, nested in enumerate(described.nested_type):
            message(nested, (*path, _MESSAGE_NESTED, i), f"{name}.{nested.name}")
        for i, nested_enum in enumerate(described.enum_type):
            enum(nested_enum, (*path, _MESSAGE_ENUM, i), f"{name}.{nested_enum.name}")

    def enum(described: descriptor_pb2.EnumDescriptorProto, path: tuple[int, ...], name: str) -> None:
        parts.append((f"enum {name}", path))
        for i, value in enumerate(described.value):
            parts.append((f"enum value {value.name}", (*path, _ENUM_VALUE, i)))

    for i, described in enumerate(file.message_type):
        message(described, (_FILE_MESSAGE, i), described.name)
    for i, described_enum in enumerate(file.enum_type):
        enum(described_enum, (_FILE_ENUM, i), described_enum.name)
    for i, service in enumerate(file.service):
        parts.append((f"service {service.name}", (_FILE_SERVICE, i)))
        for j, method in enumerate(service.method):
            parts.append((f"rpc {method.name}", (_FILE_SERVICE, i, _SERVICE_METHOD, j)))
    return parts


def test_every_message_field_enum_value_and_rpc_has_a_comment() -> None:
    file = _described_file()
    commented = _commented(file)
    parts = _parts(file)
    assert len(parts) > 200  # the walk found the proto's parts
    missing = [name for name, path in parts if path not in commented]
    assert not missing, f"document these in {PROTO.relative_to(ROOT)}: {missing}"


def test_the_proto_names_its_package_for_each_language() -> None:
    options = _described_file().options
    assert options.go_package == "github.com/ccq/authz/gen/go/authz/v1;authzv1"
    assert options.java_package == "ca.qc.ccq.authz.v1"
    assert options.java_multiple_files
    assert options.java_outer_classname == "AuthzProto"
    assert options.csharp_namespace == "Ccq.Authz.V1"


def test_the_proto_cites_no_issue_and_no_file_outside_the_repository() -> None:
    text = PROTO.read_text(encoding="utf-8")
    assert not re.search(r"\bissue \d+", text, re.IGNORECASE)
    assert not re.search(r"\b(DOMAIN|API|REPLICAS|STYLE)\.md\b", text)
