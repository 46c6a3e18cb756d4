"""CheckAccess, BatchCheckAccess and ListAuthorizations agree on every (contact, organization, subject, right)."""

from __future__ import annotations

import json
from itertools import product

from authz_client import NewContact, Right, Role, check_request

from authz.cli import DEMO_FILE

from ..conftest import Running

MANAGERS = {"ORG-SQC": "C-PR", "EMP-ABC": "C-ABC-PR", "EMP-XYZ": "C-XYZ-DIR", "LOC-SQC-MTL": "C-LOC-DIR"}
RIGHTS = (Right.RIGHT_READ, Right.RIGHT_WRITE)


def test_the_three_apis_agree_on_the_demo_data(demo_any: Running) -> None:
    client = demo_any.client
    # Enrich the demo with the worked example's delegations and a removal, so every kind of row is present.
    mh = client.grant_relation(
        "C-PR",
        "ORG-SQC",
        new_contact=NewContact(first_name="Marie-Hélène", last_name="Demers", email="mh@example.org"),
        role=Role.ROLE_MEMBRE_DU_PERSONNEL,
        subjects=[("rapport_mensuel", Right.RIGHT_WRITE), ("profil", Right.RIGHT_READ)],
        attest=True,
    ).contact_id
    client.grant_relation("C-PR", "ORG-SQC", contact_id=mh, target_organization_id="EMP-ABC", attest=True)
    client.grant_relation(
        "C-PR",
        "ORG-SQC",
        contact_id="C-REP",
        target_organization_id="EMP-ABC",
        subjects=[("rapport_mensuel", Right.RIGHT_READ)],
        attest=True,
    )
    client.revoke_relation("C-PR", "ORG-SQC", contact_id="C-REP", relation_ids=["R-REP"], attest=True)

    data = json.loads(DEMO_FILE.read_text(encoding="utf-8"))
    contacts = [c["id"] for c in data["contacts"]] + [mh]
    subjects = list(demo_any.app.policy.subjects)
    keys = list(product(contacts, MANAGERS, subjects, RIGHTS))

    singles = [client.check(c, o, s, r).allowed for c, o, s, r in keys]
    batched: list[bool] = []
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        batched += [result.allowed for result in client.batch_check([check_request(*key) for key in chunk])]
    listed: set[tuple[str, str, str, int]] = set()
    for organization, manager in MANAGERS.items():
        for row in client.iter_authorizations(manager, organization, page_size=7):
            if row.active and row.contact_id and row.organization_id == organization:
                for right in RIGHTS:
                    if row.right >= right:
                        listed.add((row.contact_id, organization, row.subject, right))
    from_list = [key in listed for key in keys]

    assert sum(singles) > 50  # the data set is not trivially empty
    mismatches = [
        (key, single, batch, lst)
        for key, single, batch, lst in zip(keys, singles, batched, from_list, strict=True)
        if not single == batch == lst
    ]
    assert not mismatches, mismatches[:10]


def test_paging_returns_every_row_once(demo: Running) -> None:
    client = demo.client
    everything = [
        (row.relation_id, row.subject)
        for row in client.list_authorizations("C-PR", "ORG-SQC", page_size=1000).authorizations
    ]
    for size in (1, 2, 3, 7, 8):
        paged = [
            (row.relation_id, row.subject) for row in client.iter_authorizations("C-PR", "ORG-SQC", page_size=size)
        ]
        assert paged == everything
    filtered = [
        row.contact_id for row in client.iter_authorizations("C-PR", "ORG-SQC", contact_id="C-DIR1", page_size=2)
    ]
    assert filtered and set(filtered) == {"C-DIR1"}
    contacts = [row.relation_id for row in client.iter_contacts("C-PR", "ORG-SQC", page_size=2)]
    assert len(contacts) == len(set(contacts)) == len(client.list_contacts("C-PR", "ORG-SQC").contacts)
