"""One suite every store backend passes (STYLE.md habit 4): here SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest

from authz.domain.model import END_OF_TIME, Contact, Organization, OrganizationKind, Relation, RelationKind, Right, Role
from authz.errors import AlreadyExists
from authz.store import migrate
from authz.store.interface import AuditRecord, ImportBatch, LegacyAccount, LinkCodeRecord, OutboxRow
from authz.store.sql import SqlStore, make_engine

T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(database_url: str) -> Iterator[SqlStore]:
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    store = SqlStore(engine)
    with store.transaction() as tx:
        for org_id, kind in (("A", OrganizationKind.ASSOCIATION), ("E", OrganizationKind.EMPLOYER)):
            tx.add_organization(Organization(org_id, f"Org {org_id}", kind), T0)
        for contact_id in ("C1", "C2"):
            tx.add_contact(Contact(contact_id, "Prénom", "Nom", f"{contact_id}@example.org", "fr"), T0)
    yield store
    store.close()


def contact_relation(relation_id: str = "R1", **overrides: object) -> Relation:
    values: dict[str, object] = dict(
        id=relation_id,
        kind=RelationKind.CONTACT,
        organization_id="A",
        contact_id="C1",
        role=Role.MEMBRE_DU_PERSONNEL,
        start_date=date(2026, 1, 1),
        end_date=END_OF_TIME,
        subjects={"rapport_mensuel": Right.WRITE, "profil": Right.READ},
    )
    values.update(overrides)
    return Relation(**values)  # type: ignore[arg-type]


def test_migrations_are_at_head(store: SqlStore) -> None:
    assert migrate.is_up_to_date(store.engine)


def test_organizations_and_contacts_round_trip_exactly(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.add_contact(Contact("Hélène", "Hélène", "D'Amours-Côté", "h@example.org", "en", "+1 514 555-1234"), T0)
    with store.transaction() as tx:
        assert tx.get_contact("Hélène") == Contact(
            "Hélène", "Hélène", "D'Amours-Côté", "h@example.org", "en", "+1 514 555-1234"
        )
        assert tx.get_organization("E") == Organization("E", "Org E", OrganizationKind.EMPLOYER)
        assert tx.get_contact("nobody") is None and tx.get_organization("nobody") is None


def test_relations_keep_their_subjects_dates_and_history(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.add_relation(contact_relation(), T0, "C2")
        tx.add_relation(
            Relation(
                "O1",
                RelationKind.ORGANIZATION,
                "E",
                date(2026, 1, 1),
                END_OF_TIME,
                grantee_organization_id="A",
                subjects={"paiements_et_releves": Right.WRITE},
            ),
            T0,
            "C2",
        )
        tx.add_relation(
            Relation(
                "D1",
                RelationKind.DELEGATION,
                "E",
                date(2026, 1, 1),
                date(2026, 12, 31),
                contact_id="C1",
                via_organization_id="A",
                role=Role.MEMBRE_DU_PERSONNEL,
                subjects={"*": Right.WRITE},
            ),
            T0,
            "C2",
        )
    with store.transaction() as tx:
        assert tx.get_relation("R1") == contact_relation()
        assert tx.remove_subjects("R1", ["profil"], T0 + timedelta(hours=1)) == 1
        assert tx.remove_subjects("R1", ["profil"], T0 + timedelta(hours=2)) == 0
        assert tx.end_relation("D1", T0 + timedelta(hours=3))
        assert not tx.end_relation("D1", T0 + timedelta(hours=4))  # already ended: the first instant stays
    with store.transaction() as tx:
        relation = tx.get_relation("R1")
        assert relation is not None and relation.subjects == {"rapport_mensuel": Right.WRITE}
        delegation = tx.get_relation("D1")
        assert delegation is not None and delegation.ended_at == T0 + timedelta(hours=3)
        assert [r.id for r in tx.find_relations(contact_id="C1")] == ["D1", "R1"]
        assert [r.id for r in tx.find_relations(via_organization_id="A")] == ["D1"]
        assert [r.id for r in tx.find_relations(grantee_organization_id="A")] == ["O1"]
        page = tx.relations_page("A", kinds=tuple(RelationKind), contact_id=None, after=None, limit=10)
        assert [r.id for r in page] == ["D1", "O1", "R1"]
        assert [
            r.id for r in tx.relations_page("A", kinds=tuple(RelationKind), contact_id=None, after="D1", limit=1)
        ] == ["O1"]
    loaded = {relation.id: relation for relation in store.load_relations()}
    assert set(loaded) == {"D1", "O1", "R1"}
    assert loaded["O1"].subjects == {"paiements_et_releves": Right.WRITE}
    assert loaded["D1"].subjects == {"*": Right.WRITE}


def test_a_failed_transaction_leaves_nothing(store: SqlStore) -> None:
    revision = store.revision()
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.add_relation(contact_relation("R9"), T0, None)
        tx.bump_revision()
        raise RuntimeError("the command failed after writing")
    with store.transaction() as tx:
        assert tx.get_relation("R9") is None
    assert store.revision() == revision


def test_duplicate_ids_are_refused(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.add_relation(contact_relation(), T0, None)
    with pytest.raises(AlreadyExists), store.transaction() as tx:
        tx.add_relation(contact_relation(), T0, None)


def test_revisions_are_strictly_increasing_under_concurrent_writers(store: SqlStore) -> None:
    seen: list[int] = []
    lock = threading.Lock()

    def writer() -> None:
        for _ in range(10):
            with store.transaction() as tx:
                revision = tx.bump_revision()
            with lock:
                seen.append(revision)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(seen) == list(range((seen and min(seen)) or 1, ((seen and min(seen)) or 1) + 40))
    assert store.revision() == max(seen)


def test_link_codes_are_single_use_and_voidable(store: SqlStore) -> None:
    record = LinkCodeRecord("L1", "C1", "A", "lookup-1", "00" * 16, "ab" * 32, "C2", T0, T0 + timedelta(days=1))
    with store.transaction() as tx:
        tx.add_link_code(record)
        tx.add_link_code(
            LinkCodeRecord("L2", "C1", "A", "lookup-2", "00" * 16, "cd" * 32, "C2", T0, T0 + timedelta(days=1))
        )
    with store.transaction() as tx:
        assert tx.find_link_code("lookup-1") == record
        assert tx.use_link_code("L1", "acct", T0)
        assert not tx.use_link_code("L1", "acct-2", T0)
        assert tx.void_link_codes("C1", T0) == 1  # L2 only: L1 is used
        assert not tx.use_link_code("L2", "acct", T0)
        tx.add_link_attempt("acct", "C1", T0, False)
        tx.add_link_attempt("acct", None, T0 - timedelta(hours=2), False)
        tx.add_link_attempt("acct", "C1", T0, True)
        assert tx.count_failed_attempts(since=T0 - timedelta(hours=1), account_id="acct") == 1
        assert tx.count_failed_attempts(since=T0 - timedelta(hours=3), account_id="acct") == 2
        assert tx.count_failed_attempts(since=T0 - timedelta(hours=1), contact_id="C1") == 1


def test_accounts_legacy_audit_idempotency_and_outbox(store: SqlStore) -> None:
    with store.transaction() as tx:
        assert tx.link_account("acct", "C1", "link_code", T0)
        assert not tx.link_account("acct", "C1", "legacy", T0)
        tx.link_account("acct", "C2", "legacy", T0)
        assert tx.linked_contacts("acct") == ["C1", "C2"]
        tx.add_legacy_account(LegacyAccount("old", "pbkdf2_sha256$1$s$h", ("C1", "C2")))
        assert tx.use_legacy_account("old", "acct", T0)
        assert not tx.use_legacy_account("old", "acct", T0)
        legacy = tx.get_legacy_account("old")
        assert legacy is not None and legacy.contact_ids == ("C1", "C2") and legacy.used_at == T0
        tx.add_audit(
            AuditRecord(
                T0,
                "C2",
                "grant_relation",
                {"when": date(2026, 1, 1), "right": Right.WRITE},
                "A",
                "r-1",
                {"authorizes_acting": True, "changes_accurate": True},
            ),
            7,
        )
        tx.put_idempotent("r-1", "grant_relation", "f" * 64, {"relation_id": "R1", "revision": "7"}, T0)
        assert tx.get_idempotent("r-1", "grant_relation") == ("f" * 64, {"relation_id": "R1", "revision": "7"})
        assert tx.get_idempotent("r-1", "revoke_relation") is None
        tx.enqueue_mail(OutboxRow("M1", "c1@example.org", "Sujet", "Code de liaison : X"), T0)
    pending = store.pending_outbox(10)
    assert [(m.id, m.attempts) for m in pending] == [("M1", 0)]
    store.mark_outbox_failed("M1", "smtp down")
    assert store.pending_outbox(10)[0].attempts == 1
    store.mark_outbox_sent("M1", T0)
    assert store.pending_outbox(10) == []


def test_ping_and_close(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    store = SqlStore(engine)
    assert store.ping()
    store.close()


# -- issue 8: bulk import (authz import)


def test_a_batch_round_trips_exactly_and_is_seen_by_the_bulk_lookups(store: SqlStore) -> None:
    at = datetime(2026, 2, 1, 9, 30, 15, 123456, tzinfo=UTC)
    relations = [
        contact_relation("B1", start_date=date(2019, 5, 1), end_date=date(2030, 1, 31)),
        Relation(
            "B2",
            RelationKind.ORGANIZATION,
            "E",
            date(2026, 1, 1),
            END_OF_TIME,
            grantee_organization_id="B-ORG",
            role=Role.REPRESENTANT,
            subjects={"paiements_et_releves": Right.WRITE},
        ),
        Relation(
            "B3",
            RelationKind.DELEGATION,
            "E",
            date(2026, 1, 1),
            END_OF_TIME,
            contact_id="B-C",
            via_organization_id="A",
            subjects={"*": Right.WRITE},
        ),
    ]
    batch = ImportBatch(
        organizations=[Organization("B-ORG", "Béton ltée", OrganizationKind.EMPLOYER)],
        contacts=[Contact("B-C", "Éloïse", "D'Amours", "e@example.org", "en", "+1 514 555-0000")],
        relations=relations,
        legacy_accounts=[LegacyAccount("old-login", "pbkdf2_sha256$1000$s$h", ("B-C", "C1"))],
    )
    with store.transaction() as tx:
        assert tx.stored_keys("organizations", ["A", "B-ORG", "nobody"]) == {"A"}
        tx.add_batch(batch, at, "import")
        # Seen at once inside the same transaction: the next chunk of an import relies on it.
        assert tx.stored_keys("organizations", ["A", "B-ORG", "nobody"]) == {"A", "B-ORG"}
        assert tx.stored_keys("contacts", ["B-C"]) == {"B-C"}
    with store.transaction() as tx:
        assert tx.stored_keys("relations", ["B1", "B2", "B3", "R9"]) == {"B1", "B2", "B3"}
        assert tx.stored_keys("legacy_accounts", ["old-login", "other"]) == {"old-login"}
        assert tx.get_organization("B-ORG") == batch.organizations[0]
        assert tx.get_contact("B-C") == batch.contacts[0]
        assert [tx.get_relation(r.id) for r in relations] == relations
        legacy = tx.get_legacy_account("old-login")
        assert legacy == LegacyAccount("old-login", "pbkdf2_sha256$1000$s$h", ("B-C", "C1"))
        assert tx.stored_as_added("organizations", ["B-ORG", "nobody"]) == {"B-ORG": batch.organizations[0]}
        assert tx.stored_as_added("contacts", ["B-C"]) == {"B-C": batch.contacts[0]}
        assert tx.stored_as_added("relations", ["B1", "B2", "B3"]) == {r.id: r for r in relations}
        assert tx.stored_as_added("legacy_accounts", ["old-login"]) == {"old-login": legacy}
    assert {r.id: r for r in store.load_relations() if r.id.startswith("B")} == {r.id: r for r in relations}


def test_stored_as_added_ignores_what_happened_to_a_relation_since(store: SqlStore) -> None:
    """A re-import compares its rows with what was added, not with later grants, removals or ends."""
    first = contact_relation("B1")
    with store.transaction() as tx:
        tx.add_batch(ImportBatch(relations=[first]), T0, "import")
    with store.transaction() as tx:
        tx.add_subjects("B1", {"profil": Right.WRITE, "scrutin_syndical": Right.READ}, T0 + timedelta(days=1))
        tx.remove_subjects("B1", ["rapport_mensuel"], T0 + timedelta(days=2))
        tx.end_relation("B1", T0 + timedelta(days=3))
    with store.transaction() as tx:
        assert tx.get_relation("B1") != first
        assert tx.stored_as_added("relations", ["B1"]) == {"B1": first}


def test_a_batch_that_breaks_a_constraint_leaves_nothing(store: SqlStore) -> None:
    with pytest.raises(AlreadyExists), store.transaction() as tx:
        tx.add_batch(ImportBatch(organizations=[Organization("B-ORG", "Org", OrganizationKind.LOCAL)]), T0, "import")
        tx.add_batch(ImportBatch(contacts=[Contact("C1", "Déjà", "Là", "", "fr")]), T0, "import")
    with store.transaction() as tx:
        assert tx.stored_keys("organizations", ["B-ORG"]) == set()


def test_bulk_lookups_take_more_keys_than_one_query_holds(store: SqlStore) -> None:
    contacts = [Contact(f"K{i}", "Prénom", "Nom", "", "fr") for i in range(2_500)]
    with store.transaction() as tx:
        tx.add_batch(ImportBatch(contacts=contacts), T0, "import")
        wanted = [f"K{i}" for i in range(0, 5_000, 2)]
        assert tx.stored_keys("contacts", wanted) == {f"K{i}" for i in range(0, 2_500, 2)}
        assert len(tx.stored_as_added("contacts", wanted)) == 1_250


def test_a_bulk_write_leaves_its_pooled_connection_as_it_found_it(store: SqlStore) -> None:
    if store.engine.dialect.name != "sqlite":
        pytest.skip("only SQLite's page cache is widened for a bulk write")
    with store.transaction() as tx:
        connection = tx.c.connection.dbapi_connection
        before = tx.c.exec_driver_sql("PRAGMA cache_size").scalar_one()
        tx.add_batch(ImportBatch(contacts=[Contact("K1", "Prénom", "Nom", "", "fr")]), T0, "import")
        assert tx.c.exec_driver_sql("PRAGMA cache_size").scalar_one() != before
    with store.transaction() as tx:
        assert tx.c.connection.dbapi_connection is connection  # the same pooled connection, back
        assert tx.c.exec_driver_sql("PRAGMA cache_size").scalar_one() == before
