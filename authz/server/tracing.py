"""OpenTelemetry traces: optional (`pip install authz[otel]`), off unless OTEL_* variables ask.

Tracing is on when the standard variables configure an exporter: `OTEL_TRACES_EXPORTER`
(`otlp` or `console`; `none` is off) or an OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), and `OTEL_SDK_DISABLED` is not `true`. The
rest of the standard variables (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
`OTEL_TRACES_SAMPLER`, `OTEL_PROPAGATORS`, the exporter's headers and timeouts) are read
by the SDK itself. A program embedding the server that has installed an SDK tracer
provider of its own keeps it: its exporters receive the spans.

What is traced: one SERVER span per RPC, a child of the caller's span when the call
carries W3C `traceparent` metadata (with its status code); and, inside it, one CLIENT
span per SQL statement the store runs for that call (writes, listings: the check path
never touches the store). Statements are recorded as text with bound values left out,
so no parameter (a code hash, a contact's email) reaches the trace.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from authz.store.sql import SqlStore

__all__ = ["Tracing", "tracing_from_env", "tracing_requested"]

log = logging.getLogger("authz.tracing")

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def tracing_requested(environ: Mapping[str, str]) -> bool:
    """Whether the OTEL_* variables ask for traces."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return any(environ.get(name, "").strip() for name in _ENDPOINTS)


class Tracing:
    """The tracer of the server, and the store's statements as child spans."""

    def __init__(self, tracer_provider: Any) -> None:
        from opentelemetry import propagate, trace

        self.provider = tracer_provider
        self.tracer = tracer_provider.get_tracer("authz.server")
        self._trace = trace
        self._extract = propagate.extract
        self._owned = False  # set when this module built the provider: shut it down with the server

    def extract(self, metadata: Any) -> Any:
        """The caller's trace context, from the call's metadata (W3C traceparent by default)."""
        carrier = {key: value for key, value in metadata or () if isinstance(value, str)}
        return self._extract(carrier) if carrier else None

    def trace_store(self, store: SqlStore) -> None:
        """A CLIENT span per statement the store runs while an RPC span is current (writes and listings)."""
        from opentelemetry.trace import SpanKind, Status, StatusCode

        tracer, trace = self.tracer, self._trace

        def begin(system: str, name: str, statement: str) -> object | None:
            parent = trace.get_current_span()
            if not parent.get_span_context().is_valid:
                return None  # start-up, the relay, the health monitor: no RPC to attach to
            operation = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "SQL"
            span: object = tracer.start_span(
                f"{operation} {system}",
                kind=SpanKind.CLIENT,
                attributes={"db.system": system, "db.name": name, "db.statement": statement[:2000]},
            )
            return span

        def end(span: Any, error: str | None) -> None:
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, error))
            span.end()

        store.observe_statements(begin, end)

    def shutdown(self) -> None:
        if self._owned:
            self.provider.shutdown()


def tracing_from_env(environ: Mapping[str, str]) -> Tracing | None:
    """Tracing as the OTEL_* variables say, or None (not asked, or the `otel` extra not installed)."""
    if not tracing_requested(environ):
        return None
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:
        log.warning("OTEL_* variables ask for traces but OpenTelemetry is not installed: pip install 'authz[otel]'")
        return None
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return Tracing(current)  # the embedding program's provider, with its exporters
    provider = TracerProvider()  # resource, sampler and limits from the OTEL_* variables
    exporters = [part.strip().lower() for part in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    for exporter in exporters:
        if exporter == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        elif exporter == "otlp":
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            except ImportError:
                log.warning("OTEL_TRACES_EXPORTER=otlp needs opentelemetry-exporter-otlp-proto-http: authz[otel]")
                continue
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        elif exporter != "none":
            log.warning("OTEL_TRACES_EXPORTER: %r is not supported here (otlp, console)", exporter)
    trace.set_tracer_provider(provider)
    tracing = Tracing(provider)
    tracing._owned = True
    log.info("traces on: exporters %s", ", ".join(exporters))
    return tracing
