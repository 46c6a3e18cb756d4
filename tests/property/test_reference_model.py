"""Random sequences of grants, revokes, delegations, withdrawals and date changes, driven through
the real server, against a reference model written plainly here (dicts and loops, from
docs/DOMAIN.md, not from authz/engine). Every CheckAccess must agree with the model, and so must
both lookups (LookupPrincipals: who the model allows on an organization; LookupOrganizations:
where it allows a contact); the canary contact, never granted anything, must never be
allowed nor looked up (OpenFGA's never-granted canary).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from authz_client import AlreadyExistsError, AuthzClient, AuthzClientError, InvalidArgumentError, check_request
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from authz.commands.import_data import import_file
from authz.engine.policy import Policy
from authz.server.app import AuthzApp
from authz.store.sql import open_store

from ..conftest import Clock, settings_for

pytestmark = pytest.mark.slow

MONTREAL = ZoneInfo("America/Montreal")
A, E1, E2 = "ORG-A", "EMP-1", "EMP-2"
ADMIN, BOSS = "C-ADMIN", {E1: "C-BOSS-1", E2: "C-BOSS-2"}
STAFF = ("C-M1", "C-M2", "C-M3")
CANARY = "C-CANARY"
CONTACTS = (ADMIN, *BOSS.values(), *STAFF, CANARY)
ORGANIZATIONS = (A, E1, E2)
SUBJECTS = ("rapport_mensuel", "paiements_et_releves", "profil")
CHECKED_SUBJECTS = (*SUBJECTS, "relations")
READ, WRITE = 1, 2
END_OF_TIME = date(9999, 12, 31)
START = datetime(2026, 3, 10, 17, 0, tzinfo=UTC)  # mid-day in Montréal


def world(folder: Path) -> Path:
    def person(cid: str) -> dict[str, str]:
        return {
            "id": cid,
            "first_name": cid,
            "last_name": "Test",
            "email": f"{cid.lower()}@example.org",
            "language": "fr",
        }

    data = {
        "organizations": [
            {"id": A, "name": "Association A", "kind": "association"},
            {"id": E1, "name": "Employeur 1", "kind": "employer"},
            {"id": E2, "name": "Employeur 2", "kind": "employer"},
        ],
        "contacts": [person(c) for c in (ADMIN, *BOSS.values(), *STAFF, CANARY)],
        "relations": [
            {
                "id": "R-ADMIN",
                "contact_id": ADMIN,
                "organization_id": A,
                "role": "personne_responsable",
                "start_date": "2020-01-01",
                "end_date": "9999-12-31",
                "subjects": [],
            },
            *[
                {
                    "id": f"R-{boss}",
                    "contact_id": boss,
                    "organization_id": org,
                    "role": "dirigeant",
                    "start_date": "2020-01-01",
                    "end_date": "9999-12-31",
                    "subjects": [],
                }
                for org, boss in BOSS.items()
            ],
            # Staff are the association's own contacts (a relation of 2019, ended): the form picks
            # relations' holders among them ("Contact dans ce profil").
            *[
                {
                    "id": f"R-{member}-2019",
                    "contact_id": member,
                    "organization_id": A,
                    "role": "membre_du_personnel",
                    "start_date": "2019-01-01",
                    "end_date": "2019-12-31",
                    "subjects": [],
                }
                for member in STAFF
            ],
        ],
    }
    path = folder / "world.json"
    path.write_text(json.dumps(data))
    return path


# -- the reference model -------------------------------------------------------------------


@dataclass
class Rel:
    id: str
    kind: str  # "contact", "org" (grantor -> grantee), "delegation"
    org: str  # the organization the rights are on
    holder: str  # contact id, or the grantee organization
    start: date
    end: date
    subjects: dict[str, int]  # subject -> 1 read / 2 write; {"*": 2} = all the organization holds
    role: str = ""
    via: str = ""
    ended_at: datetime | None = None

    def in_force(self, at: datetime) -> bool:
        day = at.astimezone(MONTREAL).date()
        return self.start <= day <= self.end and (self.ended_at is None or at < self.ended_at)


def role_default(role: str, subject: str) -> int:
    # The shipped policy (docs/DOMAIN.md, rule 2).
    if role == "dirigeant":
        return WRITE
    if role == "personne_responsable":
        return WRITE if subject == "relations" else READ
    return 0


@dataclass
class Model:
    rels: list[Rel] = field(default_factory=list)

    def org_holds(self, grantee: str, org: str, subject: str, at: datetime) -> int:
        held = 0
        for rel in self.rels:
            if rel.kind == "org" and rel.holder == grantee and rel.org == org and rel.in_force(at):
                held = max(held, rel.subjects.get(subject, 0))
        return held

    def member_of(self, contact: str, org: str, at: datetime) -> bool:
        return any(r.kind == "contact" and r.holder == contact and r.org == org and r.in_force(at) for r in self.rels)

    def right(self, contact: str, org: str, subject: str, at: datetime) -> int:
        best = 0
        for rel in self.rels:
            if rel.holder != contact or rel.org != org or not rel.in_force(at):
                continue
            if rel.kind == "contact":
                best = max(best, rel.subjects.get(subject, 0), role_default(rel.role, subject))
            elif rel.kind == "delegation" and self.member_of(contact, rel.via, at):
                given = WRITE if "*" in rel.subjects else rel.subjects.get(subject, 0)
                best = max(best, min(given, self.org_holds(rel.via, org, subject, at)))
        return best

    def allowed(self, contact: str, org: str, subject: str, right: int, at: datetime) -> bool:
        return self.right(contact, org, subject, at) >= right

    def principals(self, org: str, subject: str, right: int, at: datetime) -> list[str]:
        return sorted(c for c in CONTACTS if self.allowed(c, org, subject, right, at))

    def organizations(self, contact: str, subject: str, right: int, at: datetime) -> list[str]:
        return sorted(o for o in ORGANIZATIONS if self.allowed(contact, o, subject, right, at))


# -- the machine -----------------------------------------------------------------------------

subject_rights = st.dictionaries(st.sampled_from(SUBJECTS), st.sampled_from([READ, WRITE]), min_size=1, max_size=3)
staff = st.sampled_from(STAFF)
employers = st.sampled_from([E1, E2])


class AgreesWithTheModel(RuleBasedStateMachine):
    folder: Path
    policy: Policy
    counter = itertools.count()
    seen: dict[str, int]  # how often each kind of answer came up, across examples

    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.clock = Clock()
        self.clock.set(START)
        url = f"sqlite:///{self.folder / f'prop-{next(self.counter)}.db'}"
        app_settings = settings_for(url, self.folder)
        store = open_store(app_settings)
        report = import_file(store, world(self.folder), self.policy.subjects, now=START)
        assert not report.refused, report.refused
        self.app = AuthzApp(app_settings, store=store, clock=self.clock)
        self.app.start()
        self.client = AuthzClient(f"127.0.0.1:{self.app.port}", timeout=10)
        self.checks = 0
        self.lookups = 0

    @initialize()
    def imported(self) -> None:
        for rel_id, holder, org, role in [("R-ADMIN", ADMIN, A, "personne_responsable")] + [
            (f"R-{boss}", boss, org, "dirigeant") for org, boss in BOSS.items()
        ]:
            self.model.rels.append(Rel(rel_id, "contact", org, holder, date(2020, 1, 1), END_OF_TIME, {}, role))
        for member in STAFF:
            last_year = date(2019, 1, 1), date(2019, 12, 31)
            self.model.rels.append(Rel(f"R-{member}-2019", "contact", A, member, *last_year, {}, "membre_du_personnel"))

    @initialize()
    def a_starting_point(self) -> None:
        # The worked example's shape, so that delegations have something to delegate from the first step.
        self.grant_directly("C-M1", {"profil": READ}, 0, None)
        self.employer_authorizes_the_association(E1, {"paiements_et_releves": WRITE, "rapport_mensuel": READ})
        self.delegate("C-M1", E1, {})

    def now(self) -> datetime:
        return self.clock()

    def today(self) -> date:
        return self.now().astimezone(MONTREAL).date()

    def teardown(self) -> None:
        self.client.close()
        self.app.stop(grace=0)

    # -- writes
    def grant_directly(self, who: str, subjects: dict[str, int], start: int, length: int | None) -> None:
        first = self.today() + timedelta(days=start)
        last = END_OF_TIME if length is None else first + timedelta(days=length)
        if start < 0:
            # Through the API a relation starts today or later: the past is not rewritten (model unchanged).
            with pytest.raises(InvalidArgumentError):
                self.client.grant_relation(
                    ADMIN, A, contact_id=who, role="membre_du_personnel", start_date=first, end_date=last,
                    subjects=list(subjects.items()), attest=True,
                )  # fmt: skip
            return
        if self._repeats("contact", who, first, last):
            # One relation per purpose: the same role over dates that overlap is refused (model unchanged).
            with pytest.raises(AlreadyExistsError):
                self.client.grant_relation(
                    ADMIN, A, contact_id=who, role="membre_du_personnel", start_date=first, end_date=last,
                    subjects=list(subjects.items()), attest=True,
                )  # fmt: skip
            return
        answer = self.client.grant_relation(
            ADMIN, A, contact_id=who, role="membre_du_personnel", start_date=first, end_date=last,
            subjects=list(subjects.items()), attest=True,
        )  # fmt: skip
        self.model.rels.append(
            Rel(answer.relation_id, "contact", A, who, first, last, dict(subjects), "membre_du_personnel")
        )

    def employer_authorizes_the_association(self, employer: str, subjects: dict[str, int]) -> None:
        answer = self.client.grant_relation(
            BOSS[employer], employer, grantee_organization_id=A, role="representant",
            subjects=list(subjects.items()), attest=True,
        )  # fmt: skip
        self.model.rels.append(Rel(answer.relation_id, "org", employer, A, self.today(), END_OF_TIME, dict(subjects)))

    def delegate(self, who: str, employer: str, subjects: dict[str, int]) -> None:
        now = self.now()
        members = [r for r in self.model.rels if r.kind == "contact" and r.holder == who and r.org == A]
        if not members:
            expected = "NOT_FOUND"
        elif not self.model.member_of(who, A, now):
            expected = "FAILED_PRECONDITION"
        elif subjects and any(self.model.org_holds(A, employer, s, now) < r for s, r in subjects.items()):
            expected = "FAILED_PRECONDITION"  # more than the association holds there
        elif not subjects and not any(self.model.org_holds(A, employer, s, now) for s in SUBJECTS):
            expected = "FAILED_PRECONDITION"
        elif self._repeats("delegation", who, self.today(), END_OF_TIME, on=employer):
            expected = "ALREADY_EXISTS"  # one delegation per delegate, association and employer
        else:
            expected = "OK"
        try:
            answer = self.client.grant_relation(
                ADMIN, A, contact_id=who, target_organization_id=employer, subjects=list(subjects.items()), attest=True
            )
            outcome = "OK"
        except AuthzClientError as error:
            outcome = error.code.name
        assert outcome == expected, (who, employer, subjects)
        if outcome == "OK":
            granted = dict(subjects) if subjects else {"*": WRITE}
            self.model.rels.append(
                Rel(answer.relation_id, "delegation", employer, who, self.today(), END_OF_TIME, granted, "", via=A)
            )

    def _repeats(self, kind: str, who: str, first: date, last: date, on: str = A) -> bool:
        """Whether a relation of `who` not ended yet would be repeated by a new one over first..last."""
        today = self.today()
        return any(
            r.kind == kind and r.holder == who and r.org == on and r.ended_at is None and r.end >= today
            and r.start <= last and first <= r.end and (r.via == A if kind == "delegation" else True)
            for r in self.model.rels
        )  # fmt: skip

    def _open(self, who: str) -> list[Rel]:
        return [
            r for r in self.model.rels if r.kind == "contact" and r.holder == who and r.org == A and r.ended_at is None
        ]

    def remove_all_relations(self, who: str) -> None:
        try:
            self.client.revoke_relation(ADMIN, A, contact_id=who, all_relations=True, attest=True)
        except AuthzClientError as error:
            assert error.code.name in {"NOT_FOUND", "FAILED_PRECONDITION"}, error
            assert not self._open(who)
            return
        now = self.now()
        for rel in self.model.rels:
            ends = (rel.kind == "contact" and rel.org == A) or (rel.kind == "delegation" and rel.via == A)
            if ends and rel.holder == who and rel.ended_at is None:
                rel.ended_at = now

    def remove_one_relation(self, data: st.DataObject) -> None:
        rel = data.draw(st.sampled_from([r for who in STAFF for r in self._open(who)]))
        self.client.revoke_relation(ADMIN, A, contact_id=rel.holder, relation_ids=[rel.id], attest=True)
        rel.ended_at = self.now()

    def remove_subjects(self, data: st.DataObject) -> None:
        # Ending is the only change a relation past its end date takes: subjects are removed from the others.
        today = self.today()
        rel = data.draw(st.sampled_from([r for who in STAFF for r in self._open(who) if r.subjects and r.end >= today]))
        gone = data.draw(st.lists(st.sampled_from(sorted(rel.subjects)), min_size=1, unique=True))
        self.client.revoke_relation(ADMIN, A, contact_id=rel.holder, relation_id=rel.id, subjects=gone, attest=True)
        for subject in gone:
            del rel.subjects[subject]

    def employer_withdraws_the_association(self, employer: str) -> None:
        open_ = [r for r in self.model.rels if r.kind == "org" and r.org == employer and r.ended_at is None]
        try:
            self.client.revoke_relation(
                BOSS[employer], employer, grantee_organization_id=A, all_relations=True, attest=True
            )
        except AuthzClientError as error:
            assert error.code.name in {"NOT_FOUND", "FAILED_PRECONDITION"} and not open_, error
            return
        for rel in open_:
            rel.ended_at = self.now()

    def time_passes(self, days: int) -> None:
        self.clock.set(self.now() + timedelta(days=days))

    # -- one step: an action drawn uniformly (rules of their own would be drawn far less evenly,
    # and delegations, which need two earlier steps, would hardly ever happen)
    @rule(data=st.data())
    def step(self, data: st.DataObject) -> None:
        actions = ["grant", "authorize", "delegate", "remove_all", "withdraw", "time"]
        if any(self._open(who) for who in STAFF):
            actions.append("remove_one")
        if any(r.subjects and r.end >= self.today() for who in STAFF for r in self._open(who)):
            actions.append("remove_subjects")
        action = data.draw(st.sampled_from(actions), label="action")
        if action == "grant":
            self.grant_directly(
                data.draw(staff), data.draw(subject_rights), data.draw(st.sampled_from([-10, 0, 5])),
                data.draw(st.sampled_from([None, 3, 20])),
            )  # fmt: skip
        elif action == "authorize":
            self.employer_authorizes_the_association(data.draw(employers), data.draw(subject_rights))
        elif action == "delegate":
            self.delegate(data.draw(staff), data.draw(employers), data.draw(st.one_of(st.just({}), subject_rights)))
        elif action == "remove_all":
            self.remove_all_relations(data.draw(staff))
        elif action == "withdraw":
            self.employer_withdraws_the_association(data.draw(employers))
        elif action == "time":
            self.time_passes(data.draw(st.integers(min_value=1, max_value=12)))
        elif action == "remove_one":
            self.remove_one_relation(data)
        else:
            self.remove_subjects(data)

    # -- the property
    @invariant()
    def every_check_agrees(self) -> None:
        now = self.now()
        moments = (now, now + timedelta(days=10), now - timedelta(days=3))
        cases = [
            (contact, org, subject, right, at)
            for contact in (*STAFF, CANARY, ADMIN)
            for org in (A, E1, E2)
            for subject in CHECKED_SUBJECTS
            for right in (READ, WRITE)
            for at in moments
        ]
        answers = self.client.batch_check([check_request(c, o, s, r, at=at) for c, o, s, r, at in cases])
        self.checks += len(cases)
        for (contact, org, subject, right, at), answer in zip(cases, answers, strict=True):
            expected = self.model.allowed(contact, org, subject, right, at)
            assert answer.allowed == expected, (contact, org, subject, right, at.isoformat(), self.model.rels)
            if contact == CANARY:
                assert not answer.allowed
            elif answer.allowed:
                self.seen["delegated" if org != A and contact in STAFF else "direct"] += 1

    @invariant()
    def both_lookups_agree(self) -> None:
        # One instant a step (now or ten days ahead, in turn) keeps the suite's time in bounds.
        self.lookups += 1
        at = self.now() + timedelta(days=10 * (self.lookups % 2))
        for subject in CHECKED_SUBJECTS:
            for right in (READ, WRITE):
                for org in ORGANIZATIONS:
                    who = self.client.lookup_principals(org, subject, right, at=at, page_size=3)
                    found = list(who.principal_ids)
                    if who.next_page_token:  # pages of three: the paging is exercised too
                        rest = self.client.lookup_principals(org, subject, right, at=at, page_token=who.next_page_token)
                        found += list(rest.principal_ids)
                    assert found == self.model.principals(org, subject, right, at), (org, subject, right, at)
                    assert CANARY not in found
                for contact in CONTACTS:
                    where = self.client.lookup_organizations(contact, subject, right, at=at)
                    assert list(where.organization_ids) == self.model.organizations(contact, subject, right, at), (
                        contact,
                        subject,
                        right,
                        at,
                    )


def test_every_check_agrees_with_the_reference_model(tmp_path: Path, policy: Policy) -> None:
    AgreesWithTheModel.folder = tmp_path
    AgreesWithTheModel.policy = policy
    AgreesWithTheModel.seen = {"direct": 0, "delegated": 0}
    run_state_machine_as_test(
        AgreesWithTheModel,
        settings=settings(
            max_examples=25,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            database=None,  # no example database written into the repository
            # No shrinking: each example starts a server, and shrinking one failure would take minutes.
            # A failure still prints every step that led to it.
            phases=[Phase.explicit, Phase.generate],
        ),
    )
    # The sequences did reach the interesting cases: rights held directly and through delegations.
    assert AgreesWithTheModel.seen["direct"] > 0 and AgreesWithTheModel.seen["delegated"] > 0, AgreesWithTheModel.seen
