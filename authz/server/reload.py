"""Hot reload of the policy folder: watch it, validate every edit in full, swap atomically.

Polling the files' content hash is portable (no inotify on every platform, nor in every
container) and cheap: a few small files read every half second. SIGHUP asks for an
immediate reload (wired in `authz serve`). An invalid edit never replaces the policy being
served: its errors are logged once per distinct edit, the `authz.v1.AuthzService/policy`
health entry turns NOT_SERVING until the folder is valid again, and the refusal is audited
like a reload. An edit that removes (rather than retires) a subject the store still
grants is refused too. An accepted edit is logged and audited with the decisions it
flipped on the server's own data (`authz.engine.flips`, the figures of `authz policy diff`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from authz.domain.dates import utc_now
from authz.engine.flips import decision_flips
from authz.engine.index import DecisionEngine
from authz.engine.policy import Policy, content_hash
from authz.engine.validation import (
    Problem,
    ValidationReport,
    live_grant_problems,
    read_texts,
    validate_texts,
)
from authz.store.interface import AuditRecord, Store

__all__ = ["POLICY_HEALTH_NAME", "PolicyStatus", "PolicyWatcher"]

log = logging.getLogger("authz.policy")

POLICY_HEALTH_NAME = "authz.v1.AuthzService/policy"
_ACTOR = "policy-reload"
# How long a changed folder must stay unchanged before it is read for good: an editor
# writing a file in several steps is not caught half-way.
_SETTLE_SECONDS = 0.1
# Refused contents already reported since the last accepted one: an editor flipping
# between two bad versions is told about each once, not at every save.
_REMEMBERED_REFUSALS = 64
_LOGGED_GROUPS = 20  # flip groups named in the log of a reload; the audit has them all, counted


@dataclass
class PolicyStatus:
    """What health, logs and tests can see of the policy being served."""

    serving_hash: str
    loaded_at: datetime
    reloads: int = 0
    refusals: int = 0
    pending_hash: str | None = None  # the invalid folder content, while it is on disk
    problems: list[Problem] = field(default_factory=list)

    @property
    def valid_on_disk(self) -> bool:
        return self.pending_hash is None


class PolicyWatcher:
    """Keeps `engine`'s policy equal to the last valid content of `directory`."""

    def __init__(
        self,
        directory: Path,
        engine: DecisionEngine,
        *,
        store: Store | None = None,
        on_state: Callable[[bool], None] | None = None,
        interval: float = 0.5,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.directory = directory
        self.engine = engine
        self.store = store
        self.on_state = on_state or (lambda _valid: None)
        self.interval = interval
        self.clock = clock
        self.status = PolicyStatus(engine.policy.content_hash, clock())
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._forced = False
        self._lock = threading.Lock()  # one reload at a time (the thread, SIGHUP, tests)
        self._reported: dict[str, None] = {}  # refused contents already logged, oldest first
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="authz-policy-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def request_reload(self) -> None:
        """Reload now, even if the folder looks unchanged (SIGHUP); safe from a signal handler."""
        self._forced = True
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stopping.is_set():
                return
            forced, self._forced = self._forced, False
            try:
                self.poll(force=forced)
            except Exception:  # the watcher must outlive any surprise; the old policy keeps serving
                log.exception("policy reload failed; the previous policy keeps serving")

    def poll(self, *, force: bool = False) -> bool:
        """Look at the folder once; returns True when a new policy was put in service."""
        with self._lock:
            texts, problems = read_texts(self.directory)
            digest = content_hash(texts)
            status = self.status
            if not force:
                if digest == status.serving_hash and not problems:
                    if status.pending_hash is not None:  # the edit was undone: healthy again
                        log.info("policy folder is back to the policy being served (%s)", digest)
                        status.pending_hash, status.problems = None, []
                        self._reported.clear()
                        self.on_state(True)
                    return False
                if digest == status.pending_hash:
                    return False  # already refused and reported
            if not force:
                self._stopping.wait(_SETTLE_SECONDS)
                again, _ = read_texts(self.directory)
                if content_hash(again) != digest:
                    return False  # still being written; the next poll sees the settled folder
            if problems:
                self._refuse(digest, problems, force=force)
                return False
            try:
                report = self._validate(texts)
            except Exception as exc:  # a surprise is still a refusal of this content, reported once
                log.debug("validation of %s raised", digest, exc_info=True)
                report = ValidationReport(self.directory, digest)
                report.problems.append(
                    Problem(str(self.directory), None, f"could not be validated: {type(exc).__name__}: {exc}")
                )
            if not report.ok or report.policy is None:
                self._refuse(digest, report.errors, force=force)
                return False
            previous, old_policy = status.serving_hash, self.engine.policy
            self.engine.set_policy(report.policy)
            status.serving_hash, status.loaded_at = digest, self.clock()
            status.reloads += 1
            status.pending_hash, status.problems = None, []
            self._reported.clear()
            self.on_state(True)
            for warning in report.warnings:
                log.warning("policy %s: %s", digest, warning)
            if previous == digest:
                log.info("policy re-validated on request, unchanged: %s (%s)", digest, self.directory)
                return False
            flips = self._flips(old_policy)
            log.info("policy reloaded: %s -> %s (%s); %s", previous, digest, self.directory, flips.get("summary"))
            for sentence in flips.get("sentences", [])[:_LOGGED_GROUPS]:
                log.info("  %s", sentence)
            self._audit(
                "policy_reload",
                {"policy_hash": digest, "previous_hash": previous, "directory": str(self.directory), "flips": flips},
            )
            return True

    def _validate(self, texts: dict[str, str]) -> ValidationReport:
        """The folder's report; with a store, a subject removed while still granted is an error."""
        report = validate_texts(self.directory, texts)
        new, old = report.policy, self.engine.policy
        if new is None or self.store is None:
            return report
        removed = {*old.subjects, *old.retired} - {*new.subjects, *new.retired}
        if removed:
            found = live_grant_problems(self.directory, new, self.store.live_grants(removed))
            if found:
                report.problems.extend(found)
                report.policy = None
        return report

    def _flips(self, old: Policy) -> dict[str, Any]:
        """The decisions the reload flipped on the data served, for the log and the audit."""
        try:
            flips = decision_flips(self.engine, old, self.clock())
        except Exception:  # a summary must never undo nor block a reload
            log.exception("could not compute the decisions flipped by the reload")
            return {"summary": "decision changes not computed (see the log)"}
        return {
            "summary": flips.summary(),
            "contacts": len(flips.changed_contacts),
            "organizations": len(flips.changed_organizations),
            "changes": [
                {
                    "roles": g.roles,
                    "subject": g.subject,
                    "before": g.before.code,
                    "after": g.after.code,
                    "count": len(g.changes),
                }
                for g in flips.groups
            ],
            "sentences": [g.sentence(limit=10) for g in flips.groups],
        }

    def _refuse(self, digest: str, problems: list[Problem], *, force: bool = False) -> None:
        status = self.status
        status.pending_hash, status.problems = digest, list(problems)
        if digest in self._reported and not force:
            self.on_state(False)
            return  # this very content was refused and reported already
        self._reported[digest] = None
        while len(self._reported) > _REMEMBERED_REFUSALS:
            del self._reported[next(iter(self._reported))]
        status.refusals += 1
        log.error(
            "policy edit %s refused, %s keeps serving; %d error(s):\n  %s",
            digest,
            status.serving_hash,
            len(problems),
            "\n  ".join(str(p) for p in problems),
        )
        self._audit(
            "policy_reload_refused",
            {
                "policy_hash": digest,
                "serving_hash": status.serving_hash,
                "directory": str(self.directory),
                "errors": [str(p) for p in problems[:50]],
            },
        )
        self.on_state(False)  # last: whoever sees the health change finds the log and the audit written

    def _audit(self, action: str, changes: dict[str, Any]) -> None:
        if self.store is None:
            return
        try:
            with self.store.transaction() as tx:
                # A policy change is not a data change: it is recorded at the current revision.
                tx.add_audit(AuditRecord(self.clock(), _ACTOR, action, changes), self.engine.revision)
        except Exception:
            # The store being down must not stop a reload: checks answer from memory.
            log.exception("could not audit %s %s", action, changes.get("policy_hash"))
