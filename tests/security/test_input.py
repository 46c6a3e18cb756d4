"""Input at the edge: ids are plain ASCII, validated once; names and emails kept exactly as given,
limits on sizes and batch lengths; each refusal with its code, field paths, and nothing changed."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from authz_client import AuthzClientError, InvalidArgumentError, NewContact, check_request
from sqlalchemy import select

from authz.commands.import_data import import_file
from authz.config import Settings
from authz.domain.validation import MAX_ID_LENGTH
from authz.engine.policy import Policy
from authz.store import tables
from authz.store.sql import open_store

from ..conftest import Running
from ..integration.helpers import row_counts

PR, SQC = "C-PR", "ORG-SQC"
# Ids that would print like another, or like nothing: each is refused, at the edge and in the import.
LOOK_ALIKE_IDS = [
    unicodedata.normalize("NFD", "C-Hélène"),
    "C-Hélène",
    "C-PR\u034f",  # combining grapheme joiner
    "C-PR\ufe0f",  # variation selector
    "C-\u3164",  # Hangul filler
    "C-PR\u180b",  # Mongolian free variation selector
    "C-\u0420R",  # Cyrillic Р
    "C-\uff30R",  # fullwidth P
    "C-\U0001d40fR",  # mathematical bold P
    "\u0301C-PR",  # a leading combining mark
]


@pytest.mark.parametrize("bad", LOOK_ALIKE_IDS, ids=[ascii(b) for b in LOOK_ALIKE_IDS])
def test_look_alike_and_invisible_ids_are_refused(demo: Running, bad: str) -> None:
    before = row_counts(demo)
    with pytest.raises(InvalidArgumentError) as check:
        demo.client.check(bad, SQC, "profil", "read")
    assert "ASCII" in dict(check.value.field_violations)["principal_id"]
    with pytest.raises(InvalidArgumentError):
        demo.client.grant_relation(
            PR, SQC, contact_id=bad, role="membre_du_personnel", subjects=[("profil", "read")], attest=True
        )
    assert row_counts(demo) == before


def test_the_import_refuses_look_alike_ids(tmp_path: Path, policy: Policy) -> None:
    store = open_store(Settings(database_url=f"sqlite:///{tmp_path / 'ids.db'}"))
    try:
        data = tmp_path / "ids.json"
        data.write_text(
            json.dumps({"contacts": [{"id": bad, "first_name": "A", "last_name": "B"} for bad in LOOK_ALIKE_IDS]})
        )
        report = import_file(store, data, policy.subjects)
    finally:
        store.close()
    assert report.accepted["contacts"] == 0
    assert len(report.refused) == len(LOOK_ALIKE_IDS)
    assert all("ASCII" in refusal["reason"] for refusal in report.refused)


def test_names_and_emails_are_kept_exactly_as_given(demo: Running) -> None:
    first = unicodedata.normalize("NFD", "Hélène")  # decomposed on purpose: not an id, so not normalized
    last = "  d'Anjou-Côté  "
    email = "Helene.DAnjou+ccq@Example.org"
    made = demo.client.grant_relation(
        PR, SQC, new_contact=NewContact(first_name=first, last_name=last, email=email, language="fr"),
        role="membre_du_personnel", attest=True,
    )  # fmt: skip
    with demo.store.engine.connect() as connection:
        row = connection.execute(select(tables.contacts).where(tables.contacts.c.id == made.contact_id)).one()
    assert (row.first_name, row.last_name, row.email) == (first, last, email)


# Each: an id a caller might send, and the description its refusal carries.
BAD_IDS = [
    ("", "must not be empty"),
    ("C" * (MAX_ID_LENGTH + 1), f"at most {MAX_ID_LENGTH} characters"),
    ("C-PR\x00", "ASCII"),
    ("C-PR\n", "ASCII"),
    ("C-\u202ePR", "ASCII"),  # right-to-left override: shows as another id
    ("C-\u200bPR", "ASCII"),  # zero-width space: invisible
    ("C PR", "ASCII"),
    ("../C-PR", "ASCII"),
    ("C-PR' OR '1'='1", "ASCII"),
    ("C-PR\U0001f600", "ASCII"),
]


@pytest.mark.parametrize(("bad", "why"), BAD_IDS, ids=[repr(b[:12]) for b, _ in BAD_IDS])
def test_a_bad_id_is_refused_with_its_field_and_changes_nothing(demo: Running, bad: str, why: str) -> None:
    before = row_counts(demo)
    with pytest.raises(InvalidArgumentError) as check:
        demo.client.check(bad, SQC, "profil", "read")
    assert ("principal_id" in dict(check.value.field_violations)) and why in dict(check.value.field_violations)[
        "principal_id"
    ]
    with pytest.raises(InvalidArgumentError) as write:
        demo.client.grant_relation(
            PR, SQC, contact_id=bad, role="membre_du_personnel", subjects=[("profil", "read")], attest=True
        )
    assert [field for field, _ in write.value.field_violations] == ["contact_id"]
    assert why in write.value.message
    with pytest.raises(InvalidArgumentError) as redeem:
        demo.client.redeem_link_code(bad, "ABCD-EFGH-JKMN-PQRS")
    assert [field for field, _ in redeem.value.field_violations] == ["account_id"]
    assert row_counts(demo) == before  # nor an attempt counted, nor an audit row


def test_an_id_at_the_length_limit_is_accepted(demo: Running) -> None:
    assert not demo.client.allowed("C" * MAX_ID_LENGTH, SQC, "profil", "read")  # valid, unknown: a plain deny


def test_every_violation_is_reported_at_once_with_its_path(demo: Running) -> None:
    before = row_counts(demo)
    with pytest.raises(InvalidArgumentError) as refused:
        demo.client.batch_check(
            [
                check_request("ok", SQC, "profil", "read"),
                check_request("bad id", SQC, "profil", "read"),
                check_request("ok", "org\x07", "cafeteria", "read"),
            ]
        )
    assert {field for field, _ in refused.value.field_violations} == {
        "checks[1].principal_id",
        "checks[2].organization_id",
        "checks[2].subject",
    }
    assert row_counts(demo) == before


def test_batch_length_is_limited(start_server: Callable[..., Running]) -> None:
    server = start_server(max_batch_checks=50)
    checks = [check_request(PR, SQC, "profil", "read")] * 51
    with pytest.raises(InvalidArgumentError) as refused:
        server.client.batch_check(checks)
    assert refused.value.field_violations == [("checks", "at most 50 checks per batch")]
    assert len(server.client.batch_check(checks[:50])) == 50


def test_request_size_is_limited(start_server: Callable[..., Running]) -> None:
    """A message over the limit is refused by gRPC before any handler runs (RESOURCE_EXHAUSTED)."""
    server = start_server(max_message_bytes=64 * 1024)
    before = row_counts(server)
    huge = NewContact(first_name="x", last_name="y", email="x@example.org", phone="1" * (70 * 1024))
    with pytest.raises(AuthzClientError) as refused:
        server.client.grant_relation(PR, SQC, new_contact=huge, role="membre_du_personnel", attest=True)
    assert refused.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert row_counts(server) == before
    # Under the message limit, an oversized field is INVALID_ARGUMENT with its path.
    long_phone = NewContact(first_name="x", last_name="y", email="x@example.org", phone="1" * 2000)
    with pytest.raises(InvalidArgumentError) as field:
        server.client.grant_relation(PR, SQC, new_contact=long_phone, role="membre_du_personnel", attest=True)
    assert [path for path, _ in field.value.field_violations] == ["new_contact.phone"]
    assert row_counts(server) == before


def test_an_oversized_link_code_or_password_is_refused_before_any_work(demo: Running) -> None:
    before = row_counts(demo)
    with pytest.raises(InvalidArgumentError) as code:
        demo.client.redeem_link_code("acct-x", "A" * 65)
    assert code.value.field_violations == [("code", "must be at most 64 characters")]
    with pytest.raises(InvalidArgumentError) as password:
        demo.client.link_legacy_access("acct-x", "sqc-admin", "p" * 1025)
    assert password.value.field_violations == [("legacy_password", "must be at most 1024 characters")]
    assert row_counts(demo) == before


def test_a_client_sees_no_internal_detail(demo: Running) -> None:
    """Even an id made to look like SQL gets a plain validation message, and no stack or SQL text."""
    with pytest.raises(AuthzClientError) as refused:
        demo.client.list_contacts("C-PR", "ORG-SQC'; DROP TABLE relations; --")
    text = str(refused.value)
    assert "Traceback" not in text and "sqlalchemy" not in text.lower() and "SELECT" not in text


def test_unknown_ids_are_not_found_not_a_crash(demo: Running) -> None:
    with pytest.raises(AuthzClientError) as unknown:
        demo.client.grant_relation(
            PR,
            "ORG-NOWHERE",
            contact_id="C-IND",
            role="membre_du_personnel",
            subjects=[("profil", "read")],
            attest=True,
        )
    assert unknown.value.code is grpc.StatusCode.NOT_FOUND
    assert unknown.value.message == "organization_id: organization 'ORG-NOWHERE' not found"
