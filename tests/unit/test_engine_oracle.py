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
import shutil
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from pathlib import Path

import casbin
import pytest

from authz.bench.data import SUBJECTS, generate
from authz.bench.oracles import build_fast_enforcer
from authz.commands.check import CheckAccess, CheckRequest
from authz.commands.import_data import import_data
from authz.config import Settings
from authz.domain.dates import MONTREAL, in_force
from authz.domain.model import WILDCARD_SUBJECT, Relation, RelationKind, Right, Role
from authz.engine import index as index_module
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
    # Rows from before rule 2 forbade it (the import now refuses them): `relations` carried by
    # organization-to-organization authorizations and delegations, which must never give management.
    between: list[Relation] = []
    for kind in (RelationKind.ORGANIZATION, RelationKind.DELEGATION):
        of_kind = [r for r in stored if r.kind is kind]
        between += rng.sample(of_kind, min(len(of_kind), 3))
    for relation in between:
        current = changed.get(relation.id, relation)
        changed[relation.id] = replace(current, subjects={**current.subjects, "relations": Right.WRITE})
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


# -- lookups and the reference rule ------------------------------------------------


def _paged(find: Callable[..., tuple[list[str], bool]], rng: random.Random) -> list[str]:
    """Every page of a lookup, at a random page size, following the last id as a token does."""
    found: list[str] = []
    size = rng.randint(1, 6)
    while True:
        page, more = find(after=found[-1] if found else "", limit=size)
        assert len(page) <= size and (not more or len(page) == size)
        found.extend(page)
        if not more:
            return found


def _new_relations(world: World, rng: random.Random, count: int) -> list[Relation]:
    """Relations on pairs the engine has never seen: the reverse indexes must learn them through `apply`."""
    pairs = {(r.holder_id, r.organization_id) for r in world.relations if r.kind is not RelationKind.ORGANIZATION}
    authorizations = [r for r in world.relations if r.kind is RelationKind.ORGANIZATION]
    members = [r for r in world.relations if r.kind is RelationKind.CONTACT]
    made: list[Relation] = []
    while len(made) < count:
        start = TODAY + timedelta(days=rng.randint(-400, 60))
        end = start + timedelta(days=rng.choice((30, 400, 4000)))
        subjects = {rng.choice(SUBJECTS): rng.choice((Right.READ, Right.WRITE))}
        if rng.random() < 0.5:
            contact, organization = rng.choice(world.contacts), rng.choice(world.organizations)
            relation = Relation(
                f"N{len(made)}", RelationKind.CONTACT, organization, start, end, contact_id=contact,
                role=rng.choice(list(Role)), subjects=subjects,
            )  # fmt: skip
        else:  # a delegation from a member of an organization another one authorized
            grant = rng.choice(authorizations)
            member = rng.choice([m for m in members if m.organization_id == grant.holder_id] or members)
            contact, organization = member.holder_id, grant.organization_id
            relation = Relation(
                f"N{len(made)}", RelationKind.DELEGATION, organization, start, end, contact_id=contact,
                via_organization_id=member.organization_id, subjects=rng.choice(({}, {WILDCARD_SUBJECT: Right.WRITE}, subjects)),
            )  # fmt: skip
        if (contact, organization) not in pairs:
            pairs.add((contact, organization))
            made.append(relation)
    return made


def _assert_lookups_equal_checks(world: World, at: datetime, rng: random.Random) -> int:
    engine = world.engine
    ts = at.timestamp()
    allowed_count = 0
    for subject in SUBJECTS:
        for right in (1, 2):
            allowed = {
                (contact, organization)
                for contact in world.contacts
                for organization in world.organizations
                if engine.check(contact, organization, subject, right, ts)
            }
            allowed_count += len(allowed)
            for organization in world.organizations:
                expected = sorted(c for c, o in allowed if o == organization)
                found = _paged(partial(engine.lookup_principals, organization, subject, right, ts), rng)
                assert found == expected, (at.isoformat(), organization, subject, right)
            for contact in world.contacts:
                expected = sorted(o for c, o in allowed if c == contact)
                found = _paged(partial(engine.lookup_organizations, contact, subject, right, ts), rng)
                assert found == expected, (at.isoformat(), contact, subject, right)
    return allowed_count


@pytest.mark.parametrize(
    ("seed", "scan_limit"),
    [(11, None), (29, None), (11, 0), (29, 3)],
    ids=["11-scan", "29-scan", "11-reasons", "29-reasons-when-grown"],
)
def test_lookups_equal_the_sets_check_allows(
    tmp_path: Path, policy: Policy, seed: int, scan_limit: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For every organization, contact, subject (`relations` included), right and sampled instant:
    LookupPrincipals is the set of contacts `check` allows, LookupOrganizations the set of
    organizations, over data with delegations, organization authorizations, ended, future and
    removed relations; then again after relations on new pairs are applied, and roles and
    subjects of existing relations changed. With `scan_limit` 0 every organization and contact
    answers from its reason index (candidates filed by what can give the right); with 3 most
    do, some only once `apply` has grown them past it."""
    if scan_limit is not None:
        monkeypatch.setattr(index_module, "SCAN_LIMIT", scan_limit)
    world = build_world(tmp_path, policy, 220, seed)
    rng = random.Random(seed + 1000)
    # The data reaches the cases that matter, `relations` through an organization included.
    kinds = {r.kind for r in world.relations}
    assert kinds == set(RelationKind)
    assert any(r.ended_at is not None for r in world.relations)
    assert any(r.kind is RelationKind.ORGANIZATION and "relations" in r.subjects for r in world.relations)
    assert any(r.kind is RelationKind.DELEGATION and WILDCARD_SUBJECT in r.subjects for r in world.relations)
    moments = instants(world, rng)
    assert sum(_assert_lookups_equal_checks(world, at, rng) for at in moments) > 300
    revision = world.engine.revision
    for relation in _new_relations(world, rng, 40):
        revision += 1
        world.engine.apply([relation], revision)
        world.relations.append(relation)
    for at in moments[:3]:
        _assert_lookups_equal_checks(world, at, rng)
    # Existing relations given another role or other subjects: filed under their new reasons.
    for place, relation in enumerate(world.relations):
        if relation.kind is RelationKind.CONTACT and rng.random() < 0.15:
            changed = replace(
                relation,
                role=rng.choice(list(Role)),
                subjects={rng.choice(SUBJECTS): rng.choice((Right.READ, Right.WRITE))},
            )
            revision += 1
            world.engine.apply([changed], revision)
            world.relations[place] = changed
    for at in moments[:2]:
        _assert_lookups_equal_checks(world, at, rng)


def test_lookup_principals_equals_pycasbin_implicit_users(tmp_path: Path, policy: Policy) -> None:
    """LookupPrincipals against pycasbin's own "who can" (`get_implicit_users_for_permission`,
    which enforces the request for every rule subject), on the split oracle."""
    world = build_world(tmp_path, policy, 220, 13)
    at = _montreal(TODAY)
    enforcers = split_oracle(policy, world.relations, at)
    contacts = set(world.contacts)
    nonempty = 0
    for organization in world.organizations:
        for subject in SUBJECTS:
            for right in (1, 2):
                found, more = world.engine.lookup_principals(organization, subject, right, at.timestamp(), limit=1000)
                enforcer = enforcers.get(organization)
                users = (
                    enforcer.get_implicit_users_for_permission(organization, subject, Right(right).code)
                    if enforcer
                    else []
                )
                # Its answer also names grantee organizations (rule subjects too): the contacts are compared.
                assert (found, more) == (sorted(u for u in users if u in contacts), False), (organization, subject)
                nonempty += bool(found)
    assert nonempty > 50


@pytest.mark.parametrize("scan_limit", [None, 0])
def test_relations_through_an_organization_agree_in_check_and_lookups(policy: Policy, scan_limit: int | None) -> None:
    """Whatever the rule for `relations` held through another organization (an employer's
    authorization, a delegation of all it holds), both lookups say what `check` says."""
    engine = DecisionEngine(policy, scan_limit=scan_limit)
    start, end = date(2020, 1, 1), date(9999, 12, 31)
    engine.load(
        [
            Relation("M", RelationKind.CONTACT, "ASSOC", start, end, contact_id="C1", role=Role.MEMBRE_DU_PERSONNEL),
            Relation(
                "A",
                RelationKind.ORGANIZATION,
                "EMP",
                start,
                end,
                grantee_organization_id="ASSOC",
                subjects={"relations": Right.WRITE, "profil": Right.WRITE},
            ),
            Relation(
                "D",
                RelationKind.DELEGATION,
                "EMP",
                start,
                end,
                contact_id="C1",
                via_organization_id="ASSOC",
                subjects={WILDCARD_SUBJECT: Right.WRITE},  # all the association holds there
            ),
            Relation("B", RelationKind.CONTACT, "EMP", start, end, contact_id="C2", role=Role.DIRIGEANT),
        ],
        1,
    )
    ts = _montreal(TODAY).timestamp()
    for subject in ("relations", "profil"):
        for right in (1, 2):
            expected = [c for c in ("C1", "C2") if engine.check(c, "EMP", subject, right, ts)]
            assert engine.lookup_principals("EMP", subject, right, ts, limit=10) == (expected, False)
            for contact in ("C1", "C2"):
                orgs = [o for o in ("ASSOC", "EMP") if engine.check(contact, o, subject, right, ts)]
                assert engine.lookup_organizations(contact, subject, right, ts, limit=10) == (orgs, False)
    assert engine.lookup_principals("EMP", "profil", 2, ts, limit=10) == (["C1", "C2"], False)


@pytest.mark.parametrize("seed", [11, 29])
def test_check_explain_and_effective_grants_follow_the_reference_rule(
    tmp_path: Path, policy: Policy, seed: int
) -> None:
    """`check` is the optimized form of `level` (the plain reference evaluation); `explain`
    and `effective_grants` are derived from it and must say the same."""
    world = build_world(tmp_path, policy, 220, seed)
    rng = random.Random(seed)
    cases = cases_of(world, rng, extra_pairs=30)
    engine = world.engine
    for at in instants(world, rng)[:3]:
        ts = at.timestamp()
        for contact, organization, subject, right in cases:
            fast = engine.check(contact, organization, subject, right, ts)
            assert fast == (engine.level(contact, organization, subject, ts) >= right)
            assert engine.explain(contact, organization, subject, right, ts).allowed == fast
        for relation in world.relations:
            if relation.kind is RelationKind.ORGANIZATION or not in_force(
                relation.start_date, relation.end_date, relation.ended_at, at
            ):
                continue
            grants = engine.effective_grants(relation, at)
            for subject in SUBJECTS:
                # What the relation gives never exceeds the contact's level, and reaches it when it is the only one.
                level = engine.level(relation.holder_id, relation.organization_id, subject, ts)
                assert int(grants.get(subject, 0)) <= level


def test_a_check_never_pairs_one_policy_s_defaults_with_another_s_hash(tmp_path: Path, policy: Policy) -> None:
    """Policies swapped in a loop while checks run: every answer's `allowed` is what the
    policy whose hash it reports decides (personne_responsable: read on `profil` in one,
    write in the other)."""
    folder = tmp_path / "policy-b"
    shutil.copytree(policy.directory, folder)
    csv = folder / "policy.csv"
    csv.write_text(
        csv.read_text().replace("g, personne_responsable, profil, read", "g, personne_responsable, profil, write")
    )
    other = Policy.load(folder)
    assert other.content_hash != policy.content_hash
    engine = DecisionEngine(policy)
    start, end = date(2020, 1, 1), date(9999, 12, 31)
    engine.load(
        [Relation("R", RelationKind.CONTACT, "ORG", start, end, contact_id="C", role=Role.PERSONNE_RESPONSABLE)], 1
    )
    command = CheckAccess(engine)
    ts = _montreal(TODAY).timestamp()
    stop = threading.Event()
    wrong: list[tuple[bool, str]] = []

    def swap() -> None:
        while not stop.is_set():
            engine.set_policy(other)
            engine.set_policy(policy)

    def check() -> None:
        for i in range(20_000):
            result = command.execute(CheckRequest("C", "ORG", "profil", 2, ts, explain=i % 10 == 0))
            if result.allowed != (result.policy_hash == other.content_hash):
                wrong.append((result.allowed, result.policy_hash))

    swapper = threading.Thread(target=swap)
    checkers = [threading.Thread(target=check) for _ in range(2)]
    swapper.start()
    for thread in checkers:
        thread.start()
    for thread in checkers:
        thread.join(timeout=120)
    stop.set()
    swapper.join(timeout=10)
    assert wrong == []
