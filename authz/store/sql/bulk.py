"""Bulk import: many rows at once, the fastest way each backend has."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from contextlib import suppress
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    select,
)
from sqlalchemy.exc import DBAPIError

from authz.domain.model import (
    Contact,
    Organization,
    OrganizationKind,
    Relation,
    RelationKind,
    Right,
    Role,
)
from authz.store import tables as t
from authz.store.interface import (
    ImportBatch,
    ImportKind,
    LegacyAccount,
)
from authz.store.sql.rows import _RELATION_COLUMNS, _contact_key, _OnConnection, _relation, _with_subjects

_IMPORT_KEYS = {
    "organizations": t.organizations.c.id,
    "contacts": t.contacts.c.id,
    "relations": t.relations.c.id,
    "legacy_accounts": t.legacy_accounts.c.username,
}


_RELATION_INSERT = (
    "id",
    "kind",
    "organization_id",
    "contact_id",
    "grantee_organization_id",
    "via_organization_id",
    "role",
    "start_date",
    "end_date",
    "ended_at",
    "created_at",
    "created_by",
)


_ENUM_VALUES: tuple[dict[RelationKind, str], dict[Role | None, str | None]] = (
    {kind: kind.value for kind in RelationKind},
    {None: None, **{role: role.value for role in Role}},
)


_RIGHT_CODES = {right: right.code for right in Right}


_BULK_CACHE_KIB = 128 * 1024


# Indexes no query of an import reads while it runs, by table: when their table starts empty
# (a first migration), SQLite builds them once at the end, one sort each, instead of taking a
# million insertions at random places. Not on PostgreSQL, where dropping one would lock its
# table against every other write for the whole import.
_DEFERRABLE = {
    "ix_relations_org_contact": "relations",
    "ix_relations_via": "relations",
    "ix_contacts_email": "contacts",
}

_IN_CHUNK = 1000  # keys per IN (...): well under SQLite's and PostgreSQL's limits on parameters


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class BulkImportSql(_OnConnection):
    """`BulkImport` on the unit of work's connection."""

    _dates: dict[date, Any]
    _cache_size: int | None
    _deferred_indexes: list[str]  # CREATE INDEX statements to run before the commit

    def build_deferred_indexes(self) -> None:
        """Build the indexes a bulk write put off; the store calls it before every commit."""
        while self._deferred_indexes:
            self.c.exec_driver_sql(self._deferred_indexes.pop())

    def _defer_indexes(self) -> None:
        """Drop the deferrable indexes of empty tables, in this transaction: a rollback puts them back."""
        if not self.c.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
            # The driver opens its transaction at the first insert, and runs DDL before it in
            # autocommit: open it now, so that a failed import leaves the indexes as they were.
            self.c.exec_driver_sql("BEGIN")
        empty = {
            table
            for table in set(_DEFERRABLE.values())
            if self.c.exec_driver_sql(f"SELECT 1 FROM {table} LIMIT 1").first() is None
        }
        for name, table in _DEFERRABLE.items():
            if table not in empty:
                continue
            found = self.c.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ? AND tbl_name = ?", (name, table)
            ).first()
            if found is None or not found[0]:
                continue
            self.c.exec_driver_sql(f"DROP INDEX {name}")
            self._deferred_indexes.append(found[0])

    def restore_settings(self) -> None:
        """Put back what a bulk write changed on this (pooled) connection."""
        if self._cache_size is not None:
            with suppress(DBAPIError):  # a broken connection is discarded by the pool anyway
                self.c.exec_driver_sql(f"PRAGMA cache_size = {int(self._cache_size)}")
            self._cache_size = None

    def stored_keys(self, kind: ImportKind, keys: Collection[str]) -> set[str]:
        column = _IMPORT_KEYS[kind]
        quote = self.c.dialect.identifier_preparer.quote
        found: set[str] = set()
        for chunk in _chunks(list(keys), _IN_CHUNK):
            # Plain SQL: SQLAlchemy's expansion of a thousand-item IN costs more than the lookup.
            marks = ", ".join(self._mark for _ in chunk)
            query = (
                f"SELECT {quote(column.name)} FROM {quote(column.table.name)} WHERE {quote(column.name)} IN ({marks})"
            )
            found.update(row[0] for row in self._fetch(query, chunk))
        return found

    def stored_as_added(
        self, kind: ImportKind, keys: Collection[str]
    ) -> dict[str, Organization | Contact | Relation | LegacyAccount]:
        found: dict[str, Organization | Contact | Relation | LegacyAccount] = {}
        for chunk in _chunks(list(keys), _IN_CHUNK):
            if kind == "organizations":
                for row in self.c.execute(select(t.organizations).where(t.organizations.c.id.in_(chunk))):
                    found[row.id] = Organization(row.id, row.name, OrganizationKind(row.kind))
            elif kind == "contacts":
                for row in self.c.execute(select(t.contacts).where(t.contacts.c.id.in_(chunk))):
                    found[row.id] = Contact(row.id, row.first_name, row.last_name, row.email, row.language, row.phone)
            elif kind == "relations":
                found.update(self._relations_as_added(chunk))
            else:
                found.update(self._legacy_accounts_as_added(chunk))
        return found

    def _relations_as_added(self, ids: list[str]) -> dict[str, Relation]:
        r, s = t.relations, t.relation_subjects
        granted: dict[str, dict[str, Right]] = {relation_id: {} for relation_id in ids}
        # The subjects granted with the relation share its created_at; later grants and removals are history.
        for row in self.c.execute(
            select(s.c.relation_id, s.c.subject, s.c.right)
            .join(r, r.c.id == s.c.relation_id)
            .where(r.c.id.in_(ids))
            .where(s.c.granted_at == r.c.created_at)
        ):
            granted[row.relation_id][row.subject] = Right.parse(row.right)
        return {
            row.id: replace(_relation(row, granted[row.id]), ended_at=None)
            for row in self.c.execute(select(*_RELATION_COLUMNS).where(r.c.id.in_(ids)))
        }

    def _legacy_accounts_as_added(self, usernames: list[str]) -> dict[str, LegacyAccount]:
        a, links = t.legacy_accounts, t.legacy_account_contacts
        linked: dict[str, list[str]] = {username: [] for username in usernames}
        for row in self.c.execute(select(links.c.username, links.c.contact_id).where(links.c.username.in_(usernames))):
            linked[row.username].append(row.contact_id)
        return {
            row.username: LegacyAccount(row.username, row.password_hash, tuple(sorted(linked[row.username])))
            for row in self.c.execute(select(a.c.username, a.c.password_hash).where(a.c.username.in_(usernames)))
        }

    def add_batch(self, batch: ImportBatch, at: datetime, created_by: str) -> None:
        if self.c.dialect.name == "sqlite" and self._cache_size is None:
            # A million relations grow five indexes at random places: with SQLite's default 2 MB of
            # cache most inserts read a page back from the OS. 128 MiB cut the writes' time by a fifth.
            self._cache_size = int(self.c.exec_driver_sql("PRAGMA cache_size").scalar_one())
            self.c.exec_driver_sql(f"PRAGMA cache_size = -{_BULK_CACHE_KIB}")
            self._defer_indexes()
        # Plain tuples to the driver: SQLAlchemy's per-row parameter processing costs more than the insert.
        day = self._date_value
        stamp = self._bind(t.relations.c.created_at, at)
        self._insert(t.organizations, [(o.id, o.name, o.kind.value, stamp) for o in batch.organizations])
        self._insert(
            t.contacts,
            [
                # Every stored contact carries its search key, however it was loaded (ListContacts' query).
                (
                    c.id,
                    c.first_name,
                    c.last_name,
                    c.email,
                    c.language,
                    c.phone,
                    c.phone_type,
                    stamp,
                    _contact_key(c.first_name, c.last_name),
                )
                for c in batch.contacts
            ],
            ("id", "first_name", "last_name", "email", "language", "phone", "phone_type", "created_at", "search_key"),
        )
        # Enum values looked up once (their properties are slow at a million rows).
        kinds, roles = _ENUM_VALUES
        rights = _RIGHT_CODES
        self._insert(
            t.relations,
            [
                (
                    r.id,
                    kinds[r.kind],
                    r.organization_id,
                    r.contact_id,
                    r.grantee_organization_id,
                    r.via_organization_id,
                    roles[r.role],
                    day(r.start_date),
                    day(r.end_date),
                    None if r.ended_at is None else self._bind(t.relations.c.ended_at, r.ended_at),
                    stamp,
                    created_by,
                )
                for r in batch.relations
            ],
            _RELATION_INSERT,
        )
        self._insert(
            t.relation_subjects,
            [(r.id, subject, rights[right], stamp) for r in batch.relations for subject, right in r.subjects.items()],
            ("relation_id", "subject", "right", "granted_at"),
        )
        self._insert(
            t.legacy_accounts,
            [(a.username, a.password_hash) for a in batch.legacy_accounts],
            ("username", "password_hash"),
        )
        self._insert(
            t.legacy_account_contacts,
            [(a.username, contact_id) for a in batch.legacy_accounts for contact_id in a.contact_ids],
            ("username", "contact_id"),
        )

    def open_relations_of(
        self, at: datetime, pairs: Collection[tuple[str, str]], *, organizations: bool = False
    ) -> list[Relation]:
        wanted = set(pairs)
        if not wanted:
            return []
        holder = "grantee_organization_id" if organizations else "contact_id"
        # First the pairs alone (three short columns on the holder's index), then whole relations
        # for the pairs asked about: most holders of a chunk have no other relation where it looks.
        ended = self._bind(t.relations.c.ended_at, at)
        ids: list[str] = []
        for chunk in _chunks(sorted({holder_id for holder_id, _ in wanted}), _IN_CHUNK):
            marks = ", ".join(self._mark for _ in chunk)
            query = (
                f"SELECT id, {holder}, organization_id FROM relations WHERE {holder} IN ({marks}) "
                f"AND (ended_at IS NULL OR ended_at > {self._mark})"
            )
            for relation_id, holder_id, organization_id in self._fetch(query, (*chunk, ended)):
                if (holder_id, organization_id) in wanted:
                    ids.append(relation_id)
        rows: list[Any] = []
        for chunk in _chunks(sorted(ids), _IN_CHUNK):
            rows.extend(self.c.execute(select(*_RELATION_COLUMNS).where(t.relations.c.id.in_(chunk))))
        return _with_subjects(self.c, rows)

    def _fetch(self, query: str, parameters: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Plain SQL's rows as the driver gives them, on the same connection and transaction: at a
        million key lookups, SQLAlchemy's result rows (fetched one by one) cost more than the
        lookups themselves."""
        cursor = self.c.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(query, tuple(parameters))
            return list(cursor.fetchall())
        except self.c.dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(query, None, exc, self.c.dialect.loaded_dbapi.Error) from exc
        finally:
            cursor.close()

    @property
    def _mark(self) -> str:
        """The driver's placeholder, for plain SQL."""
        return "?" if self.c.dialect.paramstyle == "qmark" else "%s"

    def _bind(self, column: Any, value: Any) -> Any:
        """`value` as the driver takes it for `column` (what SQLAlchemy would send)."""
        process = column.type.dialect_impl(self.c.dialect).bind_processor(self.c.dialect)
        return value if process is None else process(value)

    def _date_value(self, value: date) -> Any:
        found = self._dates.get(value)
        if found is None:
            found = self._dates[value] = self._bind(t.relations.c.start_date, value)
        return found

    def _insert(self, table: Any, rows: Sequence[tuple[Any, ...]], columns: Sequence[str] | None = None) -> None:
        if not rows:
            return
        names = list(columns) if columns is not None else [column.name for column in table.columns]
        quote = self.c.dialect.identifier_preparer.quote
        column_list = ", ".join(quote(name) for name in names)
        if self.c.dialect.name == "postgresql":
            # COPY: the bulk path of PostgreSQL, inside this transaction, on the same connection.
            statement = f"COPY {quote(table.name)} ({column_list}) FROM STDIN"
            driver = self.c.dialect.loaded_dbapi
            cursor = self.c.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                with cursor.copy(statement) as copy:
                    for row in rows:
                        copy.write_row(row)
            except driver.Error as exc:
                # As SQLAlchemy would have wrapped it: the store maps IntegrityError and the rest once.
                raise DBAPIError.instance(statement, None, exc, driver.Error) from exc
            finally:
                cursor.close()
            return
        marks = ", ".join(self._mark for _ in names)
        self.c.exec_driver_sql(f"INSERT INTO {quote(table.name)} ({column_list}) VALUES ({marks})", list(rows))
