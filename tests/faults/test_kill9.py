"""kill -9 in the middle of grants, revokes and code issues: nothing acknowledged is lost, nothing
unacknowledged is half there, and the outbox sends each email after the restart, once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from authz_client import AuthzClient, AuthzClientError, FailedPreconditionError, NewContact
from sqlalchemy import create_engine, func, select

from authz.commands.base import idempotency_key
from authz.store import tables as t

AUTHZ = str(Path(sys.executable).with_name("authz"))
PR, SQC = "C-PR", "ORG-SQC"
MAX_WRITES = 400  # bounds the load in count...
MAX_SECONDS = 15.0  # ...and in time


class Served:
    """`authz serve` as a real process; its output is read continuously (and kept) so it never blocks."""

    def __init__(self, folder: Path, *, demo: bool) -> None:
        env = dict(
            os.environ,
            AUTHZ_DATABASE_URL=f"sqlite:///{folder / 'authz.db'}",
            AUTHZ_LISTEN="127.0.0.1:0",
            AUTHZ_MAIL_URL=f"file://{folder / 'outbox'}",
            AUTHZ_MAIL_INTERVAL_SECONDS="0.2",
            AUTHZ_MAX_WORKERS="8",
        )
        self.process = subprocess.Popen(
            [AUTHZ, "serve", *(["--demo"] if demo else [])],
            cwd=folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        ready = threading.Event()
        self.port = 0

        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self.lines.append(line)
                found = re.search(r"authz serving on [\d.]+:(\d+)", line)
                if found:
                    self.port = int(found.group(1))
                    ready.set()

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()
        if not ready.wait(60):
            self.process.kill()
            pytest.fail("the server did not start:\n" + "".join(self.lines))

    def kill(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)
        self.process.wait(timeout=30)
        self.reader.join(timeout=10)


class Load:
    """Writers: grants of new contacts (each also queues a link-code email), code issues, revokes."""

    def __init__(self, port: int) -> None:
        self.client = AuthzClient(f"127.0.0.1:{port}", timeout=10)
        self.lock = threading.Lock()
        self.acknowledged: dict[str, tuple[str, str]] = {}  # request_id -> (operation, contact_id)
        self.attempted: dict[str, tuple[str, str]] = {}
        self.contacts: list[str] = []
        self.counter = 0
        self.stop = threading.Event()

    def _next(self) -> tuple[str, str, str] | None:
        with self.lock:
            if self.counter >= MAX_WRITES:
                return None
            self.counter += 1
            n = self.counter
            if n % 3 == 0 and len(self.contacts) > 4:
                return f"issue-{n}", "issue", self.contacts[n % len(self.contacts)]
            if n % 7 == 0 and len(self.contacts) > 8:
                return f"revoke-{n}", "revoke", self.contacts.pop(0)
            return f"grant-{n}", "grant", f"worker{n}"

    def _write(self, request_id: str, operation: str, who: str) -> str:
        client = self.client
        if operation == "grant":
            person = NewContact(first_name="Kill", last_name=who, email=f"{who}@example.org", language="fr")
            answer = client.grant_relation(
                PR, SQC, new_contact=person, role="membre_du_personnel", subjects=[("profil", "read")],
                attest=True, request_id=request_id,
            )  # fmt: skip
            return answer.contact_id
        if operation == "issue":
            client.issue_link_code(PR, SQC, who, request_id=request_id, attest=True)
        else:
            client.revoke_relation(PR, SQC, contact_id=who, all_relations=True, attest=True, request_id=request_id)
        return who

    def run(self) -> None:
        started = time.monotonic()
        while not self.stop.is_set() and time.monotonic() - started < MAX_SECONDS:
            step = self._next()
            if step is None:
                return
            request_id, operation, who = step
            with self.lock:
                self.attempted[request_id] = (operation, who)
            try:
                contact = self._write(request_id, operation, who)
            except AuthzClientError:
                return  # the server is gone: this write is in doubt
            with self.lock:
                self.acknowledged[request_id] = (operation, contact)
                if operation == "grant":
                    self.contacts.append(contact)


def test_kill_9_during_writes_loses_nothing_acknowledged_and_keeps_nothing_half_written(tmp_path: Path) -> None:
    first = Served(tmp_path, demo=True)
    load = Load(first.port)
    writers = [threading.Thread(target=load.run) for _ in range(4)]
    for writer in writers:
        writer.start()
    deadline = time.monotonic() + MAX_SECONDS
    while len(load.acknowledged) < 120 and time.monotonic() < deadline:
        time.sleep(0.02)
    first.kill(signal.SIGKILL)  # mid-load: writers are in flight
    load.stop.set()
    for writer in writers:
        writer.join(timeout=20)
    load.client.close()
    acknowledged = dict(load.acknowledged)
    in_doubt = {rid: step for rid, step in load.attempted.items() if rid not in acknowledged}
    assert len(acknowledged) >= 100 and in_doubt, (len(acknowledged), len(in_doubt))

    second = Served(tmp_path, demo=False)
    engine = create_engine(f"sqlite:///{tmp_path / 'authz.db'}")
    try:
        with engine.connect() as db:
            audit_rows = db.execute(select(t.audit_log).where(t.audit_log.c.request_id.is_not(None))).all()
            audited = {row.request_id: row.action for row in audit_rows}
            # The store keeps request ids scoped by caller and actor (a digest): read them back through the audit.
            request_id_of = {idempotency_key(row.request_id, row.actor_id): row.request_id for row in audit_rows}
            keys = {
                (request_id_of.get(row.request_id, row.request_id), row.operation)
                for row in db.execute(select(t.idempotency_keys))
            }
            operation_of = {"grant": "grant_relation", "issue": "issue_link_code", "revoke": "revoke_relation"}
            # 1. Every acknowledged write is there, with its audit row.
            for request_id, (operation, contact) in acknowledged.items():
                assert (request_id, operation_of[operation]) in keys, request_id
                assert audited.get(request_id) == operation_of[operation], request_id
                relations = db.execute(select(t.relations).where(t.relations.c.contact_id == contact)).all()
                assert relations, request_id
                if operation == "revoke":
                    assert all(r.ended_at is not None for r in relations), request_id
            # 2. Nothing half-written: a write's change, its idempotency key and its audit row come together.
            assert {rid for rid, _ in keys} == set(audited)
            for request_id in in_doubt:
                assert (request_id in audited) == any(rid == request_id for rid, _ in keys)
            grants = sum(1 for _, op in keys if op == "grant_relation")
            issues = sum(1 for _, op in keys if op == "issue_link_code")
            created = db.execute(
                select(func.count()).select_from(t.contacts).where(t.contacts.c.last_name.like("worker%"))
            ).scalar_one()
            their_relations = db.execute(
                select(func.count())
                .select_from(t.relations.join(t.contacts, t.relations.c.contact_id == t.contacts.c.id))
                .where(t.contacts.c.last_name.like("worker%"))
            ).scalar_one()
            subjects = db.execute(
                select(func.count())
                .select_from(
                    t.relation_subjects.join(t.relations).join(t.contacts, t.relations.c.contact_id == t.contacts.c.id)
                )
                .where(t.contacts.c.last_name.like("worker%"))
            ).scalar_one()
            assert created == their_relations == subjects == grants
            codes = db.execute(select(func.count()).select_from(t.link_codes)).scalar_one()
            outbox = db.execute(select(func.count()).select_from(t.outbox)).scalar_one()
            assert codes == outbox == grants + issues  # each new contact and each issue: one code, one email
            revision = db.execute(select(t.store_revision.c.revision)).scalar_one()
            assert revision == db.execute(select(func.max(t.audit_log.c.revision))).scalar_one()
        # 3. The in-doubt writes, retried with their request ids, land once.
        with AuthzClient(f"127.0.0.1:{second.port}", timeout=10) as client:
            retry = Load(second.port)
            retry.client.close()
            retry.client = client
            for request_id, (operation, who) in sorted(in_doubt.items()):
                try:
                    retry._write(request_id, operation, who)
                except FailedPreconditionError:
                    assert operation == "issue"  # its contact was removed by an acknowledged revoke meanwhile
        with engine.connect() as db:
            for request_id, (operation, who) in in_doubt.items():
                if operation == "grant":
                    same = select(func.count()).select_from(t.contacts).where(t.contacts.c.last_name == who)
                    assert db.execute(same).scalar_one() == 1, request_id
        # 4. The outbox: after the restart every email goes out, each once (one file per message id).
        outbox_dir = tmp_path / "outbox"
        deadline = time.monotonic() + 20
        with engine.connect() as db:
            while time.monotonic() < deadline:
                pending = db.execute(
                    select(func.count()).select_from(t.outbox).where(t.outbox.c.sent_at.is_(None))
                ).scalar_one()
                if pending == 0:
                    break
                time.sleep(0.2)
                db.rollback()
            ids = {row.id for row in db.execute(select(t.outbox.c.id))}
        assert pending == 0
        files = {path.stem for path in outbox_dir.glob("*.eml")}
        assert files == ids
        second.kill(signal.SIGTERM)
        sends = Counter(
            found.group(1)
            for line in [*first.lines, *second.lines]
            for found in [re.search(r"outbox (\w+) sent to", line)]
            if found
        )
        assert set(sends) == ids
        # A message written to disk just before the kill, and not yet marked sent, goes again under the
        # same Message-ID (the same file): at most the one in flight at the kill.
        assert sum(n - 1 for n in sends.values()) <= 1, [k for k, n in sends.items() if n > 1]
        print(
            f"kill -9: {len(acknowledged)} acknowledged writes all present, {len(in_doubt)} in doubt "
            f"(present after kill: {sum(1 for r in in_doubt if r in audited)}), {len(ids)} emails, "
            f"resent: {sum(n - 1 for n in sends.values())}"
        )
    finally:
        engine.dispose()
        if second.process.poll() is None:
            second.kill(signal.SIGKILL)
