"""Random sequences of every write, by random actors, through the commands on a SQLite store:
after every step the rules of every write hold in the store, and the engine agrees with a
reference model written plainly here (dicts and loops over the stored relations, not the engine).

The writes: GrantRelation in its three forms (a contact's relation, an organization's
authorization, a delegation; new contacts too), RevokeRelation at its three scopes,
UpdateRelation, UpdateContact, IssueLinkCode and RedeemLinkCode, LinkLegacyAccess, and the
import of a small batch. Refusals are expected (the actors are random): a refused write must
change nothing.
"""

from __future__ import annotations

import collections
import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from authz.commands.base import Attestation, Deps
from authz.commands.grant import GrantRelation, GrantRelationRequest, NewContactData
from authz.commands.import_data import import_data
from authz.commands.legacy import LinkLegacyAccess, LinkLegacyAccessRequest
from authz.commands.link_codes import IssueLinkCode, IssueLinkCodeRequest, RedeemLinkCode, RedeemLinkCodeRequest
from authz.commands.revoke import RevokeRelation, RevokeRelationRequest
from authz.commands.update_contact import UpdateContact, UpdateContactRequest
from authz.commands.update_relation import UpdateRelation, UpdateRelationRequest
from authz.domain.model import MANAGEMENT_SUBJECT, WILDCARD_SUBJECT, Relation, Right, Role
from authz.domain.secrets import make_django_pbkdf2
from authz.engine.index import DecisionEngine
from authz.engine.policy import Policy
from authz.errors import AuthzError
from authz.store import migrate
from authz.store.sql import SqlStore, make_engine

pytestmark = pytest.mark.slow

MONTREAL = ZoneInfo("America/Montreal")
START = datetime(2026, 3, 10, 17, 0, tzinfo=UTC)
A, B, E = "ORG-A", "ORG-B", "EMP-E"  # two associations, one employer
ORGANIZATIONS = (A, B, E)
CONTACTS = ("C-ADMIN", "C-BOSS", "C-B", "C-M1", "C-M2", "C-M3")
SUBJECTS = ("rapport_mensuel", "paiements_et_releves", "profil")
CHECKED = (*SUBJECTS, MANAGEMENT_SUBJECT)
ROLES = tuple(Role)
ATTESTED = Attestation(authorizes_acting=True, changes_accurate=True)
PASSWORD = "legacy-secret"


def world() -> dict[str, Any]:
    def relation(rid: str, contact: str, org: str, role: str, **extra: Any) -> dict[str, Any]:
        return {"id": rid, "contact_id": contact, "organization_id": org, "role": role, "start_date": "2020-01-01",
                **extra}  # fmt: skip

    return {
        "organizations": [
            {"id": A, "name": "Association A", "kind": "association"},
            {"id": B, "name": "Association B", "kind": "association"},
            {"id": E, "name": "Employeur E", "kind": "employer"},
        ],
        "contacts": [
            {"id": c, "first_name": "Prénom", "last_name": c, "email": f"{c.lower()}@example.org"} for c in CONTACTS
        ],
        "relations": [
            relation("R-ADMIN", "C-ADMIN", A, "personne_responsable"),
            relation("R-BOSS", "C-BOSS", E, "dirigeant"),
            relation("R-B", "C-B", B, "membre_du_personnel", subjects=[{"subject": "relations", "right": "write"}]),
            relation("R-M1", "C-M1", A, "membre_du_personnel"),
            relation("R-M2", "C-M2", A, "representant", subjects=[{"subject": "profil", "right": "read"}]),
            relation("R-M3", "C-M3", B, "individu_autorise"),
        ],
        "organization_relations": [
            {
                "id": "OR-E-A",
                "grantor_id": E,
                "grantee_id": A,
                "start_date": "2020-01-01",
                "subjects": [
                    {"subject": "paiements_et_releves", "right": "write"},
                    {"subject": "rapport_mensuel", "right": "read"},
                ],
            },
        ],
        "legacy_accounts": [
            {"username": "old-m1", "contact_ids": ["C-M1"], "password_hash": make_django_pbkdf2(PASSWORD, "salt", 1000)}
        ],
    }


# -- the reference model: plain evaluation of the stored relations


@dataclass(frozen=True)
class Plain:
    kind: str
    holder: str
    org: str
    via: str | None
    role: str | None
    start: date
    end: date
    ended: datetime | None
    subjects: tuple[tuple[str, int], ...]

    @staticmethod
    def of(r: Relation) -> Plain:
        return Plain(
            r.kind.value, r.holder_id, r.organization_id, r.via_organization_id, r.role.value if r.role else None,
            r.start_date, r.end_date, r.ended_at, tuple(sorted((s, int(v)) for s, v in r.subjects.items())),
        )  # fmt: skip

    def counts(self, at: datetime) -> bool:
        day = at.astimezone(MONTREAL).date()
        return self.start <= day <= self.end and (self.ended is None or at < self.ended)

    def is_open(self, at: datetime) -> bool:
        return self.end >= at.astimezone(MONTREAL).date() and (self.ended is None or at < self.ended)

    def level(self, subject: str) -> int:
        return dict(self.subjects).get(subject, 0)


class Model:
    def __init__(self, relations: dict[str, Plain], defaults: dict[str, dict[str, int]]) -> None:
        self.relations = relations
        self.defaults = defaults

    def holds(self, grantee: str, org: str, subject: str, at: datetime) -> int:
        levels = [r.level(subject) for r in self.relations.values() if r.kind == "organization"
                  and r.holder == grantee and r.org == org and r.counts(at)]  # fmt: skip
        return max(levels, default=0)

    def right(self, contact: str, org: str, subject: str, at: datetime) -> int:
        best = 0
        for r in self.relations.values():
            if r.holder != contact or r.org != org or r.kind == "organization" or not r.counts(at):
                continue
            if r.kind == "contact":
                best = max(best, r.level(subject), self.defaults.get(r.role or "", {}).get(subject, 0))
            elif subject != MANAGEMENT_SUBJECT and r.via is not None:
                member = any(m.kind == "contact" and m.holder == contact and m.org == r.via and m.counts(at)
                             for m in self.relations.values())  # fmt: skip
                given = max(r.level(subject), r.level(WILDCARD_SUBJECT))
                if member and given:
                    best = max(best, min(given, self.holds(r.via, org, subject, at)))
        return best

    def managed(self, org: str, at: datetime) -> bool:
        contacts = {r.holder for r in self.relations.values() if r.kind == "contact" and r.org == org}
        return any(self.right(c, org, MANAGEMENT_SUBJECT, at) >= 2 for c in contacts)


class WritesKeepTheRules(RuleBasedStateMachine):
    folder: Path
    policy: Policy
    template: Path
    counter = itertools.count()
    outcomes: collections.Counter[str]  # accepted and refused writes, across examples

    def __init__(self) -> None:
        super().__init__()
        path = self.folder / f"w-{next(self.counter)}.db"
        path.write_bytes(self.template.read_bytes())
        self.store = SqlStore.from_url(f"sqlite:///{path}")
        self.now = START
        engine = DecisionEngine(self.policy)
        engine.load(self.store.load_relations(), self.store.revision())
        self.deps = Deps(store=self.store, engine=engine, clock=lambda: self.now)
        self.defaults = {
            role.value: {s: int(r) for s, r in rights.items()} for role, rights in self.policy.role_defaults.items()
        }
        self.model = self._model()
        self.batches = itertools.count()

    def teardown(self) -> None:
        self.store.close()

    def _model(self) -> Model:
        with self.store.transaction() as tx:
            stored = [r for org in ORGANIZATIONS for r in tx.find_relations(organization_id=org)]
        return Model({r.id: Plain.of(r) for r in stored}, self.defaults)

    def _contacts(self) -> list[str]:
        with self.store.transaction() as tx:
            found = {r.contact_id for org in ORGANIZATIONS for r in tx.find_relations(organization_id=org)}
        return sorted(c for c in found if c)

    def _write(self, actor: str, call: Any) -> None:
        """Run one write: refused or not, the rules must hold after it (checked against the state before)."""
        before = self.model
        revision = self.store.revision()
        try:
            call()
            self.outcomes["accepted"] += 1
        except AuthzError as refused:
            self.outcomes[refused.reason] += 1
            after = self._model()
            assert after.relations == before.relations, "a refused write changed relations"
            assert self.store.revision() == revision
            return
        after = self._model()
        self._rules_hold(actor, before, after)
        self.model = after

    # -- the rules, on the store, after a write
    def _rules_hold(self, actor: str, before: Model, after: Model) -> None:
        now = self.now
        for org in ORGANIZATIONS:
            if before.managed(org, now):
                assert after.managed(org, now), f"{org} lost its last manager"
        changed = {rid: r for rid, r in after.relations.items() if before.relations.get(rid) != r}
        for rid, r in changed.items():
            old = before.relations.get(rid)
            if r.kind != "contact":
                assert r.level(MANAGEMENT_SUBJECT) <= (old.level(MANAGEMENT_SUBJECT) if old else 0)
            if r.kind == "delegation":
                assert r.role is None
                for subject, level in r.subjects:
                    if subject != WILDCARD_SUBJECT and level > (old.level(subject) if old else 0):
                        assert level <= after.holds(r.via or "", r.org, subject, now), (rid, subject)
            if old is not None and not old.is_open(now):
                assert (r.start, r.end, r.subjects, r.role, r.via) == (old.start, old.end, old.subjects, old.role,
                                                                       old.via), f"{rid} ended, then changed"  # fmt: skip
            if r.holder == actor and r.kind != "organization":
                assert old is not None, f"{actor} gave themselves {rid}"
                assert r.end <= old.end and r.start >= old.start and r.role == old.role
                assert all(level <= old.level(s) for s, level in r.subjects), f"{actor} widened {rid}"
        open_ones = [(rid, r) for rid, r in after.relations.items() if r.kind != "organization" and r.is_open(now)]
        for (rid, r), (oid, o) in itertools.combinations(open_ones, 2):
            if r.holder == o.holder and r.org == o.org and r.start <= o.end and o.start <= r.end:
                same = (r.via == o.via) if r.kind == "delegation" else (o.kind == "contact" and r.role == o.role)
                assert not (same and r.kind == o.kind), f"{rid} repeats {oid}"

    @invariant()
    def the_engine_agrees_with_the_model(self) -> None:
        engine = self.deps.engine
        for at in (self.now, self.now + timedelta(days=40)):
            ts = at.timestamp()
            for contact in self._contacts():
                for org in ORGANIZATIONS:
                    for subject in CHECKED:
                        expected = self.model.right(contact, org, subject, at)
                        for right in (1, 2):
                            assert engine.check(contact, org, subject, right, ts) == (expected >= right), (
                                contact, org, subject, right, at,
                            )  # fmt: skip

    # -- the writes
    # Managers act more often than others: most writes get past "who may", to the rules.
    orgs = st.sampled_from(ORGANIZATIONS)
    actors = st.sampled_from(CONTACTS)
    # A manager of the organization acts most often: most writes get past "who may", to the rules.
    acting = st.one_of(st.sampled_from(((("C-ADMIN", A)), ("C-BOSS", E), ("C-B", B))), st.tuples(actors, orgs))
    subject_sets = st.lists(st.tuples(st.sampled_from((*SUBJECTS, MANAGEMENT_SUBJECT)),
                                      st.sampled_from((Right.READ, Right.WRITE))),
                            max_size=2, unique_by=lambda p: p[0])  # fmt: skip

    def _relation_ids(self) -> list[str]:
        return sorted(self.model.relations)

    @rule(who=acting, contact=st.sampled_from(CONTACTS), role=st.sampled_from(ROLES), subjects=subject_sets,
          days=st.sampled_from((None, 0, 10)))  # fmt: skip
    def grant_to_a_contact(
        self, who: tuple[str, str], contact: str, role: Role, subjects: list[Any], days: int | None
    ) -> None:
        actor, org = who
        end = "" if days is None else (self.now.astimezone(MONTREAL).date() + timedelta(days=days)).isoformat()
        request = GrantRelationRequest(actor, org, contact_id=contact, role=role, subjects=tuple(subjects),
                                       end_date=end, attestation=ATTESTED)  # fmt: skip
        self._write(actor, lambda: GrantRelation(self.deps).execute(request))

    @rule(who=acting, role=st.sampled_from(ROLES), subjects=subject_sets)
    def grant_to_a_new_contact(self, who: tuple[str, str], role: Role, subjects: list[Any]) -> None:
        actor, org = who
        person = NewContactData(first_name="Nouvelle", last_name="Personne", email="nouvelle@example.org",
                                create_anyway=True)  # fmt: skip
        request = GrantRelationRequest(actor, org, new_contact=person, role=role, subjects=tuple(subjects),
                                       attestation=ATTESTED)  # fmt: skip
        self._write(actor, lambda: GrantRelation(self.deps).execute(request))

    @rule(who=acting, grantee=orgs, subjects=subject_sets)
    def an_organization_authorizes_another(self, who: tuple[str, str], grantee: str, subjects: list[Any]) -> None:
        actor, grantor = who
        request = GrantRelationRequest(actor, grantor, grantee_organization_id=grantee, subjects=tuple(subjects),
                                       attestation=ATTESTED)  # fmt: skip
        self._write(actor, lambda: GrantRelation(self.deps).execute(request))

    @rule(who=acting, contact=st.sampled_from(CONTACTS), onto=orgs, subjects=subject_sets,
          role=st.sampled_from((None, Role.DIRIGEANT)))  # fmt: skip
    def delegate(self, who: tuple[str, str], contact: str, onto: str, subjects: list[Any], role: Role | None) -> None:
        actor, via = who
        request = GrantRelationRequest(actor, via, contact_id=contact, target_organization_id=onto, role=role,
                                       subjects=tuple(subjects), attestation=ATTESTED)  # fmt: skip
        self._write(actor, lambda: GrantRelation(self.deps).execute(request))

    @rule(who=acting, contact=st.sampled_from(CONTACTS))
    def remove_all_relations(self, who: tuple[str, str], contact: str) -> None:
        actor, org = who
        request = RevokeRelationRequest(actor, org, contact_id=contact, all_relations=True, attestation=ATTESTED)
        self._write(actor, lambda: RevokeRelation(self.deps).execute(request))

    @rule(who=acting, data=st.data())
    def remove_one_relation(self, who: tuple[str, str], data: st.DataObject) -> None:
        actor, org = who
        rid = data.draw(st.sampled_from(self._relation_ids()))
        r = self.model.relations[rid]
        grantee = {"grantee_organization_id": r.holder} if r.kind == "organization" else {"contact_id": r.holder}
        request = RevokeRelationRequest(actor, org, relation_ids=(rid,), attestation=ATTESTED, **grantee)
        self._write(actor, lambda: RevokeRelation(self.deps).execute(request))

    @rule(who=acting, data=st.data())
    def remove_subjects(self, who: tuple[str, str], data: st.DataObject) -> None:
        actor, org = who
        rid = data.draw(st.sampled_from(self._relation_ids()))
        r = self.model.relations[rid]
        subject = data.draw(st.sampled_from([s for s, _ in r.subjects] or [SUBJECTS[0]]))
        grantee = {"grantee_organization_id": r.holder} if r.kind == "organization" else {"contact_id": r.holder}
        request = RevokeRelationRequest(actor, org, subjects_relation_id=rid, subjects=(subject,),
                                        attestation=ATTESTED, **grantee)  # fmt: skip
        self._write(actor, lambda: RevokeRelation(self.deps).execute(request))

    @rule(who=acting, data=st.data(), subjects=subject_sets, days=st.sampled_from((None, 0, 5, 400)))
    def update_relation(self, who: tuple[str, str], data: st.DataObject, subjects: list[Any], days: int | None) -> None:
        actor, org = who
        rid = data.draw(st.sampled_from(self._relation_ids()))
        end = "" if days is None else (self.now.astimezone(MONTREAL).date() + timedelta(days=days)).isoformat()
        if not end and not subjects:
            end = "9999-12-31"
        request = UpdateRelationRequest(actor, org, rid, end_date=end, add_subjects=tuple(subjects),
                                        attestation=ATTESTED)  # fmt: skip
        self._write(actor, lambda: UpdateRelation(self.deps).execute(request))

    @rule(who=acting, contact=st.sampled_from(CONTACTS))
    def update_contact(self, who: tuple[str, str], contact: str) -> None:
        actor, org = who
        request = UpdateContactRequest(actor, org, contact, update_mask=("phone",), phone="+1 514 555-0101",
                                       attestation=ATTESTED)  # fmt: skip
        self._write(actor, lambda: UpdateContact(self.deps).execute(request))

    @rule(who=acting, contact=st.sampled_from(CONTACTS), guess=st.sampled_from(("ABCD-EFGH-JKLM", "x")))
    def issue_then_guess_a_code(self, who: tuple[str, str], contact: str, guess: str) -> None:
        actor, org = who
        issue = IssueLinkCodeRequest(actor, org, contact, attestation=Attestation(authorizes_acting=True,
                                                                                   changes_accurate=True))  # fmt: skip
        self._write(actor, lambda: IssueLinkCode(self.deps).execute(issue))
        self._write("", lambda: RedeemLinkCode(self.deps).execute(RedeemLinkCodeRequest("acct-guess", guess)))

    @rule(password=st.sampled_from((PASSWORD, "wrong")))
    def link_legacy_access(self, password: str) -> None:
        request = LinkLegacyAccessRequest("acct-m1", "old-m1", password)
        self._write("", lambda: LinkLegacyAccess(self.deps).execute(request))

    @rule(contact=st.sampled_from(CONTACTS), org=orgs, role=st.sampled_from(ROLES), onto=orgs,
          subjects=subject_sets)  # fmt: skip
    def import_a_small_batch(self, contact: str, org: str, role: Role, onto: str, subjects: list[Any]) -> None:
        batch = next(self.batches)
        rows = [{"subject": s, "right": r.code} for s, r in subjects if s != MANAGEMENT_SUBJECT]
        document = {
            "relations": [{"id": f"IMP-R{batch}", "contact_id": contact, "organization_id": org, "role": role.value,
                           "start_date": "2021-01-01", "subjects": rows}],
            "delegations": [{"id": f"IMP-D{batch}", "contact_id": contact, "via_organization_id": org,
                             "target_organization_id": onto, "start_date": "2021-01-01", "subjects": rows}],
        }  # fmt: skip

        def run() -> None:
            import_data(self.store, document, self.policy.subjects, now=self.now)
            # An import is too large for the change log: a running process reloads its engine.
            self.deps.engine.load(self.store.load_relations(), self.store.revision())

        self._write("", run)

    @precondition(lambda self: self.now < START + timedelta(days=60))
    @rule(days=st.sampled_from((1, 6, 30)))
    def time_passes(self, days: int) -> None:
        self.now += timedelta(days=days)


def test_every_write_keeps_the_rules(tmp_path: Path, policy: Policy) -> None:
    template = tmp_path / "template.db"
    engine = make_engine(f"sqlite:///{template}")
    migrate.upgrade(engine)
    engine.dispose()
    store = SqlStore.from_url(f"sqlite:///{template}")
    report = import_data(store, world(), policy.subjects, now=START)
    assert not report.refused, report.refused
    store.close()
    WritesKeepTheRules.folder = tmp_path
    WritesKeepTheRules.policy = policy
    WritesKeepTheRules.template = template
    WritesKeepTheRules.outcomes = collections.Counter()
    run_state_machine_as_test(
        WritesKeepTheRules,
        settings=settings(
            max_examples=20,
            stateful_step_count=30,
            derandomize=True,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    # The sequences reached both sides of the rules, not only refusals.
    seen = WritesKeepTheRules.outcomes
    assert seen["accepted"] > 100 and seen["NOT_A_MANAGER"] > 0, seen
    print(dict(seen))
    assert seen["SELF_GRANT"] + seen["DUPLICATE_RELATION"] + seen["LAST_MANAGER"] > 0, seen
