"""`authz import FILE`: the legacy migration and the way to load any data set (API.md's format).

Every row that cannot be taken goes to the report with its reason; the rest goes in, in
one transaction. A row whose id is already stored is skipped, so a second import of the
same file changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from authz.commands.migration_issues import MigrationIssues
from authz.domain.dates import local_date, parse_date, utc_now
from authz.domain.model import END_OF_TIME, WILDCARD_SUBJECT, OrganizationKind, RelationKind, Right, Role
from authz.domain.validation import id_problem, self_authorization_problem
from authz.replication.changes import Change
from authz.store.interface import AuditRecord
from authz.store.sql import SqlStore, bulk_insert, existing_keys

__all__ = ["ImportReport", "import_data", "import_file"]

_SECTIONS = ("organizations", "contacts", "relations", "organization_relations", "delegations", "legacy_accounts")


@dataclass
class ImportReport:
    accepted: dict[str, int] = field(default_factory=lambda: {s: 0 for s in _SECTIONS})
    skipped: dict[str, int] = field(default_factory=lambda: {s: 0 for s in _SECTIONS})
    refused: list[dict[str, Any]] = field(default_factory=list)
    revision: int = 0

    def refuse(self, section: str, index: int, row: Any, reason: str) -> None:
        identifier = row.get("id") or row.get("username") if isinstance(row, dict) else None
        self.refused.append({"section": section, "index": index, "id": identifier, "reason": reason})

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "skipped": self.skipped, "refused": self.refused, "revision": self.revision}


class _Refused(Exception):
    pass


def _id(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if not isinstance(value, str):
        raise _Refused(f"{key} is missing")
    problem = id_problem(value)
    if problem:
        raise _Refused(f"{key} {problem}")
    return value


def _text(row: dict[str, Any], key: str, *, required: bool = True, limit: int = 300) -> str:
    value = row.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise _Refused(f"{key} must be text")
    if required and not value.strip():
        raise _Refused(f"{key} is missing")
    if len(value) > limit:
        raise _Refused(f"{key} is longer than {limit} characters")
    return value


def _date(row: dict[str, Any], key: str, default: date) -> date:
    value = row.get(key)
    if value in (None, ""):
        return default
    try:
        return parse_date(str(value))
    except ValueError:
        raise _Refused(f"bad {key} {value!r} (YYYY-MM-DD)") from None


def _subjects(row: dict[str, Any], catalogue: Iterable[str], *, allow_empty: bool) -> dict[str, Right]:
    raw = row.get("subjects") or []
    if not isinstance(raw, list):
        raise _Refused("subjects must be a list")
    known = set(catalogue)
    subjects: dict[str, Right] = {}
    for item in raw:
        if not isinstance(item, dict):
            raise _Refused("each subject must be an object with subject and right")
        subject, right_text = item.get("subject"), item.get("right")
        if subject not in known:
            raise _Refused(f"unknown subject {subject!r}")
        try:
            right = Right.parse(str(right_text))
        except KeyError:
            raise _Refused(f"bad right {right_text!r} (read or write)") from None
        if subject in subjects:
            raise _Refused(f"subject {subject!r} listed twice")
        subjects[subject] = right
    if not subjects and not allow_empty:
        raise _Refused("no subject")
    return subjects


def import_file(store: SqlStore, path: Path, catalogue: Iterable[str], now: datetime | None = None) -> ImportReport:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot be read as JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level must be an object with {', '.join(_SECTIONS)}")
    return import_data(store, data, catalogue, now)


def import_data(
    store: SqlStore, data: dict[str, Any], catalogue: Iterable[str], now: datetime | None = None
) -> ImportReport:
    now = now or utc_now()
    today = local_date(now)
    subjects_known = list(catalogue)
    report = ImportReport()
    with store.transaction() as tx:
        issues = MigrationIssues(tx, data, now)  # issue 13: refused rows kept for the managers
        orgs = existing_keys(tx, "organizations")
        contacts = existing_keys(tx, "contacts")
        relations = existing_keys(tx, "relations")
        legacy = existing_keys(tx, "legacy_accounts")
        rows: dict[str, list[dict[str, Any]]] = {
            name: []
            for name in (
                "organizations",
                "contacts",
                "relations",
                "relation_subjects",
                "legacy_accounts",
                "legacy_account_contacts",
            )
        }

        def each(section: str, handle: Callable[[dict[str, Any]], bool]) -> None:
            items = data.get(section) or []
            if not isinstance(items, list):
                report.refuse(section, -1, {}, f"{section} must be a list")
                return
            for index, row in enumerate(items):
                try:
                    if not isinstance(row, dict):
                        raise _Refused("not an object")
                    if handle(row):
                        report.accepted[section] += 1
                    else:
                        report.skipped[section] += 1
                except _Refused as refusal:
                    report.refuse(section, index, row, str(refusal))
                    issues.record(section, index, row, str(refusal))  # issue 13

        def organization(row: dict[str, Any]) -> bool:
            org_id = _id(row, "id")
            name = _text(row, "name")
            kind = row.get("kind")
            if kind not in {k.value for k in OrganizationKind}:
                raise _Refused(f"bad kind {kind!r}")
            if org_id in orgs:
                return False
            orgs.add(org_id)
            rows["organizations"].append({"id": org_id, "name": name, "kind": kind, "created_at": now})
            return True

        def contact(row: dict[str, Any]) -> bool:
            contact_id = _id(row, "id")
            first, last = _text(row, "first_name", limit=200), _text(row, "last_name", limit=200)
            email = _text(row, "email", required=False, limit=320)
            language = row.get("language") or "fr"
            if language not in ("fr", "en"):
                raise _Refused(f"bad language {language!r} (fr or en)")
            if contact_id in contacts:
                return False
            contacts.add(contact_id)
            rows["contacts"].append(
                {
                    "id": contact_id,
                    "first_name": first,
                    "last_name": last,
                    "email": email,
                    "language": language,
                    "phone": _text(row, "phone", required=False, limit=40),
                    "created_at": now,
                }
            )
            return True

        def add_relation(relation_id: str, values: dict[str, Any], subjects: dict[str, Right]) -> bool:
            if relation_id in relations:
                return False
            relations.add(relation_id)
            rows["relations"].append(
                {
                    "id": relation_id,
                    "contact_id": None,
                    "grantee_organization_id": None,
                    "via_organization_id": None,
                    "role": None,
                    "ended_at": None,
                    "created_at": now,
                    "created_by": "import",
                    **values,
                }
            )
            rows["relation_subjects"].extend(
                {"relation_id": relation_id, "subject": s, "right": r.code, "granted_at": now, "removed_at": None}
                for s, r in subjects.items()
            )
            return True

        def window(row: dict[str, Any]) -> tuple[date, date]:
            start, end = _date(row, "start_date", today), _date(row, "end_date", END_OF_TIME)
            if end < start:
                raise _Refused("end_date is before start_date")
            return start, end

        def role(row: dict[str, Any], required: bool) -> str | None:
            value = row.get("role")
            if value in (None, "") and not required:
                return None
            try:
                return Role(value).value
            except ValueError:
                raise _Refused(f"bad role {value!r}") from None

        def known(kind: str, value: str, pool: set[str]) -> str:
            if value not in pool:
                raise _Refused(f"unknown {kind} {value!r}")
            return value

        def relation(row: dict[str, Any]) -> bool:
            relation_id = _id(row, "id")
            contact_id = known("contact", _id(row, "contact_id"), contacts)
            org_id = known("organization", _id(row, "organization_id"), orgs)
            start, end = window(row)
            values = {
                "kind": RelationKind.CONTACT.value,
                "organization_id": org_id,
                "contact_id": contact_id,
                "role": role(row, True),
                "start_date": start,
                "end_date": end,
            }
            return add_relation(relation_id, values, _subjects(row, subjects_known, allow_empty=True))

        def organization_relation(row: dict[str, Any]) -> bool:
            relation_id = _id(row, "id")
            grantor = known("organization", _id(row, "grantor_id"), orgs)
            grantee = known("organization", _id(row, "grantee_id"), orgs)
            itself = self_authorization_problem(grantor, grantee)
            if itself is not None:
                raise _Refused(itself)
            start, end = window(row)
            values = {
                "kind": RelationKind.ORGANIZATION.value,
                "organization_id": grantor,
                "grantee_organization_id": grantee,
                "role": role(row, False),
                "start_date": start,
                "end_date": end,
            }
            return add_relation(relation_id, values, _subjects(row, subjects_known, allow_empty=False))

        def delegation(row: dict[str, Any]) -> bool:
            relation_id = _id(row, "id")
            contact_id = known("contact", _id(row, "contact_id"), contacts)
            via = known("organization", _id(row, "via_organization_id"), orgs)
            target = known("organization", _id(row, "target_organization_id"), orgs)
            if via == target:
                raise _Refused("a delegation goes to another organization than the one it comes through")
            start, end = window(row)
            subjects = _subjects(row, subjects_known, allow_empty=True) or {WILDCARD_SUBJECT: Right.WRITE}
            values = {
                "kind": RelationKind.DELEGATION.value,
                "organization_id": target,
                "contact_id": contact_id,
                "via_organization_id": via,
                "role": role(row, False),
                "start_date": start,
                "end_date": end,
            }
            return add_relation(relation_id, values, subjects)

        def legacy_account(row: dict[str, Any]) -> bool:
            username = _text(row, "username", limit=200)
            password_hash = _text(row, "password_hash", limit=300)
            parts = password_hash.split("$")
            if len(parts) != 4 or parts[0] != "pbkdf2_sha256" or not parts[1].isdigit():
                raise _Refused("password_hash is not pbkdf2_sha256$iterations$salt$hash")
            contact_ids = row.get("contact_ids") or []
            if not isinstance(contact_ids, list) or not contact_ids:
                raise _Refused("contact_ids must name at least one contact")
            linked = [known("contact", str(c), contacts) for c in contact_ids]
            if username in legacy:
                return False
            legacy.add(username)
            rows["legacy_accounts"].append({"username": username, "password_hash": password_hash})
            rows["legacy_account_contacts"].extend(
                {"username": username, "contact_id": c} for c in dict.fromkeys(linked)
            )
            return True

        each("organizations", organization)
        each("contacts", contact)
        each("relations", relation)
        each("organization_relations", organization_relation)
        each("delegations", delegation)
        each("legacy_accounts", legacy_account)
        for unknown in sorted(set(data) - set(_SECTIONS)):
            report.refuse(unknown, -1, {}, f"unknown section {unknown!r} ignored")
        for table, batch in rows.items():
            bulk_insert(tx, table, batch)
        if any(report.accepted.values()):
            report.revision = tx.bump_revision()
            # Too many relations to list in the change log: every running process reloads instead.
            tx.append_change(Change(report.revision, now, "import", None))
            tx.add_audit(
                AuditRecord(now, "import", "import", {"accepted": report.accepted, "refused": len(report.refused)}),
                report.revision,
            )
    return report
