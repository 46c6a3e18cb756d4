"""Metrics, JSON logs and traces, read from a real server after real traffic."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from authz_client import InvalidArgumentError, ResourceExhaustedError, Right
from prometheus_client.parser import text_string_to_metric_families

from authz.server.tracing import tracing_requested

from ..conftest import Running
from .helpers import codes_for
from .test_serve_process import free_port

AUTHZ = str(Path(sys.executable).with_name("authz"))
PR, SQC, LUC = "C-PR", "ORG-SQC", "C-IND"
LEGACY_USER, LEGACY_PASSWORD = "sqc-admin", "demo-legacy-password"


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.status == 200
        text = answer.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def rpc(method: str, code: str | None = None, **extra: str) -> dict[str, str]:
    labels = {"grpc_type": "unary", "grpc_service": "authz.v1.AuthzService", "grpc_method": method, **extra}
    if code is not None:
        labels["grpc_code"] = code
    return labels


def test_metrics_after_traffic(start_server: Callable[..., Running]) -> None:
    server = start_server(metrics_listen="127.0.0.1:0")
    port = server.app.observability.port
    assert port
    client = server.client
    for _ in range(3):
        assert client.allowed(PR, SQC, "relations", Right.RIGHT_WRITE)
    assert not client.allowed("C-AUTRE", SQC, "relations", Right.RIGHT_WRITE)
    answers = client.batch_check([client_check(PR, "relations"), client_check("C-AUTRE", "relations")])
    assert [a.allowed for a in answers] == [True, False]
    with pytest.raises(InvalidArgumentError):
        client.check(PR, SQC, "formation", "read")  # not a subject of the policy
    for _ in range(2):
        with pytest.raises(InvalidArgumentError):
            client.redeem_link_code("acct-x", "AAAA-AAAA-AAAA-AAAA")
    client.issue_link_code(PR, SQC, LUC, request_id="issue-1", attest=True)

    server.app.observability.sample()  # what the sampler thread does every few seconds
    samples = scrape(port)
    assert value(samples, "grpc_server_started_total", **rpc("CheckAccess")) == 5
    assert value(samples, "grpc_server_handled_total", **rpc("CheckAccess", "OK")) == 4
    assert value(samples, "grpc_server_handled_total", **rpc("CheckAccess", "INVALID_ARGUMENT")) == 1
    assert value(samples, "grpc_server_handling_seconds_count", **rpc("CheckAccess")) == 5
    assert value(samples, "grpc_server_handling_seconds_bucket", **rpc("CheckAccess"), le="+Inf") == 5
    assert value(samples, "grpc_server_handled_total", **rpc("BatchCheckAccess", "OK")) == 1
    assert value(samples, "authz_decisions_total", rpc="CheckAccess", outcome="allowed") == 3
    assert value(samples, "authz_decisions_total", rpc="CheckAccess", outcome="denied") == 1
    assert value(samples, "authz_decisions_total", rpc="BatchCheckAccess", outcome="allowed") == 1
    assert value(samples, "authz_decisions_total", rpc="BatchCheckAccess", outcome="denied") == 1
    assert value(samples, "authz_link_attempts_total", rpc="RedeemLinkCode", outcome="refused") == 2
    assert value(samples, "grpc_server_handled_total", **rpc("IssueLinkCode", "OK")) == 1
    revision = server.store.revision()
    assert value(samples, "authz_engine_revision") == revision == value(samples, "authz_store_revision")
    assert value(samples, "authz_engine_lag_revisions") == 0
    assert value(samples, "authz_policy_info", policy_hash=server.app.policy.content_hash) == 1
    assert value(samples, "authz_policy_valid_on_disk") == 1
    assert value(samples, "authz_store_pool_size") >= 1
    assert ("authz_store_pool_connections", frozenset({("state", "checked_out")})) in samples
    # The health probe is the standard service: it is counted like any other.
    with grpc.insecure_channel(f"127.0.0.1:{server.app.port}") as channel:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    samples = scrape(port)
    labels = {"grpc_type": "unary", "grpc_service": "grpc.health.v1.Health", "grpc_method": "Check", "grpc_code": "OK"}
    assert value(samples, "grpc_server_handled_total", **labels) == 1

    # The mail relay sends the link code: the outbox drains and the counter follows.
    assert codes_for(server, "luc.cote@")
    server.app.observability.sample()
    samples = scrape(port)
    assert value(samples, "authz_outbox_sent_total") >= 1
    assert value(samples, "authz_outbox_pending") == 0 and value(samples, "authz_outbox_oldest_pending_seconds") == 0


def client_check(principal: str, subject: str) -> object:
    from authz_client import check_request

    return check_request(principal, SQC, subject, "write")


def test_throttled_link_attempts_are_counted(start_server: Callable[..., Running]) -> None:
    server = start_server(metrics_listen="127.0.0.1:0")
    throttled = 0
    for _ in range(15):
        try:
            server.client.redeem_link_code("acct-guess", "AAAA-AAAA-AAAA-AAAA")
        except ResourceExhaustedError:
            throttled += 1
        except InvalidArgumentError:
            pass
    assert throttled
    samples = scrape(server.app.observability.port or 0)
    assert value(samples, "authz_link_attempts_total", rpc="RedeemLinkCode", outcome="throttled") == throttled
    assert value(samples, "authz_link_attempts_total", rpc="RedeemLinkCode", outcome="refused") == 15 - throttled


@pytest.fixture
def json_server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, int, Path]]:
    """`authz serve --demo` as a process, JSON logs at DEBUG (every call logged), metrics on."""
    port, metrics_port = free_port(), free_port()
    outbox = tmp_path / "outbox"
    env = dict(
        os.environ,
        AUTHZ_LISTEN=f"127.0.0.1:{port}",
        AUTHZ_METRICS_LISTEN=f"127.0.0.1:{metrics_port}",
        AUTHZ_LOG_FORMAT="json",
        AUTHZ_LOG_LEVEL="DEBUG",
        AUTHZ_MAIL_URL=f"file://{outbox}",
        AUTHZ_MAIL_INTERVAL_SECONDS="0.1",
        AUTHZ_GRACE_SECONDS="3",
    )
    env.pop("AUTHZ_DATABASE_URL", None)
    log_path = tmp_path / "server.log"
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(
            [AUTHZ, "serve", "--demo"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=log, text=True
        )
    try:
        assert process.stdout is not None
        for line in process.stdout:  # the demo import's summary comes first
            if "authz serving on" in line:
                break
        else:
            raise AssertionError(log_path.read_text())
        yield process, port, metrics_port, outbox
    finally:  # a server that failed to start is not left behind either
        if process.poll() is None:
            process.kill()
            process.wait()


def mailed_codes(outbox: Path) -> list[str]:
    from email import message_from_bytes
    from email import policy as email_policy

    found = []
    for path in sorted(outbox.glob("*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=email_policy.default)
        body = message.get_body(preferencelist=("plain",))
        match = re.search(r"[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}", body.get_content() if body else "")
        if match:
            found.append(match.group(0))
    return found


def test_json_logs_one_object_per_line_and_no_secret(
    json_server: tuple[subprocess.Popen[str], int, int, Path], tmp_path: Path
) -> None:
    from authz_client import AuthzClient

    process, port, metrics_port, outbox = json_server
    with AuthzClient(f"127.0.0.1:{port}", timeout=10) as client:
        assert client.allowed(PR, SQC, "relations", "write")
        with pytest.raises(InvalidArgumentError):
            client.check(PR, SQC, "formation", "read")
        client.issue_link_code(PR, SQC, LUC, request_id="req-issue-42", attest=True)
        deadline = time.monotonic() + 10
        while not mailed_codes(outbox) and time.monotonic() < deadline:
            time.sleep(0.05)
        (code,) = mailed_codes(outbox)
        with pytest.raises(InvalidArgumentError):
            client.link_legacy_access("acct-julie", LEGACY_USER, LEGACY_PASSWORD + "-wrong")
        assert client.redeem_link_code("acct-luc", code).contact_id == LUC
        assert list(client.link_legacy_access("acct-julie", LEGACY_USER, LEGACY_PASSWORD).contact_ids) == [PR]
    samples = scrape(metrics_port)
    assert value(samples, "authz_link_attempts_total", rpc="LinkLegacyAccess", outcome="linked") == 1
    assert value(samples, "authz_link_attempts_total", rpc="RedeemLinkCode", outcome="linked") == 1
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0

    lines = (tmp_path / "server.log").read_text(encoding="utf-8").splitlines()
    assert len(lines) > 10
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record), record
    calls = [record for record in records if record["logger"] == "authz.access"]
    by_method = {record["method"].rsplit("/", 1)[-1]: record for record in calls}
    assert {"CheckAccess", "IssueLinkCode", "RedeemLinkCode", "LinkLegacyAccess"} <= set(by_method)
    for record in calls:
        assert {"method", "caller", "status", "duration_ms", "request_id"} <= set(record)
        assert isinstance(record["duration_ms"], float) and record["caller"]
    assert by_method["IssueLinkCode"]["request_id"] == "req-issue-42"
    assert any(r["method"].endswith("/CheckAccess") and r["status"] == "INVALID_ARGUMENT" for r in calls)
    assert any(r["message"].startswith("metrics on http://") for r in records)

    everything = "\n".join(lines)
    for secret in (code, code.replace("-", ""), LEGACY_PASSWORD):
        assert secret not in everything


@pytest.fixture
def in_memory_spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """An SDK tracer provider exporting to memory, as a program embedding the server would install it."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)  # once per process: OpenTelemetry refuses a second
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")  # "configured": the installed provider is used as is
    yield exporter
    processor.shutdown()


def test_tracing_is_off_unless_otel_variables_ask() -> None:
    assert not tracing_requested({})
    assert not tracing_requested({"OTEL_SERVICE_NAME": "authz"})
    assert not tracing_requested({"OTEL_TRACES_EXPORTER": "none"})
    assert not tracing_requested({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"})
    assert tracing_requested({"OTEL_TRACES_EXPORTER": "otlp"})
    assert tracing_requested({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})


def test_spans_per_rpc_with_the_callers_context_and_the_store_queries(
    in_memory_spans: object, start_server: Callable[..., Running]
) -> None:
    from authz_client.v1 import authz_pb2

    exporter = in_memory_spans
    server = start_server()
    assert server.app.observability.tracing is not None
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    stub = server.client._stub
    stub.CheckAccess(
        authz_pb2.CheckAccessRequest(principal_id=PR, organization_id=SQC, subject="relations", right=2),
        metadata=(("traceparent", f"00-{trace_id}-{parent_id}-01"),),
        timeout=10,
    )
    with pytest.raises(InvalidArgumentError):
        server.client.check(PR, SQC, "formation", "read")
    server.client.issue_link_code(PR, SQC, LUC, request_id="traced-write", attest=True)

    spans = exporter.get_finished_spans()  # type: ignore[attr-defined]
    checks = [s for s in spans if s.name == "authz.v1.AuthzService/CheckAccess"]
    assert len(checks) == 2
    joined = next(s for s in checks if s.parent is not None)
    assert format(joined.context.trace_id, "032x") == trace_id and format(joined.parent.span_id, "016x") == parent_id
    assert joined.attributes["rpc.grpc.status_code"] == 0 and joined.status.is_ok
    refused = next(s for s in checks if s.parent is None)
    assert refused.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    # The caller's mistake, not the server's: gRPC's semantic conventions leave the span's status unset.
    assert refused.status.is_unset
    write = next(s for s in spans if s.name == "authz.v1.AuthzService/IssueLinkCode")
    queries = [s for s in spans if s.parent is not None and s.parent.span_id == write.context.span_id]
    assert queries, "the store's statements are children of the write's span"
    assert {q.attributes["db.system"] for q in queries} == {"sqlite"}
    assert any(q.name.startswith("INSERT") for q in queries)
    # Nothing on the check path touches the store: no statement under a check's span.
    assert not [s for s in spans if s.parent is not None and s.parent.span_id == joined.context.span_id]


def start_process(tmp_path: Path, name: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], Path]:
    log_path = tmp_path / f"{name}.log"
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(
            [AUTHZ, "serve"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=log, text=True
        )
    assert process.stdout is not None
    for line in process.stdout:
        if "authz serving on" in line:
            return process, log_path
    process.kill()
    process.wait()
    raise AssertionError(log_path.read_text())


def test_multiprocess_mode_serves_every_process_figures(tmp_path: Path) -> None:
    """Two server processes writing to one PROMETHEUS_MULTIPROC_DIR; /metrics of one shows both."""
    from authz_client import AuthzClient

    folder = tmp_path / "prometheus"
    folder.mkdir()
    base = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(folder), AUTHZ_MAIL_URL=f"file://{tmp_path / 'outbox'}")
    base.pop("AUTHZ_DATABASE_URL", None)
    ports = [free_port(), free_port()]
    metrics_port = free_port()
    processes = []
    try:
        # The first imports the demo data and serves /metrics; the second only writes its files.
        demo = str(Path(__file__).parents[2] / "authz" / "demo" / "demo.json")
        report = str(tmp_path / "import-report.json")  # not beside demo.json, in the source tree
        subprocess.run([AUTHZ, "import", demo, "--report", report],
                       cwd=tmp_path, env=base, check=True, capture_output=True, timeout=60)  # fmt: skip
        first = dict(base, AUTHZ_LISTEN=f"127.0.0.1:{ports[0]}", AUTHZ_METRICS_LISTEN=f"127.0.0.1:{metrics_port}")
        processes.append(start_process(tmp_path, "first", first)[0])
        processes.append(start_process(tmp_path, "second", dict(base, AUTHZ_LISTEN=f"127.0.0.1:{ports[1]}"))[0])
        for port, calls in zip(ports, (3, 4), strict=True):
            with AuthzClient(f"127.0.0.1:{port}", timeout=10) as client:
                for _ in range(calls):
                    assert client.allowed(PR, SQC, "relations", "write")
        samples = scrape(metrics_port)
        assert value(samples, "grpc_server_handled_total", **rpc("CheckAccess", "OK")) == 7  # summed over both
        assert value(samples, "authz_decisions_total", rpc="CheckAccess", outcome="allowed") == 7
        revisions = {
            dict(labels)["pid"]: sample for (name, labels), sample in samples.items() if name == "authz_engine_revision"
        }
        assert set(revisions) == {str(process.pid) for process in processes}  # one series per live process
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=20)


def test_an_unknown_log_format_is_refused_at_start(tmp_path: Path) -> None:
    env = dict(os.environ, AUTHZ_LOG_FORMAT="xml", AUTHZ_LISTEN="127.0.0.1:0")
    done = subprocess.run([AUTHZ, "serve"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "AUTHZ_LOG_FORMAT='xml'" in done.stderr and "text, json" in done.stderr


def test_a_malformed_metrics_address_is_refused_at_start(tmp_path: Path) -> None:
    env = dict(os.environ, AUTHZ_METRICS_LISTEN="9464", AUTHZ_LISTEN="127.0.0.1:0")
    done = subprocess.run([AUTHZ, "serve"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "AUTHZ_METRICS_LISTEN='9464': expected host:port" in done.stderr
    assert not (tmp_path / "authz.db").exists()  # refused before the store was opened
