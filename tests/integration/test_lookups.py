"""LookupPrincipals and LookupOrganizations through the real server, on the demo data.

The demo: EMP-XYZ authorizes ORG-SQC with write on `rapport_mensuel`, and C-IND (individu
autorisé of ORG-SQC) holds that right on EMP-XYZ through a delegation; C-XYZ-DIR is EMP-XYZ's
dirigeant. The lookups must answer what CheckAccess answers, follow every write, page in id
order without duplicates or gaps across writes, and refuse bad input field by field.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from authz_client import AsyncAuthzClient, AuthzClient, InvalidArgumentError, PermissionDeniedError, Right, Role

from authz.commands.import_data import import_data
from authz.config import Settings
from authz.engine.policy import Policy
from authz.replication.tokens import revision_of
from authz.server.auth import hash_token
from authz.store.sql import open_store

from ..conftest import Running, load_demo

SQC, ABC, XYZ, LOC = "ORG-SQC", "EMP-ABC", "EMP-XYZ", "LOC-SQC-MTL"
PR, IND, XYZ_DIR = "C-PR", "C-IND", "C-XYZ-DIR"
W, R = Right.RIGHT_WRITE, Right.RIGHT_READ
ORGANIZATIONS = (SQC, ABC, XYZ, LOC, "ORG-NOWHERE")
CONTACTS = (
    "C-PR", "C-DIR1", "C-DIR2", "C-IND", "C-REP", "C-ABC-PR", "C-XYZ-DIR", "C-LOC-DIR", "C-LOC-MEM", "C-NOBODY",
)  # fmt: skip
# C-ABC-PR was once on the association's staff (2019): one of its own contacts, whom its forms may
# name again (a relation is only ever given to an organization's own contact).
FORMER_STAFF = {
    "relations": [
        {"id": "R-ABC-PR-SQC-2019", "contact_id": "C-ABC-PR", "organization_id": SQC,
         "role": "membre_du_personnel", "start_date": "2019-01-01", "end_date": "2019-12-31"},
    ]
}  # fmt: skip


@pytest.fixture
def demo(start_server: Callable[..., Running], tmp_path: Path, policy: Policy) -> Running:
    """The demo data set, with C-ABC-PR a former staff member of the association."""
    url = f"sqlite:///{tmp_path / 'lookups.db'}"
    load_demo(url, policy)
    store = open_store(Settings(database_url=url))
    try:
        assert not import_data(store, FORMER_STAFF, policy.subjects).refused
    finally:
        store.close()
    return start_server(url, demo=False)
SUBJECTS = ("rapport_mensuel", "paiements_et_releves", "profil", "relations", "scrutin_syndical")
MOMENTS = (datetime(2024, 6, 1, 16, tzinfo=UTC), datetime(2025, 12, 31, 23, tzinfo=UTC), None)


def all_principals(client: AuthzClient, organization: str, subject: str, right: int, at: datetime | None) -> list[str]:
    found: list[str] = []
    token = ""
    while True:
        page = client.lookup_principals(organization, subject, right, at=at, page_size=2, page_token=token)
        found.extend(page.principal_ids)
        if not page.next_page_token:
            return found
        token = page.next_page_token


def all_organizations(client: AuthzClient, contact: str, subject: str, right: int, at: datetime | None) -> list[str]:
    found: list[str] = []
    token = ""
    while True:
        page = client.lookup_organizations(contact, subject, right, at=at, page_size=1, page_token=token)
        found.extend(page.organization_ids)
        if not page.next_page_token:
            return found
        token = page.next_page_token


def assert_lookups_agree_with_checks(client: AuthzClient) -> int:
    """Both lookups, paged, equal the sets CheckAccess allows, on every pair of the demo."""
    allowed_seen = 0
    for at in MOMENTS:
        for subject in SUBJECTS:
            for right in (R, W):
                allowed = {
                    (c, o) for c in CONTACTS for o in ORGANIZATIONS if client.allowed(c, o, subject, right, at=at)
                }
                allowed_seen += len(allowed)
                for organization in ORGANIZATIONS:
                    expected = sorted(c for c, o in allowed if o == organization)
                    assert all_principals(client, organization, subject, right, at) == expected, (
                        organization,
                        subject,
                        right,
                        at,
                    )
                for contact in CONTACTS:
                    expected = sorted(o for c, o in allowed if c == contact)
                    assert all_organizations(client, contact, subject, right, at) == expected, (
                        contact,
                        subject,
                        right,
                        at,
                    )
    return allowed_seen


def test_who_can_and_what_can_on_the_worked_example(demo: Running) -> None:
    client = demo.client
    at = datetime(2024, 6, 1, 16, tzinfo=UTC)
    # Who may write the monthly report of EMP-XYZ: its dirigeant, and C-IND through the delegation.
    who = client.lookup_principals(XYZ, "rapport_mensuel", W, at=at)
    assert list(who.principal_ids) == [IND, XYZ_DIR]
    assert who.next_page_token == "" and who.revision == client.check(IND, XYZ, "rapport_mensuel", W).revision
    # C-IND's delegation gives nothing on payments: EMP-XYZ never authorized SQC on them.
    assert list(client.lookup_principals(XYZ, "paiements_et_releves", R, at=at).principal_ids) == [XYZ_DIR]
    # Where may C-IND file the monthly report? Only at EMP-XYZ (ORG-SQC gives C-IND no right on it).
    assert list(client.lookup_organizations(IND, "rapport_mensuel", W, at=at).organization_ids) == [XYZ]
    assert list(client.lookup_organizations(IND, "profil", R, at=at).organization_ids) == [SQC]
    # C-REP's relation with the local ended on 2025-12-31: dates bound lookups as they bound checks.
    assert list(client.lookup_organizations("C-REP", "rapport_mensuel", R, at=at).organization_ids) == [LOC]
    later = datetime(2026, 1, 2, 16, tzinfo=UTC)
    assert list(client.lookup_organizations("C-REP", "rapport_mensuel", R, at=later).organization_ids) == []


def test_explanations_say_why_as_check_does(demo: Running) -> None:
    client = demo.client
    at = datetime(2024, 6, 1, 16, tzinfo=UTC)
    answer = client.lookup_principals(XYZ, "rapport_mensuel", W, at=at, explain=True)
    assert [e.id for e in answer.explanations] == list(answer.principal_ids) == [IND, XYZ_DIR]
    for explanation in answer.explanations:
        check = client.check(explanation.id, XYZ, "rapport_mensuel", W, at=at, explain=True)
        assert (explanation.reason, list(explanation.path)) == (check.reason, list(check.path))
    delegated = answer.explanations[0]
    assert "delegated through ORG-SQC" in delegated.reason
    assert [p.split(":")[0] for p in delegated.path] == [
        "delegation D-IND-XYZ",
        "relation R-IND",
        "organization relation OR-XYZ-SQC",
    ]
    organizations = client.lookup_organizations(IND, "rapport_mensuel", W, at=at, explain=True)
    assert [e.id for e in organizations.explanations] == [XYZ]
    assert not client.lookup_principals(XYZ, "rapport_mensuel", W, at=at).explanations  # only when asked


def test_lookups_agree_with_checks_before_and_after_writes(demo: Running) -> None:
    client = demo.client
    assert assert_lookups_agree_with_checks(client) > 50
    # Writes through the API, each reflected by the same `apply` the checks use:
    # a new relation, a delegation removed, an organization authorization withdrawn, a subject removed.
    client.grant_relation(
        PR,
        SQC,
        contact_id="C-ABC-PR",
        role=Role.ROLE_MEMBRE_DU_PERSONNEL,
        subjects=[("rapport_mensuel", W)],
        attest=True,
    )
    client.grant_relation(PR, SQC, contact_id="C-REP", target_organization_id=ABC, attest=True)
    before = client.lookup_principals(ABC, "paiements_et_releves", W)
    assert "C-REP" in before.principal_ids
    client.revoke_relation("C-ABC-PR", ABC, grantee_organization_id=SQC, all_relations=True, attest=True)
    after = client.lookup_principals(ABC, "paiements_et_releves", W)
    assert "C-REP" not in after.principal_ids and revision_of(after.revision) > revision_of(before.revision)
    client.revoke_relation(PR, SQC, contact_id=IND, all_relations=True, attest=True)
    assert IND not in client.lookup_principals(XYZ, "rapport_mensuel", W).principal_ids
    client.revoke_relation(PR, SQC, contact_id="C-REP", relation_id="R-REP", subjects=["scrutin_syndical"], attest=True)
    assert "C-REP" not in client.lookup_principals(SQC, "scrutin_syndical", R).principal_ids
    assert assert_lookups_agree_with_checks(client) > 50


def test_pages_stay_valid_across_writes_without_duplicate_or_gap(demo: Running) -> None:
    client = demo.client
    first = client.lookup_principals(SQC, "profil", R, page_size=2)
    assert list(first.principal_ids) == ["C-DIR1", "C-DIR2"] and first.next_page_token
    # Between the pages: a contact sorting before the token is added, one after it removed.
    client.grant_relation(
        PR, SQC, contact_id="C-ABC-PR", role=Role.ROLE_MEMBRE_DU_PERSONNEL, subjects=[("profil", R)], attest=True
    )
    client.revoke_relation(PR, SQC, contact_id=IND, all_relations=True, attest=True)
    second = client.lookup_principals(SQC, "profil", R, page_size=2, page_token=first.next_page_token)
    assert list(second.principal_ids) == [PR] and second.next_page_token == ""
    # A fresh walk sees the new state, in order.
    assert all_principals(client, SQC, "profil", R, None) == ["C-ABC-PR", "C-DIR1", "C-DIR2", PR]


def test_unknown_organization_or_contact_is_an_empty_answer(demo: Running) -> None:
    client = demo.client
    nobody = client.lookup_principals("ORG-NOWHERE", "profil", R)
    assert list(nobody.principal_ids) == [] and nobody.next_page_token == "" and nobody.revision
    assert list(client.lookup_organizations("C-NOBODY", "profil", R).organization_ids) == []


def _violations(error: pytest.ExceptionInfo[InvalidArgumentError]) -> dict[str, str]:
    return dict(error.value.field_violations)


def test_bad_input_is_invalid_argument_field_by_field(demo: Running) -> None:
    client = demo.client
    with pytest.raises(InvalidArgumentError) as error:
        client.lookup_principals("bad id!", "nope", 0, at=datetime(1, 1, 1, tzinfo=UTC))
    assert set(_violations(error)) == {"organization_id", "subject", "right", "at"}
    with pytest.raises(InvalidArgumentError) as error:
        client.lookup_organizations("", "profil", R)
    assert set(_violations(error)) == {"principal_id"}
    for size in (-1, 1001):
        with pytest.raises(InvalidArgumentError) as error:
            client.lookup_principals(SQC, "profil", R, page_size=size)
        assert set(_violations(error)) == {"page_size"}
    # Tokens: forged, altered, or issued for another query.
    token = client.lookup_principals(SQC, "profil", R, page_size=1).next_page_token
    payload, _, signature = token.partition(".")  # base64 JSON, a dot, its HMAC
    query = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))[0]
    made_up = base64.urlsafe_b64encode(json.dumps([query, "C-A", 0, 0]).encode()).decode().rstrip("=")
    forged = f"{made_up}.{signature}"  # another position under the genuine token's signature
    for bad in ("not-a-token", forged, token[:-2] + ("AA" if token[-2:] != "AA" else "BB")):
        with pytest.raises(InvalidArgumentError) as error:
            client.lookup_principals(SQC, "profil", R, page_size=1, page_token=bad)
        assert set(_violations(error)) == {"page_token"}
    for other in (
        lambda: client.lookup_principals(SQC, "relations", R, page_size=1, page_token=token),
        lambda: client.lookup_principals(XYZ, "profil", R, page_size=1, page_token=token),
        lambda: client.lookup_organizations(SQC, "profil", R, page_size=1, page_token=token),
    ):
        with pytest.raises(InvalidArgumentError, match="another query"):
            other()


def test_caller_permissions_apply_to_lookups(start_server: Callable[..., Running], tmp_path: Path) -> None:
    tokens = {"portal": "portal-token-0123456789abcdef", "report": "report-token-0123456789abcdef"}
    callers = tmp_path / "callers.json"
    callers.write_text(
        json.dumps(
            {
                "callers": [
                    {"name": "portal", "token_sha256": hash_token(tokens["portal"]), "methods": ["*"]},
                    {
                        "name": "monthly-report",
                        "token_sha256": hash_token(tokens["report"]),
                        "methods": ["CheckAccess", "LookupOrganizations"],
                    },
                ]
            }
        )
    )
    server = start_server(callers_file=callers)
    target = f"127.0.0.1:{server.app.port}"
    with AuthzClient(target, token=tokens["report"], timeout=5) as report:
        assert list(report.lookup_organizations(IND, "profil", R).organization_ids) == [SQC]
        with pytest.raises(PermissionDeniedError):
            report.lookup_principals(SQC, "profil", R)
    with AuthzClient(target, token=tokens["portal"], timeout=5) as portal:
        assert PR in portal.lookup_principals(SQC, "profil", R).principal_ids


def test_the_async_client_pages_both_lookups(demo: Running) -> None:
    async def walk() -> tuple[list[str], list[str], list[str]]:
        async with AsyncAuthzClient(f"127.0.0.1:{demo.app.port}", timeout=10) as client:
            first = await client.lookup_principals(SQC, "profil", R, page_size=3)
            rest = await client.lookup_principals(SQC, "profil", R, page_size=3, page_token=first.next_page_token)
            where = await client.lookup_organizations(IND, "rapport_mensuel", W, explain=True)
            return (
                [*first.principal_ids, *rest.principal_ids],
                list(where.organization_ids),
                [e.id for e in where.explanations],
            )

    principals, organizations, explained = asyncio.run(walk())
    assert principals == ["C-DIR1", "C-DIR2", IND, PR]
    assert organizations == explained == [XYZ]
