"""The fast engine against plain pycasbin, the definition of the semantics.

Generated data sets (contacts with 1-3 relations, organization-to-organization
authorizations, delegations, future and ended windows) go in through the import path
and come back through the store's start-up stream; then withdrawals, removed subjects
and new grants are applied as committed writes would apply them. At random instants,
`DecisionEngine.check` must equal `casbin.Enforcer.enforce` on every (contact,
organization, subject, right) of interest.

The oracle is split by organization: the model's matcher starts with
`p.dom == r.dom`, and `holds()` asks the same domain, so rules of other organizations
can never match a request. Each split enforcer gets the organization's rules plus the
memberships (g3) of the organizations its delegations come through. One test runs the
unsplit enforcer on a sample to show the split changes no answer.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import casbin
import pytest

from authz.bench.data import SUBJECTS, generate
from authz.bench.oracles import build_fast_enforcer
from authz.commands.import_data import import_data
from authz.config import Settings
from authz.domain.dates import MONTREAL
from authz.domain.model import Relation, RelationKind, Right
from authz.engine.index import DecisionEngine
from authz.engine.oracle import build_enforcer
from authz.engine.policy import Policy
from authz.store.sql import open_store

TODAY = date(2026, 6, 15)
Case = tuple[str, str, str, int]


class World:
    """A generated data set after its writes: the relations as stored, and the engine."""

    def __init__(self, relations: list[Relation], engine: DecisionEngine, contacts: list[str], orgs: list[str]) -> None:
        self.relations = relations
        self.engine = engine
        self.contacts = contacts
        self.organizations = orgs


def _montreal(day: date, hour: int = 12, minute: int = 0, second: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute, second), MONTREAL).astimezone(UTC)


def build_world(tmp_path: Path, policy: Policy, size: int, seed: int) -> World:
    dataset = generate(size, seed=seed, today=TODAY)
    store = open_store(Settings(database_url=f"sqlite:///{tmp_path / f'oracle-{seed}.db'}"))
    try:
        report = import_data(store, dataset.data, policy.subjects, now=_montreal(TODAY))
        assert not report.refused, report.refused[:3]
        engine = DecisionEngine(policy)
        engine.load_rows(store.load_index_rows(), report.revision)  # the server's start-up path
        stored = list(store.load_relations())
    finally:
        store.close()
    assert len(stored) == dataset.relation_count

    # Writes after start-up, as commands apply them once committed: withdrawals at random
    # instants (past and future of the checks), subjects removed, subjects granted.
    rng = random.Random(seed * 7919)
    changed: dict[str, Relation] = {}
    for relation in rng.sample(stored, len(stored) // 8):
        ended = _montreal(TODAY + timedelta(days=rng.randint(-900, 300)), rng.randint(0, 23), rng.randint(0, 59))
        changed[relation.id] = replace(relation, ended_at=ended)
    for relation in rng.sample(stored, len(stored) // 10):
        current = changed.get(relation.id, relation)
        if current.subjects:
            kept = dict(rng.sample(sorted(current.subjects.items()), rng.randint(0, len(current.subjects) - 1)))
            changed[relation.id] = replace(current, subjects=kept)
        elif current.kind is RelationKind.CONTACT:
            changed[relation.id] = replace(
                current, subjects={rng.choice(SUBJECTS): rng.choice((Right.READ, Right.WRITE))}
            )
    revision = report.revision
    for relation in changed.values():
        revision += 1
        engine.apply([relation], revision)
    final = [changed.get(relation.id, relation) for relation in stored]
    return World(final, engine, dataset.contact_ids, dataset.organization_ids)


def cases_of(world: World, rng: random.Random, extra_pairs: int) -> list[Case]:
    """Every subject and right on every (contact, organization) that has a relation, plus random pairs."""
    pairs = {
        (relation.holder_id, relation.organization_id)
        for relation in world.relations
        if relation.kind is not RelationKind.ORGANIZATION
    }
    pairs.update((rng.choice(world.contacts), rng.choice(world.organizations)) for _ in range(extra_pairs))
    return [
        (contact, organization, subject, right)
        for contact, organization in sorted(pairs)
        for subject in SUBJECTS
        for right in (1, 2)
    ]


def split_oracle(policy: Policy, relations: list[Relation], at: datetime) -> dict[str, casbin.Enforcer]:
    """One plain Enforcer per organization (see the module's docstring)."""
    by_organization: dict[str, list[Relation]] = {}
    memberships: dict[str, list[Relation]] = {}
    for relation in relations:
        by_organization.setdefault(relation.organization_id, []).append(relation)
        if relation.kind is RelationKind.CONTACT:
            memberships.setdefault(relation.organization_id, []).append(relation)
    enforcers = {}
    for organization, own in by_organization.items():
        vias = {r.via_organization_id for r in own if r.kind is RelationKind.DELEGATION}
        through = [m for via in sorted(v for v in vias if v) for m in memberships.get(via, [])]
        enforcers[organization] = build_enforcer(policy, own + through, at)
    return enforcers


def instants(world: World, rng: random.Random) -> list[datetime]:
    """Random instants, plus the edges: a window's first and last second, a withdrawal's instant."""
    picked = [_montreal(TODAY), _montreal(TODAY + timedelta(days=rng.randint(-1500, 500)), rng.randint(0, 23))]
    windowed = [r for r in world.relations if r.end_date.year < 9999]
    edge = rng.choice(windowed)
    picked.append(_montreal(edge.end_date, 23, 59, 59))
    picked.append(_montreal(edge.end_date + timedelta(days=1), 0, 0, 0))
    picked.append(_montreal(rng.choice(world.relations).start_date, 0, 0, 0))
    withdrawn = [r.ended_at for r in world.relations if r.ended_at is not None]
    picked.append(rng.choice(withdrawn))  # exactly when a relation stops counting
    return picked


def disagreements(
    world: World, policy: Policy, at: datetime, cases: Iterable[Case], enforcers: dict[str, casbin.Enforcer]
) -> list[str]:
    ts = at.timestamp()
    found = []
    for contact, organization, subject, right in cases:
        fast = world.engine.check(contact, organization, subject, right, ts)
        enforcer = enforcers.get(organization)
        expected = bool(enforcer.enforce(contact, organization, subject, Right(right).code)) if enforcer else False
        if fast != expected:
            explained = world.engine.explain(contact, organization, subject, right, ts)
            found.append(
                f"{at.isoformat()} {contact} {organization} {subject} {right}: engine {fast}, casbin {expected}; {explained}"
            )
    return found


@pytest.mark.parametrize("seed", [11, 29])
def test_engine_agrees_with_pycasbin_on_generated_data(tmp_path: Path, policy: Policy, seed: int) -> None:
    world = build_world(tmp_path, policy, 220, seed)
    rng = random.Random(seed)
    cases = cases_of(world, rng, extra_pairs=30)
    allowed_seen = denied_seen = 0
    for at in instants(world, rng):
        enforcers = split_oracle(policy, world.relations, at)
        assert disagreements(world, policy, at, cases, enforcers) == []
        ts = at.timestamp()
        allowed = sum(world.engine.check(c, o, s, r, ts) for c, o, s, r in cases)
        allowed_seen += allowed
        denied_seen += len(cases) - allowed
    # The data must exercise both answers, or agreement proves little.
    assert allowed_seen > 200 and denied_seen > 200
    delegated_allowed = [
        r
        for r in world.relations
        if r.kind is RelationKind.DELEGATION
        and any(
            world.engine.check(r.holder_id, r.organization_id, s, 1, _montreal(TODAY).timestamp()) for s in SUBJECTS
        )
    ]
    assert delegated_allowed, "no delegation gives anything: the generator lost its delegations"


def test_splitting_the_oracle_by_organization_changes_no_answer(tmp_path: Path, policy: Policy) -> None:
    world = build_world(tmp_path, policy, 200, 5)
    rng = random.Random(5)
    at = _montreal(TODAY)
    whole = build_enforcer(policy, world.relations, at)
    split = split_oracle(policy, world.relations, at)
    for contact, organization, subject, right in rng.sample(cases_of(world, rng, extra_pairs=10), 300):
        code = Right(right).code
        expected = bool(whole.enforce(contact, organization, subject, code))
        assert (
            bool(split[organization].enforce(contact, organization, subject, code)) == expected
            if organization in split
            else not expected
        )


def test_fast_enforcer_oracle_agrees_single_threaded(tmp_path: Path, policy: Policy) -> None:
    """The bench compares against FastEnforcer: it must give the same decisions (one thread only)."""
    world = build_world(tmp_path, policy, 300, 3)
    at = _montreal(TODAY)
    fast = build_fast_enforcer(policy, world.relations, at)
    rng = random.Random(3)
    ts = at.timestamp()
    for contact, organization, subject, right in rng.sample(cases_of(world, rng, extra_pairs=10), 400):
        assert bool(fast.enforce(contact, organization, subject, Right(right).code)) == world.engine.check(
            contact, organization, subject, right, ts
        )


def test_concurrent_checks_give_the_single_threaded_answers(tmp_path: Path, policy: Policy) -> None:
    """pycasbin under threads gave false denies (FastEnforcer's shared filter) and
    SystemError (CPython 3.11's ast.parse, gh-106905); the engine shares no mutable
    state between checks, so eight threads must see exactly the sequential answers."""
    world = build_world(tmp_path, policy, 400, 17)
    rng = random.Random(17)
    cases = cases_of(world, rng, extra_pairs=40)
    ts = _montreal(TODAY).timestamp()
    expected = [world.engine.check(c, o, s, r, ts) for c, o, s, r in cases]
    results: dict[int, list[bool]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def run(worker: int) -> None:
        try:
            start.wait()
            for _ in range(3):
                results[worker] = [world.engine.check(c, o, s, r, ts) for c, o, s, r in cases]
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert all(results[worker] == expected for worker in range(8))


def test_checks_never_call_casbin(tmp_path: Path, policy: Policy, monkeypatch: pytest.MonkeyPatch) -> None:
    """Casbin defines the semantics and is the oracle; the hot path must never run it
    (per-call ast.parse, a rule scan, the thread traps above)."""
    world = build_world(tmp_path, policy, 200, 23)

    def forbidden(*_args: object, **_kwargs: object) -> bool:
        raise AssertionError("casbin enforce called on the check path")

    monkeypatch.setattr(casbin.core_enforcer.CoreEnforcer, "enforce", forbidden)
    monkeypatch.setattr(casbin.core_enforcer.CoreEnforcer, "enforce_ex", forbidden)
    monkeypatch.setattr(casbin.FastEnforcer, "enforce", forbidden)
    ts = _montreal(TODAY).timestamp()
    rng = random.Random(23)
    for contact, organization, subject, right in rng.sample(cases_of(world, rng, extra_pairs=10), 300):
        decision = world.engine.explain(contact, organization, subject, right, ts)
        assert decision.allowed == world.engine.check(contact, organization, subject, right, ts)


def test_start_up_from_store_rows_equals_loading_domain_relations(tmp_path: Path, policy: Policy) -> None:
    """The server's fast start-up path and `load(relations)` build the same engine."""
    dataset = generate(600, seed=41, today=TODAY)
    store = open_store(Settings(database_url=f"sqlite:///{tmp_path / 'startup.db'}"))
    try:
        import_data(store, dataset.data, policy.subjects, now=_montreal(TODAY))
        from_rows, from_relations = DecisionEngine(policy), DecisionEngine(policy)
        from_rows.load_rows(store.load_index_rows(), 1)
        relations = list(store.load_relations())
        from_relations.load(relations, 1)
    finally:
        store.close()
    assert (
        from_rows.stats()
        == from_relations.stats()
        == {
            "contact_relations": len(dataset.data["relations"]),
            "organization_relations": len(dataset.data["organization_relations"]),
            "delegations": len(dataset.data["delegations"]),
        }
    )
    world = World(relations, from_rows, dataset.contact_ids, dataset.organization_ids)
    rng = random.Random(41)
    for at in (_montreal(TODAY), _montreal(TODAY + timedelta(days=rng.randint(-900, 300)))):
        ts = at.timestamp()
        for contact, organization, subject, right in cases_of(world, rng, extra_pairs=40):
            assert from_rows.check(contact, organization, subject, right, ts) == from_relations.check(
                contact, organization, subject, right, ts
            )
            assert from_rows.explain(contact, organization, subject, right, ts) == from_relations.explain(
                contact, organization, subject, right, ts
            )
