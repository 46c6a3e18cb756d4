"""`authz bench --writes`: the server's CPU per write, fresh and after a long history.

Grant and revoke pairs on one contact and one organization of the demo data, through a real
`authz serve` process: each grant adds a relation to the same key, each revoke ends it, so the
key's history grows by one relation a pair. The server's own CPU time (user + system, read
from /proc) over a block of pairs, divided by the writes, is measured on the fresh data, then
again after `history` pairs. Every write holds the store's revision row, so what one costs is
what every writer waits for: the second figure must stay near the first.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from authz.bench.replicas import DEMO_FILE
from authz.bench.runner import _start_server, _stop
from authz.commands.import_data import import_file
from authz.config import Settings
from authz.engine.policy import Policy
from authz.store.sql import open_store
from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc

__all__ = ["WriteBenchOptions", "run_write_bench"]

# The person responsible of the demo association grants its representative a second role, then ends it.
_ACTOR, _ORGANIZATION, _CONTACT = "C-PR", "ORG-SQC", "C-REP"
_ATTESTED = pb.Attestation(authorizes_acting=True, changes_accurate=True)


@dataclass
class WriteBenchOptions:
    history: int = 2_000  # grant/revoke pairs between the two measures
    measured: int = 200  # pairs in each measured block
    workdir: Path | None = None


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _pairs(stub: authz_pb2_grpc.AuthzServiceStub, count: int) -> None:
    for _ in range(count):
        granted = stub.GrantRelation(
            pb.GrantRelationRequest(
                actor_id=_ACTOR,
                organization_id=_ORGANIZATION,
                contact_id=_CONTACT,
                role=pb.ROLE_MEMBRE_DU_PERSONNEL,
                attestation=_ATTESTED,
            ),
            timeout=30,
        )
        stub.RevokeRelation(
            pb.RevokeRelationRequest(
                actor_id=_ACTOR,
                organization_id=_ORGANIZATION,
                contact_id=_CONTACT,
                relations=pb.RelationIds(relation_ids=[granted.relation_id]),
                attestation=_ATTESTED,
            ),
            timeout=30,
        )


def _ms_per_write(pid: int, stub: authz_pb2_grpc.AuthzServiceStub, pairs: int) -> float:
    before = _cpu_seconds(pid)
    _pairs(stub, pairs)
    return (_cpu_seconds(pid) - before) * 1000 / (2 * pairs)


def run_write_bench(options: WriteBenchOptions, say: Any = print) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="authz-writes-") as scratch:
        folder = options.workdir or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        database = folder / "writes.db"
        database.unlink(missing_ok=True)
        store = open_store(Settings(database_url=f"sqlite:///{database}"))
        try:
            report = import_file(store, DEMO_FILE, Policy.load().subjects)
            if report.refused:
                raise RuntimeError(f"the demo data did not import: {report.refused[:3]}")
        finally:
            store.close()
        server, target, _, _ = _start_server(database, folder, observed=False)
        try:
            with grpc.insecure_channel(target) as channel:
                stub = authz_pb2_grpc.AuthzServiceStub(channel)
                _pairs(stub, 20)  # warm-up: imports, caches, the first statements
                fresh = _ms_per_write(server.pid, stub, options.measured)
                started = time.perf_counter()
                _pairs(stub, options.history)
                history_seconds = time.perf_counter() - started
                after = _ms_per_write(server.pid, stub, options.measured)
        finally:
            _stop(server)
    figures = {
        "pairs_of_history": options.history + options.measured + 20,
        "fresh_ms_per_write": round(fresh, 3),
        "after_history_ms_per_write": round(after, 3),
        "ratio": round(after / fresh, 2) if fresh else None,
        "history_seconds": round(history_seconds, 1),
    }
    say(
        f"writes: server CPU per write (grant/revoke pairs on one contact and organization): "
        f"fresh {figures['fresh_ms_per_write']} ms, after {figures['pairs_of_history']} pairs "
        f"{figures['after_history_ms_per_write']} ms ({figures['ratio']}x)"
    )
    return figures
