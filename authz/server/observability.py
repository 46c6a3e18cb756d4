"""Metrics, the access log and RPC spans: one server interceptor, and /metrics over HTTP.

Metrics (prometheus_client) carry the names gRPC dashboards know, as go-grpc-prometheus
and py-grpc-prometheus spell them: `grpc_server_started_total` and
`grpc_server_handling_seconds` by `grpc_type`, `grpc_service` and `grpc_method`, and
`grpc_server_handled_total` by those and `grpc_code` (`OK`, `INVALID_ARGUMENT`...). The
service's own `authz_*` families are read from the running parts (engine, policy watcher,
mail relay, store): in-memory figures when /metrics is scraped, the store's (revision,
outbox backlog) by a sampler thread every few seconds, so a scrape never waits on the
database.

The cost on the check path is a few microseconds against a call of half a millisecond:
label children are bound once per method and code, the clock is read twice, and a
successful check writes no log line (DEBUG only; `authz bench` measures it all).

Several processes: with PROMETHEUS_MULTIPROC_DIR set (before the process starts, and
emptied at each deployment), every process writes its figures to files there and
/metrics serves them all, summed (counters, histograms) or per pid (gauges, `process_*`
included). `authz serve --processes N` turns this on by itself (`enable_multiprocess`),
serves /metrics once from the supervisor, and calls `mark_process_dead(pid)` as soon as a
worker ends (authz/server/supervisor.py).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.registry import Collector

from authz.server.tracing import Tracing

__all__ = [
    "HANDLING_BUCKETS",
    "QUIET_METHODS",
    "Metrics",
    "Observability",
    "ObservabilityInterceptor",
    "caller_namer",
    "mark_process_dead",
    "multiprocess_dir",
]

log = logging.getLogger("authz.server")
access = logging.getLogger("authz.access")

# Sub-millisecond buckets first: a check takes ~0.5 ms end to end, most of it transport.
HANDLING_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Successful calls of these are logged at DEBUG only: thousands a second, each the same line.
QUIET_METHODS = frozenset(
    {
        "/authz.v1.AuthzService/CheckAccess",
        "/authz.v1.AuthzService/BatchCheckAccess",
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
    }
)
_LINK_RPCS = frozenset({"RedeemLinkCode", "LinkLegacyAccess"})
_LINK_OUTCOMES = {
    grpc.StatusCode.OK: "linked",
    grpc.StatusCode.INVALID_ARGUMENT: "refused",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "throttled",
}
_SERVICE_PREFIX: Final = "/authz.v1.AuthzService/"
# The codes a server span reports as errors, as OpenTelemetry's semantic conventions for gRPC say:
# the others (NOT_FOUND, PERMISSION_DENIED, INVALID_ARGUMENT...) are the caller's affair, not the server's.
SERVER_ERROR_CODES: Final = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
_GAUGE_MODE: Final = "liveall"  # multiprocess: one series per live process (pid label)


def multiprocess_dir() -> str | None:
    """The folder of prometheus_client's multiprocess mode, if this process uses it."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def enable_multiprocess(directory: str) -> None:
    """Turn prometheus_client's multiprocess mode on for this process and those it forks from now on.

    The library picks its value class when it is first imported; it is picked again here, so
    that metrics made after this call (in forked workers) write their figures under `directory`.
    """
    from prometheus_client import values

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


def process_families() -> Iterator[Any]:
    """This process's `process_*` families (CPU, memory, file descriptors, start time), read now."""
    from prometheus_client import ProcessCollector

    return iter(ProcessCollector(registry=None).collect())


def mark_process_dead(pid: int) -> None:
    """A supervisor calls this when a worker ends: its live gauges leave /metrics."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def _split_method(path: str) -> tuple[str, str]:
    service, _, method = path.strip("/").partition("/")
    return service, method


class Metrics:
    """Every metric family of one server, on its own registry (several servers can share a process in tests)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        grpc_labels = ("grpc_type", "grpc_service", "grpc_method")
        self.started = Counter(
            "grpc_server_started_total", "RPCs started on the server.", grpc_labels, registry=registry
        )
        self.handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, by status code.",
            (*grpc_labels, "grpc_code"),
            registry=registry,
        )
        self.msg_received = Counter(
            "grpc_server_msg_received_total",
            "RPC stream messages received on the server.",
            grpc_labels,
            registry=registry,
        )
        self.msg_sent = Counter(
            "grpc_server_msg_sent_total", "gRPC stream messages sent by the server.", grpc_labels, registry=registry
        )
        self.handling = Histogram(
            "grpc_server_handling_seconds",
            "Time the server took to handle an RPC, from the handler's start to its answer.",
            grpc_labels,
            buckets=HANDLING_BUCKETS,
            registry=registry,
        )
        self.decisions = Counter(
            "authz_decisions_total",
            "Access decisions answered, by RPC and outcome.",
            ("rpc", "outcome"),
            registry=registry,
        )
        self.link_attempts = Counter(
            "authz_link_attempts_total",
            "Link-code redemptions and legacy-password links, by outcome (linked, refused, throttled, error).",
            ("rpc", "outcome"),
            registry=registry,
        )

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, doc, labels, registry=registry, multiprocess_mode=_GAUGE_MODE)

        self.engine_revision = gauge("authz_engine_revision", "Store revision the in-memory engine answers from.")
        self.store_revision = gauge("authz_store_revision", "Latest committed store revision (sampled).")
        self.lag = gauge(
            "authz_engine_lag_revisions", "Revisions committed to the store that this process's engine has not applied."
        )
        self.policy_info = gauge(
            "authz_policy_info", "The policy being served (value 1), by content hash.", ("policy_hash",)
        )
        self.policy_loaded = gauge("authz_policy_loaded_timestamp_seconds", "When the serving policy was loaded.")
        self.policy_valid = gauge(
            "authz_policy_valid_on_disk", "1 while the policy folder on disk is valid; 0 while an edit is refused."
        )
        self.reloads = Counter("authz_policy_reloads_total", "Policy edits put in service.", registry=registry)
        self.refusals = Counter("authz_policy_reload_refusals_total", "Policy edits refused.", registry=registry)
        self.outbox_pending = gauge("authz_outbox_pending", "Link-code emails waiting to be sent (sampled).")
        self.outbox_oldest = gauge(
            "authz_outbox_oldest_pending_seconds", "Age of the oldest email waiting to be sent; 0 when none (sampled)."
        )
        self.outbox_abandoned = gauge(
            "authz_outbox_abandoned", "Emails given up on after their last attempt, left for an operator (sampled)."
        )
        self.outbox_sent = Counter("authz_outbox_sent_total", "Emails handed to the mail server.", registry=registry)
        self.outbox_failures = Counter(
            "authz_outbox_failures_total", "Failed attempts to hand an email to the mail server.", registry=registry
        )
        self.pool = gauge(
            "authz_store_pool_connections", "Store connections by state (checked_out, idle, overflow).", ("state",)
        )
        self.pool_size = gauge("authz_store_pool_size", "Configured size of the store's connection pool.")
        # Several processes: each worker's own process_* figures, one series per pid, sampled.
        self.process: dict[str, Gauge] = {}
        if multiprocess_dir() is not None:
            for family in process_families():
                for sample in family.samples:  # process_cpu_seconds_total: a counter's sample name
                    self.process[sample.name] = gauge(sample.name, family.documentation)


class _Off:
    """Stands for a metric child when metrics are off: the interceptor keeps one code path."""

    def inc(self, amount: float = 1) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass


_OFF = _Off()


@dataclass
class _Method:
    """Pre-bound label children of one RPC: no label look-up per call."""

    name: str
    started: Any
    received: Any
    sent: Any
    handling: Any
    handled: dict[grpc.StatusCode, Any]
    quiet: bool
    on_answer: Callable[[Any], None] | None
    link: bool


class ObservabilityInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Counts, times, logs and (when asked) traces every call, whatever its outcome.

    Put first in the server's interceptors, so that calls the caller check refuses are
    counted and logged too.
    """

    def __init__(
        self,
        metrics: Metrics | None,
        *,
        tracing: Tracing | None = None,
        caller_name: Callable[[Any, grpc.ServicerContext], str] | None = None,
    ) -> None:
        self.metrics = metrics  # None: metrics off, calls are only logged (and traced)
        self.tracing = tracing
        self.caller_name = caller_name or (lambda _metadata, context: context.peer())
        self._methods: dict[str, _Method] = {}
        self._lock = threading.Lock()
        # Run before each AuthzService call (worker processes: catch up with a sibling's writes); None: nothing.
        self.before_call: Callable[[grpc.ServicerContext], None] | None = None

    def _method(self, path: str, kind: str) -> _Method:
        found = self._methods.get(path)
        if found is not None:
            return found
        service, name = _split_method(path)
        m = self.metrics
        if m is None:
            method = _Method(
                name=name,
                started=_OFF,
                received=_OFF,
                sent=_OFF,
                handling=_OFF,
                handled=dict.fromkeys(grpc.StatusCode, _OFF),
                quiet=path in QUIET_METHODS,
                on_answer=None,
                link=False,
            )
            with self._lock:
                self._methods[path] = method
            return method
        on_answer: Callable[[Any], None] | None = None
        if path == "/authz.v1.AuthzService/CheckAccess":
            allowed, denied = m.decisions.labels("CheckAccess", "allowed"), m.decisions.labels("CheckAccess", "denied")

            def on_answer(response: Any) -> None:
                (allowed if response.allowed else denied).inc()

        elif path == "/authz.v1.AuthzService/BatchCheckAccess":
            batch_allowed = m.decisions.labels("BatchCheckAccess", "allowed")
            batch_denied = m.decisions.labels("BatchCheckAccess", "denied")

            def on_answer(response: Any) -> None:
                results = response.results
                yes = sum(1 for result in results if result.allowed)
                if yes:
                    batch_allowed.inc(yes)
                if len(results) - yes:
                    batch_denied.inc(len(results) - yes)

        method = _Method(
            name=name,
            started=m.started.labels(kind, service, name),
            received=m.msg_received.labels(kind, service, name),
            sent=m.msg_sent.labels(kind, service, name),
            handling=m.handling.labels(kind, service, name),
            handled={code: m.handled.labels(kind, service, name, code.name) for code in grpc.StatusCode},
            quiet=path in QUIET_METHODS,
            on_answer=on_answer,
            link=service == "authz.v1.AuthzService" and name in _LINK_RPCS,
        )
        with self._lock:
            self._methods[path] = method
        return method

    def _finish(
        self,
        method: _Method,
        code: grpc.StatusCode,
        started: float,
        request: Any,
        details: grpc.HandlerCallDetails,
        context: grpc.ServicerContext,
    ) -> float:
        elapsed = time.perf_counter() - started
        method.handling.observe(elapsed)
        method.handled[code].inc()
        if method.link and self.metrics is not None:
            self.metrics.link_attempts.labels(method.name, _LINK_OUTCOMES.get(code, "error")).inc()
        level = logging.DEBUG if method.quiet and code is grpc.StatusCode.OK else logging.INFO
        if code is not grpc.StatusCode.OK and code is not grpc.StatusCode.INVALID_ARGUMENT:
            level = logging.WARNING if code is not grpc.StatusCode.INTERNAL else logging.ERROR
        if access.isEnabledFor(level):
            self._log(level, method, code, elapsed, request, details, context)
        return elapsed

    def _log(
        self,
        level: int,
        method: _Method,
        code: grpc.StatusCode,
        elapsed: float,
        request: Any,
        details: grpc.HandlerCallDetails,
        context: grpc.ServicerContext,
    ) -> None:
        metadata = details.invocation_metadata
        request_id = getattr(request, "request_id", "") or ""
        if not request_id:
            request_id = next((value for key, value in metadata or () if key == "x-request-id"), "")
        try:
            caller = self.caller_name(metadata, context)
        except Exception:  # naming the caller must never fail the call
            caller = "?"
        duration_ms = round(elapsed * 1000, 3)
        access.log(
            level,
            "%s %s %.3f ms caller=%s request_id=%s",
            details.method,
            code.name,
            duration_ms,
            caller,
            request_id or "-",
            extra={
                "method": details.method,
                "caller": caller,
                "status": code.name,
                "duration_ms": duration_ms,
                "request_id": str(request_id),
            },
        )

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Any], handler_call_details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        path: str = handler_call_details.method
        if handler.unary_unary is not None:
            return self._unary(handler, path, handler_call_details)
        if handler.unary_stream is not None:
            return self._streaming(handler, path, handler_call_details, "server_stream")
        if handler.stream_stream is not None:
            return self._streaming(handler, path, handler_call_details, "bidi_stream")
        return handler  # client streaming: the service has none

    def _unary(self, handler: Any, path: str, details: grpc.HandlerCallDetails) -> Any:
        method = self._method(path, "unary")
        inner = handler.unary_unary
        finish = self._finish
        tracing = self.tracing
        before = self.before_call if path.startswith(_SERVICE_PREFIX) else None

        def observed(request: Any, context: grpc.ServicerContext) -> Any:
            method.started.inc()
            method.received.inc()
            started = time.perf_counter()
            if tracing is not None:
                return self._traced(inner, method, path, started, request, details, context, before)
            try:
                if before is not None:
                    before(context)
                response = inner(request, context)
            except BaseException:
                finish(method, context.code() or grpc.StatusCode.UNKNOWN, started, request, details, context)
                raise
            code = context.code() or grpc.StatusCode.OK
            finish(method, code, started, request, details, context)
            if code is grpc.StatusCode.OK:
                method.sent.inc()
            if method.on_answer is not None:
                method.on_answer(response)
            return response

        return grpc.unary_unary_rpc_method_handler(
            observed, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )

    def _traced(
        self,
        inner: Callable[[Any, grpc.ServicerContext], Any],
        method: _Method,
        path: str,
        started: float,
        request: Any,
        details: grpc.HandlerCallDetails,
        context: grpc.ServicerContext,
        before: Callable[[grpc.ServicerContext], None] | None = None,
    ) -> Any:
        from opentelemetry.trace import SpanKind, Status, StatusCode

        assert self.tracing is not None
        service, name = _split_method(path)
        with self.tracing.tracer.start_as_current_span(
            path.strip("/"),
            context=self.tracing.extract(details.invocation_metadata),
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            code = grpc.StatusCode.UNKNOWN
            try:
                if before is not None:
                    before(context)
                response = inner(request, context)
                code = context.code() or grpc.StatusCode.OK
            except BaseException:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            finally:
                span.set_attribute("rpc.grpc.status_code", code.value[0])
                if code in SERVER_ERROR_CODES:
                    span.set_status(Status(StatusCode.ERROR, code.name))
                self._finish(method, code, started, request, details, context)
        if code is grpc.StatusCode.OK:
            method.sent.inc()
        if method.on_answer is not None:
            method.on_answer(response)
        return response

    def _streaming(self, handler: Any, path: str, details: grpc.HandlerCallDetails, kind: str) -> Any:
        method = self._method(path, kind)
        inner = handler.unary_stream if kind == "server_stream" else handler.stream_stream
        finish = self._finish

        def counted(requests: Iterator[Any]) -> Iterator[Any]:
            for request in requests:
                method.received.inc()
                yield request

        def observed(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            method.started.inc()
            started = time.perf_counter()
            if kind == "server_stream":
                method.received.inc()
            else:
                request = counted(request)
            try:
                for answer in inner(request, context):
                    method.sent.inc()
                    yield answer
            except BaseException:
                finish(method, context.code() or grpc.StatusCode.UNKNOWN, started, None, details, context)
                raise
            finish(method, context.code() or grpc.StatusCode.OK, started, None, details, context)

        make = (
            grpc.unary_stream_rpc_method_handler if kind == "server_stream" else grpc.stream_stream_rpc_method_handler
        )
        return make(
            observed, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )


class _BeforeScrape(Collector):
    """Registered first: refreshes the in-memory figures just before the registry is read."""

    def __init__(self, refresh: Callable[[], None]) -> None:
        self.refresh = refresh

    def collect(self) -> Iterator[Any]:
        try:
            self.refresh()
        except Exception:
            log.exception("could not refresh the metrics")
        return iter(())


class Observability:
    """The metrics of one server, their sources, the sampler thread and the /metrics listener."""

    def __init__(self, *, metrics: bool = True, tracing: Tracing | None = None, sample_interval: float = 5.0) -> None:
        self.metrics_on = metrics
        self.tracing = tracing
        self.sample_interval = sample_interval
        self.multiprocess = multiprocess_dir()
        registry = CollectorRegistry(auto_describe=False)
        if self.multiprocess is None:
            registry.register(_BeforeScrape(self.sample_memory))
        self.metrics = Metrics(registry)
        if self.multiprocess is None and metrics:
            from prometheus_client import ProcessCollector

            ProcessCollector(registry=registry)
        self._sources: dict[str, Any] = {}
        self._seen: dict[str, int] = {}
        self._policy_hash: str | None = None
        self._stopping = threading.Event()
        self._sampler: threading.Thread | None = None
        self._http: Any = None
        self.port: int | None = None

    def interceptor(
        self, caller_name: Callable[[Any, grpc.ServicerContext], str] | None = None
    ) -> ObservabilityInterceptor:
        return ObservabilityInterceptor(
            self.metrics if self.metrics_on else None, tracing=self.tracing, caller_name=caller_name
        )

    def watch(self, **sources: Any) -> None:
        """Name the parts read for `authz_*`: engine, store, policy_status (callable), relay."""
        self._sources.update(sources)

    # -- sampling ------------------------------------------------------------------------

    def _count(self, counter: Any, key: str, total: int) -> None:
        """Advance a counter to a running total kept elsewhere (relay, policy watcher)."""
        delta = total - self._seen.get(key, 0)
        if delta > 0:
            counter.inc(delta)
        self._seen[key] = total

    def sample_memory(self) -> None:
        """In-memory figures: engine, policy, relay, pool. Cheap; runs at every scrape."""
        m, sources = self.metrics, self._sources
        engine = sources.get("engine")
        if engine is not None:
            m.engine_revision.set(engine.revision)
            digest = engine.policy.content_hash
            if digest != self._policy_hash:
                if self._policy_hash is not None:
                    m.policy_info.labels(self._policy_hash).set(0)
                    if self.multiprocess is None:
                        m.policy_info.remove(self._policy_hash)
                m.policy_info.labels(digest).set(1)
                self._policy_hash = digest
        policy_status = sources.get("policy_status")
        status = policy_status() if policy_status is not None else None
        if status is not None:
            m.policy_valid.set(1 if status.valid_on_disk else 0)
            m.policy_loaded.set(status.loaded_at.timestamp())
            self._count(m.reloads, "reloads", status.reloads)
            self._count(m.refusals, "refusals", status.refusals)
        relay = sources.get("relay")
        if relay is not None:
            self._count(m.outbox_sent, "sent", relay.sent_count)
            self._count(m.outbox_failures, "failures", relay.failure_count)
        store = sources.get("store")
        # Messages the store could not decrypt never reach the relay: failures all the same.
        self._count(m.outbox_failures, "undecryptable", getattr(store, "outbox_decrypt_failures", 0))
        pool = getattr(getattr(store, "engine", None), "pool", None)
        if pool is not None and hasattr(pool, "checkedout"):
            m.pool.labels("checked_out").set(pool.checkedout())
            m.pool.labels("idle").set(pool.checkedin())
            m.pool.labels("overflow").set(max(0, pool.overflow()))
            m.pool_size.set(pool.size())

    def sample_process(self) -> None:
        """Several processes: this worker's process_* figures into its own (pid-labelled) gauges."""
        gauges = self.metrics.process
        if not gauges:
            return
        for family in process_families():
            for sample in family.samples:
                target = gauges.get(sample.name)
                if target is not None:
                    target.set(sample.value)

    def sample_store(self) -> None:
        """What only the database knows: its revision, the outbox backlog."""
        store, engine = self._sources.get("store"), self._sources.get("engine")
        if store is None:
            return
        m = self.metrics
        revision = store.revision()
        m.store_revision.set(revision)
        if engine is not None:
            m.lag.set(max(0, revision - engine.revision))
        backlog = getattr(store, "outbox_backlog", None)
        if backlog is not None:
            pending, oldest, abandoned = backlog(self._sources.get("mail_give_up_seconds"))
            m.outbox_pending.set(pending)
            m.outbox_oldest.set(0 if oldest is None else max(0.0, (datetime.now(UTC) - oldest).total_seconds()))
            m.outbox_abandoned.set(abandoned)

    def sample(self) -> None:
        self.sample_memory()
        self.sample_process()
        self.sample_store()

    def _run_sampler(self) -> None:
        while True:
            try:
                self.sample()
            except Exception:  # the store down, most likely: the health monitor says so already
                log.debug("metrics sampling failed", exc_info=True)
            if self._stopping.wait(self.sample_interval):
                return

    # -- serving -------------------------------------------------------------------------

    def serving_registry(self) -> CollectorRegistry:
        """What /metrics shows: this server's registry, or every process's figures in multiprocess mode."""
        if self.multiprocess is None:
            return self.metrics.registry
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess)  # type: ignore[no-untyped-call]
        return registry

    @staticmethod
    def check_listen(listen: str) -> tuple[str, int] | None:
        """`host:port` of the /metrics listener, None when empty; ValueError when malformed."""
        if not listen:
            return None
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"AUTHZ_METRICS_LISTEN={listen!r}: expected host:port (port 0 picks a free one)")
        return host, int(port)

    def start(self, listen: str) -> None:
        """Start the /metrics listener when `listen` is set (`host:port`), then the sampler."""
        if not self.metrics_on:
            return
        address = self.check_listen(listen)
        if address is not None:
            self._serve(*address)
        self._stopping.clear()
        self._sampler = threading.Thread(target=self._run_sampler, name="authz-metrics-sampler", daemon=True)
        self._sampler.start()

    def _serve(self, host: str, port: int) -> None:
        self._http, _thread = start_http_server(port, addr=host.strip("[]"), registry=self.serving_registry())
        self.port = int(self._http.server_port)
        log.info(
            "metrics on http://%s:%d/metrics%s",
            host,
            self.port,
            f" (all processes of {self.multiprocess})" if self.multiprocess else "",
        )

    def stop(self) -> None:
        self._stopping.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._sampler is not None:
            self._sampler.join(timeout=5)
        if self.tracing is not None:
            self.tracing.shutdown()


def caller_namer(callers: Any) -> Callable[[Any, grpc.ServicerContext], str]:
    """Names a call's caller for the access log: the callers-file name its token or certificate maps to, or its peer."""

    def name(metadata: Any, context: grpc.ServicerContext) -> str:
        if callers is not None:
            for key, value in metadata or ():
                if key == "authorization":
                    text = value.decode("latin-1") if isinstance(value, bytes) else value
                    scheme, _, token = text.partition(" ")
                    found = callers.by_token(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
                    return str(found.name) if found is not None else "unknown-token"
            common = (context.auth_context() or {}).get("x509_common_name") or []
            if common:
                found = callers.by_common_name(common[0].decode())
                if found is not None:
                    return str(found.name)
        return str(context.peer())

    return name
