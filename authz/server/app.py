"""Assembling the service: store, policy, engine, mail relay, gRPC server with health and reflection."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from authz.commands.base import Deps
from authz.config import ConfigError, Settings
from authz.domain.dates import utc_now
from authz.domain.model import WILDCARD_SUBJECT
from authz.domain.secrets import decoy_legacy_hash
from authz.engine.index import DecisionEngine
from authz.engine.policy import Policy, PolicyLoadError, default_policy_dir
from authz.engine.validation import live_grant_problems, load_checked
from authz.errors import AuthzError
from authz.mail import OutboxRelay, mailer_from_url
from authz.replication.follower import Follower
from authz.replication.siblings import SiblingRevision
from authz.replication.tokens import TokenFormat
from authz.server.auth import CallerAuthInterceptor, bind, server_interceptors
from authz.server.connect import ConnectServer, Dispatcher
from authz.server.errors import DecodeErrorInterceptor
from authz.server.observability import Observability, caller_namer, multiprocess_dir
from authz.server.reflection_v1 import enable_reflection
from authz.server.reload import POLICY_HEALTH_NAME, PolicyWatcher
from authz.server.servicer import AuthzServicer
from authz.server.tracing import tracing_from_env
from authz.store.interface import Store
from authz.store.sql import SqlStore, open_store
from authz.v1 import authz_pb2, authz_pb2_grpc

__all__ = [
    "REPLICA_HEALTH_NAME",
    "SERVICE_NAME",
    "STORE_HEALTH_NAME",
    "AuthzApp",
    "Prepared",
    "check_settings",
    "create_server",
    "prepare",
]

log = logging.getLogger("authz.server")

SERVICE_NAME = authz_pb2.DESCRIPTOR.services_by_name["AuthzService"].full_name
# A separate health entry for the store: checks keep answering while it is down.
STORE_HEALTH_NAME = "authz.v1.AuthzService/store"
PING_TIMEOUT = 3.0  # seconds a store ping may take before health calls the store down
# This process's follower: SERVING while it keeps up with the store (see ReplicaHealth for the figures).
REPLICA_HEALTH_NAME = "authz.v1.AuthzService/replica"


@dataclass
class Prepared:
    """An engine built from one snapshot of the store, and the store's id: made once, before any fork."""

    engine: DecisionEngine
    store_id: str


def prepare(settings: Settings, store: Store) -> Prepared:
    """Validate the policy, then build the index from the store at one revision."""
    # Validated in full, as every hot reload is: the server never starts on a policy it would refuse,
    # a subject removed from the catalogue while grants in the store still hold it included.
    policy = load_checked(settings.policy_dir)
    known = [*policy.subjects, *policy.retired, WILDCARD_SUBJECT]
    removed_but_granted = live_grant_problems(policy.directory, policy, store.live_grants(excluding=known))
    if removed_but_granted:
        raise PolicyLoadError([str(problem) for problem in removed_but_granted])
    engine = DecisionEngine(policy)
    started = time.perf_counter()
    with store.snapshot() as snapshot:
        engine.load_rows(snapshot.rows, snapshot.revision)
    # "indexes built in" is what `authz bench` reads from the log.
    log.info(
        "indexes built in %.2fs at revision %d: %s", time.perf_counter() - started, engine.revision, engine.stats()
    )
    return Prepared(engine, snapshot.store_id)


def check_settings(settings: Settings, store: SqlStore) -> None:
    """Every check a server makes of its settings, run once before any worker is forked.

    Each worker runs them again as it starts (the same code as a single process); made here
    first, a bad setting stops `authz serve` with one message instead of N dying workers.
    """
    server_interceptors(settings)  # an open listener without callers; a callers file that cannot load
    store.require_outbox_key()  # link codes are never queued in clear (PostgreSQL needs a configured key)
    Observability.check_listen(settings.metrics_listen)
    mailer_from_url(settings.mail_url, settings.outbox_dir)
    if settings.tls_cert is not None or settings.tls_key is not None or settings.tls_client_ca is not None:
        for path in (settings.tls_cert, settings.tls_key, settings.tls_client_ca):
            if path is not None and not path.is_file():
                raise ConfigError(f"TLS file {path} not found")


def _sibling_guard(siblings: SiblingRevision, follower: Follower, settings: Settings) -> Callable[[Any], None]:
    """Before a call: this process catches up with what a sibling process acknowledged, within a bounded wait."""

    def catch_up(target: int, timeout: float) -> None:
        follower.catch_up(target, timeout)

    ensure = siblings.reader(lambda: follower.engine.revision, catch_up)
    bound = settings.sibling_wait_seconds

    def guard(context: Any) -> None:
        left = context.time_remaining()
        try:
            ensure(bound if left is None else max(0.0, min(bound, left)))
        except AuthzError as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))

    return guard


class ReplicaHealth(health.HealthServicer):  # type: ignore[misc]
    """The standard health service; every answer also carries, as trailing metadata, where this
    process stands: its pid, the revision its index holds, the newest it has heard of, how many
    it is behind and how long since it was last caught up."""

    def __init__(self, follower: Callable[[], Follower | None]) -> None:
        super().__init__()
        self._follower = follower

    def Check(self, request: Any, context: grpc.ServicerContext) -> Any:
        follower = self._follower()
        if follower is not None:
            status = follower.status()
            context.set_trailing_metadata(
                (
                    ("authz-pid", str(status.pid)),
                    ("authz-applied-revision", str(status.applied_revision)),
                    ("authz-store-revision", str(status.store_revision)),
                    ("authz-behind", str(status.behind)),
                    ("authz-synced-ms-ago", str(int(status.synced_seconds_ago * 1000))),
                    ("authz-listening", "1" if status.listening else "0"),
                )
            )
        return super().Check(request, context)


class AuthzApp:
    """One running service. `start()` then `stop()`; `port` is the bound port."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: SqlStore | None = None,
        clock: Callable[[], datetime] = utc_now,
        prepared: Prepared | None = None,
        siblings: SiblingRevision | None = None,
    ) -> None:
        self.settings = settings
        # First: a listener beyond loopback without caller credentials must not start at all.
        interceptors = [*server_interceptors(settings), DecodeErrorInterceptor()]
        self.store = store or open_store(settings)
        self.store.require_outbox_key()  # link codes are never queued in clear
        # Given when a parent process built the index before forking this worker.
        prepared = prepared or prepare(settings, self.store)
        self.engine = prepared.engine
        self.tokens = TokenFormat(prepared.store_id)
        self.follower = Follower(self.store, self.engine, settings, prepared.store_id)
        self.relay = OutboxRelay(
            self.store,
            mailer_from_url(settings.mail_url, settings.outbox_dir),
            interval=settings.mail_interval_seconds,
            retry_initial=settings.mail_retry_initial_seconds,
            retry_max=settings.mail_retry_max_seconds,
            give_up_seconds=settings.mail_give_up_seconds,
            clock=clock,
        )
        self.deps = Deps(
            store=self.store,
            engine=self.engine,
            settings=settings,
            clock=clock,
            wake_mailer=self.relay.wake,
            tokens=self.tokens,
            follower=self.follower,
            published=siblings.publish if siblings is not None else None,
        )
        self.health = ReplicaHealth(lambda: self.follower)
        # Observability first among the interceptors: calls the caller check refuses are counted and logged too.
        # Metrics are counted when someone can read them: a /metrics listener, or multiprocess files.
        self.observability = Observability(
            metrics=bool(settings.metrics_listen or multiprocess_dir()), tracing=tracing_from_env(os.environ)
        )
        self.observability.check_listen(settings.metrics_listen)
        if self.observability.tracing is not None:
            self.observability.tracing.trace_store(self.store)
        callers = next((i.callers for i in interceptors if isinstance(i, CallerAuthInterceptor)), None)
        observed = self.observability.interceptor(caller_namer(callers))
        if siblings is not None:
            observed.before_call = _sibling_guard(siblings, self.follower, settings)
        interceptors = [observed, *interceptors]
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix="authz-rpc"),
            interceptors=interceptors,
            maximum_concurrent_rpcs=settings.max_concurrent_rpcs or None,
            options=[
                ("grpc.max_receive_message_length", settings.max_message_bytes),
                ("grpc.max_send_message_length", 16 * 1024 * 1024),
                # Several worker processes share one port (authz serve --processes N).
                ("grpc.so_reuseport", 1 if settings.processes > 1 else 0),
            ],
        )
        servicer = AuthzServicer(self.deps)
        authz_pb2_grpc.add_AuthzServiceServicer_to_server(servicer, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        enable_reflection((SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name), self.server)
        self.port = bind(self.server, settings)
        if self.port == 0:
            raise ConfigError(f"cannot listen on {settings.listen}")
        # The HTTP/JSON face: the same servicer behind the same interceptors, so one set of rules answers both.
        self.http = ConnectServer(settings, Dispatcher(servicer, interceptors)) if settings.http_listen else None
        self._stopping = threading.Event()
        self._monitor = threading.Thread(target=self._watch_store, name="authz-store-health", daemon=True)
        self.policy_watcher = PolicyWatcher(
            settings.policy_dir or default_policy_dir(),
            self.engine,
            store=self.store,
            on_state=self._set_policy_health,
            clock=clock,
        )
        self.observability.watch(
            engine=self.engine,
            store=self.store,
            relay=self.relay,
            policy_status=lambda: self.policy_watcher.status,
            mail_give_up_seconds=settings.mail_give_up_seconds,
        )

    @property
    def policy(self) -> Policy:
        """The policy serving now (hot reload swaps it)."""
        return self.engine.policy

    def _set_policy_health(self, valid_on_disk: bool) -> None:
        status = health_pb2.HealthCheckResponse
        self.health.set(POLICY_HEALTH_NAME, status.SERVING if valid_on_disk else status.NOT_SERVING)

    def start(self) -> None:
        # First: a /metrics port already taken stops the start before anything else runs.
        self.observability.start(self.settings.metrics_listen)
        # Caught up before answering: SERVING means this process holds at least the store's state
        # as of now (the snapshot may be seconds old at a million relations, or a parent's index).
        self.follower.catch_up()
        self.follower.start()
        decoy_legacy_hash()  # made before the first login, which would otherwise pay for it alone
        self.server.start()
        if self.http is not None:
            self.http.start()
        self.relay.start()
        self._set_health(True, self.store.ping())
        self._set_policy_health(True)
        self._monitor.start()
        self.policy_watcher.start()
        log.info("serving on %s (port %d)", self.settings.listen, self.port)

    def _set_health(self, serving: bool, store_up: bool) -> None:
        status = health_pb2.HealthCheckResponse
        overall = status.SERVING if serving else status.NOT_SERVING
        self.health.set("", overall)
        self.health.set(SERVICE_NAME, overall)
        self.health.set(STORE_HEALTH_NAME, status.SERVING if serving and store_up else status.NOT_SERVING)
        self._set_replica_health(serving)

    def _set_replica_health(self, serving: bool) -> None:
        # Behind by more than a few poll periods (store gone, follower stuck): not a replica to rely on.
        state = self.follower.status()
        fresh = state.behind == 0 or state.synced_seconds_ago < max(5.0, 3 * self.settings.follow_poll_seconds)
        status = health_pb2.HealthCheckResponse
        self.health.set(REPLICA_HEALTH_NAME, status.SERVING if serving and fresh else status.NOT_SERVING)

    def _watch_store(self) -> None:
        was_up = True
        # The ping runs in a thread of its own, so that a database which accepts packets but never
        # answers (a half-open connection) reads as down after PING_TIMEOUT instead of freezing this
        # loop. A daemon thread: a ping stuck for good must not hold the process at exit.
        pinging: threading.Thread | None = None
        answer: list[bool] = []
        while not self._stopping.wait(2.0):
            if pinging is None or not pinging.is_alive():
                answer = []
                pinging = threading.Thread(
                    target=lambda out=answer: out.append(self.store.ping()), name="authz-store-ping", daemon=True
                )
                pinging.start()
            # Still stuck on an earlier ping: that is an answer too, and no second ping piles up behind it.
            pinging.join(PING_TIMEOUT)
            up = bool(answer) and answer[0]
            self._set_replica_health(True)
            if up != was_up:
                log.warning("store is %s", "reachable again" if up else "unreachable; checks answer from memory")
                self._set_health(True, up)
                was_up = up

    def drain_and_stop(self) -> None:
        """SIGTERM: NOT_SERVING at once, calls still answered for `shutdown_grace_seconds`, then `stop()`.

        Balancers and health-checking clients move away during the pause; callers that still come
        are answered, and those that arrive after the listener closed retry elsewhere.
        """
        self.health.enter_graceful_shutdown()
        log.info("draining: NOT_SERVING, still answering for %.1fs", self.settings.shutdown_grace_seconds)
        time.sleep(max(0.0, self.settings.shutdown_grace_seconds))
        self.stop()

    def stop(self, grace: float | None = None) -> None:
        """Turn health to NOT_SERVING first, then drain calls in flight, then release the rest."""
        self._stopping.set()
        self.policy_watcher.stop()
        self.health.enter_graceful_shutdown()
        self.follower.stop()  # Watch streams waiting on it end now, before the drain
        if self.http is not None:
            self.http.stop(self.settings.grace_seconds if grace is None else grace)
        self.server.stop(self.settings.grace_seconds if grace is None else grace).wait()
        self.relay.stop()
        self.observability.stop()
        self.store.close()

    def wait(self) -> None:
        self.server.wait_for_termination()


def create_server(settings: Settings, **kwargs: object) -> tuple[AuthzApp, int]:
    """A started service bound as `settings.listen` says (port 0 picks a free one)."""
    app = AuthzApp(settings, **kwargs)  # type: ignore[arg-type]
    app.start()
    return app, app.port
