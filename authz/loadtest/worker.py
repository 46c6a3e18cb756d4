"""One load-generating process: its share of the rate (open model) or of the concurrency (closed
model), on its own channel, recording latencies by kind of call and errors by status code.

Calls are gRPC futures: the open model's scheduler never waits for an answer, so a slow server
makes calls pile up in flight rather than slowing the arrivals (up to `max_in_flight`, past
which an arrival is counted as dropped by the generator). How late each call was sent against
its schedule is recorded too: lateness is how the generator, not the server, shows it is the limit.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from authz.loadtest import KINDS
from authz.loadtest.histogram import Histogram
from authz.loadtest.ids import IdSample
from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc

__all__ = ["KINDS", "WorkerSpec", "run_worker"]

_RIGHTS = (pb.RIGHT_READ, pb.RIGHT_WRITE)
_PROGRESS_EVERY = 1.0  # seconds between progress reports to the parent


@dataclass
class WorkerSpec:
    target: str
    ids: dict[str, Any]
    mix: dict[str, int]
    duration: float
    rate: float = 0.0  # calls per second of this process (open model); 0: closed model
    concurrency: int = 0  # calls in flight of this process (closed model)
    token: str | None = None
    tls: bool = False
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    server_name: str | None = None
    timeout: float = 5.0
    batch_size: int = 20
    max_in_flight: int = 2_000
    seed: int = 1
    index: int = 0
    start_at: float = 0.0  # wall-clock instant all processes start at
    extra: dict[str, Any] = field(default_factory=dict)


def open_channel(spec: WorkerSpec) -> grpc.Channel:
    """A channel as the client opens it: insecure, or TLS with the system's or a given CA and an optional client certificate."""
    options: list[tuple[str, Any]] = [("grpc.use_local_subchannel_pool", 1)]
    if not (spec.tls or spec.ca or spec.cert):
        return grpc.insecure_channel(spec.target, options=options)
    if spec.server_name:
        options.append(("grpc.ssl_target_name_override", spec.server_name))
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(spec.ca).read_bytes() if spec.ca else None,
        private_key=Path(spec.key).read_bytes() if spec.key else None,
        certificate_chain=Path(spec.cert).read_bytes() if spec.cert else None,
    )
    return grpc.secure_channel(spec.target, credentials, options=options)


def metadata_of(token: str | None) -> tuple[tuple[str, str], ...] | None:
    return (("authorization", f"Bearer {token}"),) if token else None


class _Requests:
    """Ready-made requests of each kind, drawn from the id sample."""

    def __init__(self, ids: IdSample, rng: random.Random, batch_size: int) -> None:
        if not ids.pairs:
            raise ValueError("no (contact, organization) pair to ask about")
        subjects = ids.subjects or ["profil"]
        contacts = [c for c, _ in ids.pairs]
        organizations = [o for _, o in ids.pairs]

        def check() -> pb.CheckAccessRequest:
            # Mostly pairs that hold a relation (the portal asks about a user's own organizations), some not.
            contact, organization = rng.choice(ids.pairs)
            if rng.random() < 0.2:
                organization = rng.choice(organizations)
            return pb.CheckAccessRequest(
                principal_id=contact,
                organization_id=organization,
                subject=rng.choice(subjects),
                right=rng.choice(_RIGHTS),
            )

        self.checks = [check() for _ in range(2_000)]
        self.batches = [
            pb.BatchCheckAccessRequest(checks=[rng.choice(self.checks) for _ in range(batch_size)]) for _ in range(200)
        ]
        self.principals = [
            pb.LookupPrincipalsRequest(
                organization_id=rng.choice(organizations),
                subject=rng.choice(subjects),
                right=rng.choice(_RIGHTS),
                page_size=10,
            )
            for _ in range(500)
        ]
        self.organizations = [
            pb.LookupOrganizationsRequest(
                principal_id=rng.choice(contacts), subject=rng.choice(subjects), right=rng.choice(_RIGHTS), page_size=10
            )
            for _ in range(500)
        ]
        self.managers = ids.managers
        self.contacts = contacts
        # A grant names a contact the organization already has (GrantRelation refuses others).
        self.contacts_of: dict[str, list[str]] = {}
        for contact, organization in ids.members + ids.managers:
            self.contacts_of.setdefault(organization, []).append(contact)
        self.subjects = subjects


class _Writes:
    """Writes that leave the data as they found it: a grant to a sampled contact on a manager's
    organization, revoked by a later write (each manager keeps at most a few outstanding)."""

    def __init__(self, requests: _Requests, rng: random.Random) -> None:
        self.requests = requests
        self.rng = rng
        self.granted: list[tuple[str, str, str, str]] = []  # (actor, organization, contact, relation id)
        self.lock = threading.Lock()

    def next(self) -> tuple[str, Any]:
        rng = self.rng
        with self.lock:
            if self.granted and (len(self.granted) > 8 or rng.random() < 0.5):
                return "revoke", self.revoke(self.granted.pop(0))
        with self.lock:
            outstanding = {(o, c) for _, o, c, _ in self.granted}
        # No one grants themselves (rule 13), and a contact holding this grant already would be a
        # second relation of the same purpose (refused): such picks are skipped, not sent.
        for _ in range(8):
            actor, organization = rng.choice(self.requests.managers)
            candidates = [
                c
                for c in self.requests.contacts_of.get(organization, ())
                if c != actor and (organization, c) not in outstanding
            ]
            if candidates:
                break
        else:
            # Nobody to grant to in the sample: a check stands in for the write (counted as one).
            return "check", self.requests.checks[rng.randrange(len(self.requests.checks))]
        contact = rng.choice(candidates)
        return "grant", pb.GrantRelationRequest(
            actor_id=actor,
            organization_id=organization,
            contact_id=contact,
            role=pb.ROLE_INDIVIDU_AUTORISE,
            subjects=[pb.SubjectRight(subject=rng.choice(self.requests.subjects), right=pb.RIGHT_READ)],
            attestation=pb.Attestation(authorizes_acting=True, changes_accurate=True),
        )

    @staticmethod
    def revoke(granted: tuple[str, str, str, str]) -> pb.RevokeRelationRequest:
        actor, organization, contact, relation_id = granted
        return pb.RevokeRelationRequest(
            actor_id=actor,
            organization_id=organization,
            contact_id=contact,
            relations=pb.RelationIds(relation_ids=[relation_id]),
            attestation=pb.Attestation(authorizes_acting=True, changes_accurate=True),
        )

    def outstanding(self) -> list[tuple[str, str, str, str]]:
        with self.lock:
            granted, self.granted = self.granted, []
        return granted

    def granted_one(self, request: pb.GrantRelationRequest, response: pb.GrantRelationResponse) -> None:
        with self.lock:
            self.granted.append((request.actor_id, request.organization_id, request.contact_id, response.relation_id))


class _Recorder:
    """Latencies by kind, errors by kind and status code, lateness; shared by the gRPC callback threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency = {kind: Histogram() for kind in KINDS}
        self.window = Histogram()  # since the last progress report
        self.lateness = Histogram()
        self.errors: dict[str, dict[str, int]] = {kind: {} for kind in KINDS}
        self.sent = self.done = self.failed = self.dropped = self.in_flight = 0

    def finished(self, kind: str, micros: float, code: str | None) -> None:
        with self.lock:
            self.in_flight -= 1
            self.done += 1
            self.latency[kind].record(micros)
            self.window.record(micros)
            if code is not None:
                self.failed += 1
                self.errors[kind][code] = self.errors[kind].get(code, 0) + 1


def run_worker(spec: WorkerSpec, report: Callable[[dict[str, Any]], None]) -> None:
    """Generate the load of one process; `report` gets progress dicts, then the final one ("final": True)."""
    rng = random.Random(spec.seed * 1000 + spec.index)
    requests = _Requests(IdSample.from_dict(spec.ids), rng, spec.batch_size)
    writes = _Writes(requests, rng)
    channel = open_channel(spec)
    grpc.channel_ready_future(channel).result(timeout=30)
    stub = authz_pb2_grpc.AuthzServiceStub(channel)
    metadata = metadata_of(spec.token)
    methods = {
        "check": stub.CheckAccess,
        "batch": stub.BatchCheckAccess,
        "principals": stub.LookupPrincipals,
        "organizations": stub.LookupOrganizations,
        "grant": stub.GrantRelation,
        "revoke": stub.RevokeRelation,
    }
    # A cycle of kinds drawn once by the mix's weights: no random draw per call.
    kinds = [kind for kind in KINDS for _ in range(spec.mix.get(kind, 0))]
    cycle = [rng.choice(kinds) for _ in range(997)]
    recorder = _Recorder()
    clock = time.perf_counter

    def request_of(kind: str, n: int) -> tuple[str, Any]:
        if kind == "check":
            return "check", requests.checks[n % len(requests.checks)]
        if kind == "batch":
            return "batch", requests.batches[n % len(requests.batches)]
        if kind == "lookup":
            if n % 2:
                return "principals", requests.principals[n % len(requests.principals)]
            return "organizations", requests.organizations[n % len(requests.organizations)]
        return writes.next()

    def issue(n: int, then: Callable[[], None] | None) -> None:
        kind = cycle[n % len(cycle)]
        method, request = request_of(kind, n)
        with recorder.lock:
            recorder.sent += 1
            recorder.in_flight += 1
        started = clock()
        future = methods[method].future(request, timeout=spec.timeout, metadata=metadata)

        def done(answered: grpc.Future) -> None:
            micros = (clock() - started) * 1e6
            error = answered.exception()
            code = None if error is None else answered.code().name
            if error is None and method == "grant":
                writes.granted_one(request, answered.result())
            recorder.finished(kind, micros, code)
            if then is not None:
                then()

        future.add_done_callback(done)

    for n in range(20):  # warm the channel: the first calls pay for the connection
        with contextlib.suppress(grpc.RpcError):  # a refusal is the run's to count, not the warm-up's
            methods["check"](requests.checks[n], timeout=spec.timeout, metadata=metadata)

    while time.time() < spec.start_at:
        time.sleep(min(0.01, max(spec.start_at - time.time(), 0)))
    started_wall, started_cpu = clock(), time.process_time()
    stop = started_wall + spec.duration
    last_report = [started_wall, 0]

    def progress(final: bool = False, ended: tuple[float, float] | None = None) -> None:
        """`ended`: the wall clock and CPU time the run's figures stop at (the final report)."""
        now, cpu = ended if ended is not None else (clock(), time.process_time())
        with recorder.lock:
            window, recorder.window = recorder.window, Histogram()
            figures: dict[str, Any] = {
                "index": spec.index,
                "elapsed": now - started_wall,
                "sent": recorder.sent,
                "done": recorder.done,
                "failed": recorder.failed,
                "dropped": recorder.dropped,
                "in_flight": recorder.in_flight,
                "window_done": window.count,
                "window_p99_ms": window.percentile(0.99) / 1000,
                "lateness_p99_ms": recorder.lateness.percentile(0.99) / 1000,
                "cpu": (cpu - started_cpu) / max(now - started_wall, 1e-9),
            }
            if final:
                figures.update(
                    final=True,
                    latency={kind: h.as_dict() for kind, h in recorder.latency.items()},
                    errors=recorder.errors,
                    lateness=recorder.lateness.as_dict(),
                    wall_s=now - started_wall,
                    cpu_s=cpu - started_cpu,
                )
        report(figures)
        last_report[0] = now

    if spec.rate > 0:
        interval = 1.0 / spec.rate
        n = 0
        while True:
            due = started_wall + n * interval
            if due >= stop:
                break
            now = clock()
            if due > now:
                time.sleep(due - now)
                now = clock()
            recorder.lateness.record(max(now - due, 0.0) * 1e6 + 1)
            if recorder.in_flight >= spec.max_in_flight:
                with recorder.lock:
                    recorder.dropped += 1
            else:
                issue(n, None)
            n += 1
            if now - last_report[0] >= _PROGRESS_EVERY:
                progress()
    else:
        counter = [0]
        counter_lock = threading.Lock()

        def chain() -> None:
            if clock() >= stop:
                return
            with counter_lock:
                n = counter[0]
                counter[0] += 1
            issue(n, chain)

        for _ in range(spec.concurrency):
            chain()
        while clock() < stop:
            now = clock()
            time.sleep(max(min(last_report[0] + _PROGRESS_EVERY - now, stop - now), 0.001))
            if clock() - last_report[0] >= _PROGRESS_EVERY:
                progress()
    # Calls still in flight are waited for (up to their deadline): they count.
    drain_until = clock() + spec.timeout + 1
    while recorder.in_flight > 0 and clock() < drain_until:
        time.sleep(0.01)
    ended = clock(), time.process_time()
    # Grants still outstanding are revoked, outside the figures: the next run (or a second round
    # of a bench) finds the data as this one did, not contacts that already hold the grant.
    for granted in writes.outstanding():
        with contextlib.suppress(grpc.RpcError):
            stub.RevokeRelation(_Writes.revoke(granted), timeout=spec.timeout, metadata=metadata)
    progress(final=True, ended=ended)
    channel.close()
