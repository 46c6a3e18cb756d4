"""One suite every store backend passes, method by method of the store's protocols: here SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from authz.domain.model import END_OF_TIME, Contact, Organization, OrganizationKind, Relation, RelationKind, Right, Role
from authz.errors import AlreadyExists
from authz.store import migrate
from authz.store.changes import Change
from authz.store.interface import (
    AuditRecord,
    ImportBatch,
    LegacyAccount,
    LinkCodeRecord,
    MigrationIssueRecord,
    OutboxRow,
)
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
    pending = store.pending_outbox(10, now=T0)
    assert [(m.id, m.attempts) for m in pending] == [("M1", 0)]
    store.mark_outbox_failed("M1", "smtp down")
    assert store.pending_outbox(10, now=T0)[0].attempts == 1
    # Backoff: not due again before its retry time.
    store.mark_outbox_failed("M1", "smtp down", T0 + timedelta(minutes=1))
    assert store.pending_outbox(10, now=T0) == []
    assert [m.attempts for m in store.pending_outbox(10, now=T0 + timedelta(minutes=1))] == [2]
    # Given up on a day after it was queued (other mail), or once its own expiry passed (a link code's).
    assert store.pending_outbox(10, now=T0 + timedelta(days=1, seconds=1)) == []
    with store.transaction() as tx:
        tx.enqueue_mail(OutboxRow("M2", "c2@example.org", "Sujet", "Code", expires_at=T0 + timedelta(hours=2)), T0)
    later = T0 + timedelta(hours=3)
    assert [m.id for m in store.pending_outbox(10, now=later)] == ["M1"]
    assert [m.id for m in store.pending_outbox(10, now=later, give_up_seconds=3600)] == []
    store.mark_outbox_sent("M1", T0)
    store.mark_outbox_sent("M2", T0)
    assert store.pending_outbox(10, now=T0) == []


def test_ping_and_close(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    store = SqlStore(engine)
    assert store.ping()
    store.close()


# -- the guide's other screens


def test_contacts_are_updated_and_searched_by_their_key(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.add_relation(contact_relation("R1", contact_id="C1"), T0, None)
        tx.add_relation(contact_relation("R2", contact_id="C2"), T0, None)
        tx.update_contact(Contact("C2", "Hélène", "Côté", "Helene@Example.org", "en", "514 555-0000", "cellulaire"))
    with store.transaction() as tx:
        assert tx.get_contact("C2") == Contact(
            "C2", "Hélène", "Côté", "Helene@Example.org", "en", "514 555-0000", "cellulaire"
        )

        def names(key: str) -> list[str]:
            kinds = (RelationKind.CONTACT,)
            return [
                r.id for r in tx.relations_page("A", kinds=kinds, contact_id=None, after=None, limit=10, name_key=key)
            ]

        assert names("helene cote") == ["R2"]
        assert names("nom") == ["R1"]
        assert names("_") == [] and names("%") == []  # SQL wildcards are plain characters
        assert names("") == ["R1", "R2"]
        assert [c.id for c in tx.organization_contacts_with_email("A", "helene@example.ORG")] == ["C2"]
        assert tx.organization_contacts_with_email("E", "helene@example.org") == []


def test_relation_end_dates_change(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.add_relation(contact_relation(), T0, None)
        tx.set_relation_end("R1", date(2030, 6, 30))
    with store.transaction() as tx:
        relation = tx.get_relation("R1")
        assert relation is not None and relation.end_date == date(2030, 6, 30)


def test_audit_pages_newest_first_per_organization(store: SqlStore) -> None:
    with store.transaction() as tx:
        for index in range(5):
            record = AuditRecord(
                T0 + timedelta(minutes=index),
                "C1",
                "grant_relation",
                {"n": index},
                organization_id="A" if index != 2 else "E",
                attestation={"changes_accurate": True},
                caller="portal",
            )
            tx.add_audit(record, tx.bump_revision())
    with store.transaction() as tx:
        first = tx.audit_page("A", before=None, limit=2)
        assert [e.record.changes["n"] for e in first] == [4, 3]
        rest = tx.audit_page("A", before=first[-1].id, limit=10)
        assert [e.record.changes["n"] for e in rest] == [1, 0]
        assert rest[0].record.attestation == {"changes_accurate": True} and rest[0].record.caller == "portal"
        assert rest[0].record.at == T0 + timedelta(minutes=1) and rest[0].revision < first[0].revision


def test_migration_issues_are_kept_once_and_resolved(store: SqlStore) -> None:
    issue = MigrationIssueRecord(
        section="relations",
        row_index=3,
        reason="bad start_date",
        reported_at=T0,
        organization_id="A",
        row_id="R-OLD",
        row={"id": "R-OLD", "start_date": "2019-13-01"},
        match_key="contact\x1fA\x1fC1\x1fdirigeant",
    )
    with store.transaction() as tx:
        assert tx.add_migration_issue(issue)
        assert not tx.add_migration_issue(issue)  # the same refusal, reported again
        assert tx.add_migration_issue(MigrationIssueRecord("contacts", 0, "bad language", T0))  # nobody's
        assert not tx.add_migration_issue(MigrationIssueRecord("contacts", 0, "bad language", T0))
        assert tx.add_migration_issue(MigrationIssueRecord("delegations", 1, "unknown subject", T0, "A"))
    with store.transaction() as tx:
        open_issues = tx.migration_issues_page("A", include_resolved=False, after=None, limit=10)
        assert [(i.section, i.row) for i in open_issues] == [
            ("relations", {"id": "R-OLD", "start_date": "2019-13-01"}),
            ("delegations", None),
        ]
        first = open_issues[0]
        assert (
            tx.migration_issues_page("A", include_resolved=False, after=first.id, limit=10)[0].section == "delegations"
        )
        assert tx.resolve_migration_issues_matching("A", "contact\x1fA\x1fC1\x1fdirigeant", T0, "C9") == [first.id]
        assert tx.resolve_migration_issues_matching("A", "contact\x1fA\x1fC1\x1fdirigeant", T0, "C9") == []
        assert tx.resolve_migration_issue(first.id, "A", T0, "C1", "validated") is None  # resolved already
        resolved = tx.resolve_migration_issue(open_issues[1].id, "A", T0, "C1", "validated")
        assert resolved is not None and (resolved.resolution, resolved.resolved_by) == ("validated", "C1")
        assert tx.resolve_migration_issue(open_issues[1].id, "E", T0, "C1", "validated") is None
    with store.transaction() as tx:
        assert tx.migration_issues_page("A", include_resolved=False, after=None, limit=10) == []
        everything = tx.migration_issues_page("A", include_resolved=True, after=None, limit=10)
        assert [(i.resolution, i.resolved_by, i.resolved_at) for i in everything] == [
            ("re-established", "C9", T0),
            ("validated", "C1", T0),
        ]


def test_a_legacy_login_is_used_once_per_contact(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.add_legacy_account(LegacyAccount("shared", "pbkdf2_sha256$1$s$h", ("C1", "C2")))
        assert tx.use_legacy_contact("shared", "C1", "acct-1", T0)
        assert not tx.use_legacy_contact("shared", "C1", "acct-2", T0)
    with store.transaction() as tx:
        account = tx.get_legacy_account("shared")
        assert account is not None and account.used_contact_ids == ("C1",)
        assert tx.use_legacy_contact("shared", "C2", "acct-2", T0)
        assert not tx.use_legacy_contact("shared", "C3", "acct-2", T0)


def test_migration_0004_keeps_what_0002_held(tmp_path: Path) -> None:
    """Contacts get their search key, and a legacy login used before stays used for each of its contacts."""
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    migrate.upgrade(engine, "0002")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO contacts (id, first_name, last_name, email, language, phone, created_at) "
                "VALUES ('C1', 'Hélène', 'Côté', '', 'fr', '', '2026-01-01 00:00:00')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO legacy_accounts (username, password_hash, used_at, used_by_account) "
                "VALUES ('old', 'h', '2026-01-02 00:00:00', 'acct-1')"
            )
        )
        connection.execute(text("INSERT INTO legacy_account_contacts (username, contact_id) VALUES ('old', 'C1')"))
    migrate.upgrade(engine)
    store = SqlStore(engine)
    with store.transaction() as tx:
        kinds = (RelationKind.CONTACT,)
        tx.add_organization(Organization("A", "A", OrganizationKind.ASSOCIATION), T0)
        tx.add_relation(contact_relation("R1", contact_id="C1"), T0, None)
        assert [
            r.id for r in tx.relations_page("A", kinds=kinds, contact_id=None, after=None, limit=5, name_key="helene")
        ]
        account = tx.get_legacy_account("old")
        assert account is not None and account.used_contact_ids == ("C1",)
    store.close()


# -- secrets every server of a deployment shares; outbox bodies sealed at rest


def test_a_server_secret_is_created_once_and_shared_by_every_store_on_the_database(
    store: SqlStore, database_url: str
) -> None:
    others = [SqlStore(make_engine(database_url)) for _ in range(4)]
    try:
        found: list[bytes] = []
        threads = [threading.Thread(target=lambda s=s: found.append(s.server_secret("page_token"))) for s in others]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        mine = store.server_secret("page_token")
        assert set(found) == {mine} and len(mine) >= 43
        assert store.server_secret("another") != mine
    finally:
        for other in others:
            other.close()


def test_outbox_bodies_are_sealed_in_the_database_and_opened_for_the_relay(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.enqueue_mail(OutboxRow("M2", "c1@example.org", "Sujet", "Code de liaison : ABCD-EFGH"), T0)
    with store.engine.connect() as connection:
        stored = connection.exec_driver_sql("SELECT body FROM outbox WHERE id = 'M2'").scalar_one()
    assert stored.startswith("enc1:") and "ABCD" not in stored and "liaison" not in stored
    assert [m.body for m in store.pending_outbox(10, now=T0) if m.id == "M2"] == ["Code de liaison : ABCD-EFGH"]


# -- replicas
def _logged_write(store: SqlStore, relation: Relation, at: datetime = T0) -> int:
    with store.transaction() as tx:
        tx.lock_revision()
        tx.add_relation(relation, at, None)
        revision = tx.bump_revision()
        tx.append_change(Change(revision, at, "grant_relation", (relation,)))
    return revision


def test_the_change_log_is_dense_in_commit_order_and_round_trips_relations(store: SqlStore) -> None:
    start = store.revision()
    relations = [contact_relation(f"R{n}", ended_at=T0 if n == 2 else None) for n in range(1, 4)]
    revisions = [_logged_write(store, relation) for relation in relations]
    assert revisions == [start + 1, start + 2, start + 3]
    page = store.changes_after(start, 100)
    assert not page.expired and page.newest == start + 3
    assert [c.revision for c in page.changes] == revisions
    assert [c.relations for c in page.changes] == [(r,) for r in relations]
    assert page.changes[0].committed_at == T0 and page.changes[0].operation == "grant_relation"
    assert [c.revision for c in store.changes_after(start + 1, 1).changes] == [start + 2]  # paged
    assert store.changes_after(start + 3, 100).changes == ()


def test_a_cursor_before_the_log_is_expired(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.bump_revision()  # a write from before the log existed: not in it
    cursor = store.revision() - 1
    _logged_write(store, contact_relation())
    assert store.changes_after(cursor, 100).expired
    assert not store.changes_after(cursor + 1, 100).expired
    with store.transaction() as tx:
        assert tx.prune_changes(T0 + timedelta(days=2)) == 1
    assert store.changes_after(cursor + 1, 100).expired  # pruned by retention
    assert not store.changes_after(store.revision(), 100).expired  # at the newest: nothing missing


def test_a_snapshot_reads_the_revision_and_the_relations_at_one_moment(store: SqlStore) -> None:
    _logged_write(store, contact_relation("R1"))
    with store.snapshot() as snapshot:
        _logged_write(store, contact_relation("R2"))  # committed while the snapshot is open
        ids = sorted(row[1] for row in snapshot.rows)
        assert snapshot.store_id == store.store_id() and len(snapshot.store_id) == 16
    assert ids == ["R1"]
    assert snapshot.revision == store.revision() - 1


# -- bulk import (authz import)


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


def test_open_relations_of_reads_the_pairs_asked_for_and_only_those(store: SqlStore) -> None:
    """What an import checks a chunk against: by (holder, organization), removed ones left out."""
    relations = [
        contact_relation("P1", contact_id="C1", organization_id="A"),
        contact_relation("P2", contact_id="C1", organization_id="E", role=Role.MEMBRE_DU_PERSONNEL),
        Relation(
            "P3",
            RelationKind.DELEGATION,
            "E",
            date(2026, 1, 1),
            END_OF_TIME,
            contact_id="C1",
            via_organization_id="A",
            subjects={"profil": Right.READ},
        ),
        Relation(
            "P4",
            RelationKind.ORGANIZATION,
            "E",
            date(2026, 1, 1),
            END_OF_TIME,
            grantee_organization_id="A",
            role=Role.REPRESENTANT,
            subjects={"profil": Right.WRITE, "rapport_mensuel": Right.READ},
        ),
        contact_relation("P5", contact_id="C1", organization_id="A", role=Role.REPRESENTANT),
    ]
    with store.transaction() as tx:
        tx.add_batch(ImportBatch(relations=relations), T0, "import")
        tx.end_relation("P5", T0 + timedelta(days=1))
    with store.transaction() as tx:
        later = T0 + timedelta(days=2)
        found = tx.open_relations_of(later, [("C1", "A"), ("C1", "nowhere"), ("nobody", "A")])
        assert found == [relations[0]]  # P5 was removed; the organization relation P4 is no contact's
        assert {r.id for r in tx.open_relations_of(later, [("C1", "E")])} == {"P2", "P3"}
        assert tx.open_relations_of(later, [("A", "E")], organizations=True) == [relations[3]]
        assert tx.open_relations_of(later, [("C1", "E")], organizations=True) == []
        assert tx.open_relations_of(later, []) == []
        # Before P5's removal it is there.
        assert {r.id for r in tx.open_relations_of(T0, [("C1", "A")])} == {"P1", "P5"}


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


def _index_names(store: SqlStore, table: str) -> set[str]:
    with store.engine.connect() as connection:
        return {
            row[0]
            for row in connection.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", (table,)
            )
        }


def test_a_bulk_write_into_empty_tables_builds_their_indexes_before_its_commit_or_never_loses_them(
    store: SqlStore,
) -> None:
    if store.engine.dialect.name != "sqlite":
        pytest.skip("indexes are put off on SQLite only")
    before = _index_names(store, "relations")
    assert {"ix_relations_org_contact", "ix_relations_via", "ix_relations_contact"} <= before
    relations = [contact_relation(f"B{i}", contact_id="C1" if i % 2 else "C2") for i in range(4)]
    with pytest.raises(AlreadyExists), store.transaction() as tx:
        tx.add_batch(ImportBatch(relations=relations[:2]), T0, "import")
        assert "ix_relations_org_contact" not in {
            row[0] for row in tx.c.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
        tx.add_batch(ImportBatch(relations=relations[:1]), T0, "import")  # the same key again: the whole import fails
    assert _index_names(store, "relations") == before
    with store.transaction() as tx:
        tx.add_batch(ImportBatch(relations=relations), T0, "import")
    assert _index_names(store, "relations") == before
    with store.engine.connect() as connection:
        plan = " ".join(
            str(row[-1])
            for row in connection.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT id FROM relations WHERE organization_id = 'A' AND contact_id = 'C1'"
            )
        )
        assert "ix_relations_org_contact" in plan
        assert connection.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok"


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


# -- what the follower, Watch, the policy reload and tracing read through the store


def test_a_change_reader_reads_what_changes_after_reads_and_reconnects_after_close(store: SqlStore) -> None:
    start = store.revision()
    revisions = [_logged_write(store, contact_relation(f"R{n}")) for n in range(1, 4)]
    reader = store.change_reader()
    try:
        assert reader.read(start, 100) == store.changes_after(start, 100)
        assert [c.revision for c in reader.read(start, 2).changes] == revisions[:2]  # paged, in order
        reader.close()
        assert [c.revision for c in reader.read(revisions[1], 100).changes] == revisions[2:]  # opened again
        assert reader.read(revisions[-1], 100).changes == ()
    finally:
        reader.close()


def test_change_notices_announce_each_committed_revision_where_the_backend_has_them(store: SqlStore) -> None:
    notices = store.change_notices()
    if store.engine.dialect.name == "sqlite":
        assert notices is None  # followers poll alone
        return
    assert notices is not None
    with notices as listener:
        revision = _logged_write(store, contact_relation())
        heard: list[int | None] = []
        deadline = time.monotonic() + 5
        while revision not in heard and time.monotonic() < deadline:
            heard.extend(listener.heard(0.5))
    assert heard == [revision]  # once, at commit
    assert store.change_notices() is not notices  # a new listener each time, for a reconnection


def test_live_grants_count_grants_in_force_per_subject(store: SqlStore) -> None:
    with store.transaction() as tx:
        tx.add_relation(contact_relation("R1"), T0, None)  # rapport_mensuel, profil
        tx.add_relation(contact_relation("R2", contact_id="C2", subjects={"profil": Right.WRITE}), T0, None)
        tx.add_relation(contact_relation("R3", subjects={"cotisations": Right.READ}), T0, None)
        tx.end_relation("R3", T0)  # ended: its grants are no longer in force
        tx.remove_subjects("R1", ["rapport_mensuel"], T0 + timedelta(hours=1))
    assert store.live_grants() == {"profil": 2}
    with store.transaction() as tx:
        tx.add_subjects("R1", {"rapport_mensuel": Right.READ}, T0 + timedelta(hours=2))
    assert store.live_grants() == {"profil": 2, "rapport_mensuel": 1}
    assert store.live_grants(["rapport_mensuel", "cotisations"]) == {"rapport_mensuel": 1}
    assert store.live_grants(excluding=["profil"]) == {"rapport_mensuel": 1}
    assert store.live_grants([]) == {}


def test_observed_statements_begin_and_end_once_each_and_name_a_failure(store: SqlStore) -> None:
    begun: list[tuple[str, str]] = []
    ended: list[tuple[int, str | None]] = []

    def begin(system: str, _database: str, statement: str) -> object | None:
        begun.append((system, statement))
        return len(begun) if "organizations" in statement else None  # only some are of interest

    store.observe_statements(begin, lambda token, error: ended.append((token, error)))  # type: ignore[arg-type]
    with store.transaction() as tx:
        assert tx.get_organization("A") is not None
    assert begun and {system for system, _ in begun} == {store.engine.dialect.name}
    assert len(ended) == 1 and ended[0][1] is None
    with pytest.raises(AlreadyExists), store.transaction() as tx:
        tx.add_organization(Organization("A", "Again", OrganizationKind.ASSOCIATION), T0)
    assert len(ended) == 2 and ended[1][1] in {"IntegrityError", "UniqueViolation"}  # the driver's name for it
