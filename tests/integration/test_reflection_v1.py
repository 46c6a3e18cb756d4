"""Server reflection answers on v1 (what recent grpcurl asks first) as on v1alpha."""

from __future__ import annotations

import grpc
from grpc_reflection.v1alpha import reflection_pb2

from ..conftest import Running


def test_reflection_v1_lists_the_services(demo: Running) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{demo.app.port}") as channel:
        # v1 and v1alpha are the same messages under another package name.
        info = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="authz.v1.AuthzService"),
        ]
        listed, described = list(info(iter(requests), timeout=10))
    names = {s.name for s in listed.list_services_response.service}
    assert {
        "authz.v1.AuthzService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names
    assert described.file_descriptor_response.file_descriptor_proto
