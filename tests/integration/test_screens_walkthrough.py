"""docs/SCREENS.md, screen by screen: the worked example through the Python client, each screen
shown with its one read and submitted with its one write (real server, SQLite).

Julie Tremblay (C-PR) is the association's person responsible. She links her account, checks
the contacts and authorizations, adds Marie-Hélène Demers, delegates her what Construction ABC
authorizes, corrects her details, removes the delegation, names her a second person
responsible, and reads back her own requests.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from authz_client import NewContact, Origin, Right, Role, relation_update

from authz.domain.dates import local_date

from ..conftest import Running
from .helpers import codes_for, row_counts

SQC, ABC = "ORG-SQC", "EMP-ABC"
PR = "C-PR"
W, R = Right.RIGHT_WRITE, Right.RIGHT_READ
DOC = Path(__file__).resolve().parents[2] / "docs" / "SCREENS.md"


def test_the_doc_lists_each_screen_with_calls_that_exist() -> None:
    from authz.v1 import authz_pb2

    methods = set(authz_pb2.DESCRIPTOR.services_by_name["AuthzService"].methods_by_name)
    rows = [line for line in DOC.read_text(encoding="utf-8").splitlines() if re.match(r"^\| \d+ \|", line)]
    assert len(rows) == 14
    named = {name for line in rows for name in re.findall(r"`([A-Z][A-Za-z]+)`", line)}
    assert named - {"ROLE_PERSONNE_RESPONSABLE"} <= methods


def test_the_worked_example_screen_by_screen(demo: Running) -> None:
    client = demo.client
    today = local_date(demo.app.deps.clock())
    catalogue = client.get_catalogue()  # once: every label and drop-down of subjects and roles
    labels = {s.code: s.label_fr for s in catalogue.subjects}
    role_labels = {r.role: r.label_fr for r in catalogue.roles}

    # 1. « Liaison d'un profil »: the success message names the profile from the answer itself.
    linked = client.link_legacy_access("acct-julie", "sqc-admin", "demo-legacy-password")
    (profile,) = linked.profiles
    assert (profile.organization_name, role_labels[profile.role]) == (
        "SYNDICAT QUÉBÉCOIS DE LA CONSTRUCTION",
        "Personne responsable",
    )

    # 2-3. « Sélectionnez un profil », « Profil concerné »: the profiles she may manage.
    profiles = client.list_profiles("acct-julie").profiles
    assert [(p.organization_id, p.can_manage) for p in profiles] == [(SQC, True)]

    # 4. « Contacts de l'organisation ».
    contacts = client.list_contacts(PR, SQC).contacts
    names = {row.contact_id: row.display_name for row in contacts}
    assert names["C-IND"] == "Luc Côté" and all(row.active for row in contacts if row.organization_id == SQC)

    # 5. « Cliquez sur chaque profil »: one read per contact.
    luc = client.get_contact(PR, SQC, "C-IND")
    assert (luc.first_name, luc.email) == ("Luc", "luc.cote@sqc.example.org")

    # 6. « Autorisations », filtered on Luc: names, dates and origin are on the rows.
    rows = client.list_authorizations(PR, SQC, contact_id="C-IND").authorizations
    shown = sorted(
        (labels[r.subject], r.contact_name, r.organization_name, role_labels.get(r.role, ""), r.active, Origin.Name(r.origin))
        for r in rows
    )
    assert shown == [
        ("Profil", "Luc Côté", "SYNDICAT QUÉBÉCOIS DE LA CONSTRUCTION", "Individu autorisé", True, "ORIGIN_GRANTED"),
        ("Rapport mensuel", "Luc Côté", "Béton XYZ ltée", "", True, "ORIGIN_DELEGATED"),
    ]

    # 7. « Ajouter une relation… », « Le contact n'existe pas »: Marie-Hélène, membre du personnel.
    added = client.grant_relation(
        PR,
        SQC,
        new_contact=NewContact(first_name="Marie-Hélène", last_name="Demers", email="mh.demers@example.org"),
        role=Role.ROLE_MEMBRE_DU_PERSONNEL,
        subjects=[("profil", R)],
        attest=True,
    )
    mh = added.contact_id
    assert added.link_code_sent and codes_for(demo, "mh.demers@example.org")

    # 8. « Une autre organisation »: the drop-down of the organizations that authorize the
    # association, and what each lets it delegate.
    clients = client.list_clients(PR, SQC).clients
    abc = next(c for c in clients if c.organization_id == ABC)
    offered = [(s.subject, s.right) for s in abc.subjects]
    assert offered == [("paiements_et_releves", W), ("rapport_mensuel", R)]
    delegation = client.grant_relation(
        PR, SQC, contact_id=mh, target_organization_id=ABC, subjects=[offered[1]], attest=True,
    )

    # 9. « Modifier les informations… »: details, two numbers and the end date of her relation,
    # one Soumettre.
    form = client.get_contact(PR, SQC, mh)
    (own,) = [r for r in form.relations if r.organization_id == SQC and not r.via_organization_id]
    before = row_counts(demo)
    end = today + timedelta(days=365)
    client.update_contact(
        PR,
        SQC,
        mh,
        language="en",
        phones=[("cellulaire", "514 987-6543"), ("travail", "450 555 0199")],
        relation_updates=[relation_update(own.relation_id, end_date=end)],
        attest=True,
    )
    assert row_counts(demo)["audit_log"] == before["audit_log"] + 1
    again = client.get_contact(PR, SQC, mh)
    assert [p.number for p in again.phones] == ["+15149876543", "+14505550199"] and again.language == "en"
    assert next(r for r in again.relations if r.relation_id == own.relation_id).end_date == end.isoformat()

    # 10. « Retirer une relation… »: the delegation goes, her own relation stays.
    relations = client.get_contact(PR, SQC, mh).relations
    assert delegation.relation_id in {r.relation_id for r in relations}
    removed = client.revoke_relation(PR, SQC, contact_id=mh, relation_ids=[delegation.relation_id], attest=True)
    assert removed.relations_ended == 1

    # 11. « Envoyer les coordonnées de liaison »: a new code, from the contact's form.
    client.get_contact(PR, SQC, mh)
    assert client.update_contact(PR, SQC, mh, issue_link_code=True, attest=True).link_code_sent

    # 12. « Nommer un autre responsable ».
    assert mh in {row.contact_id for row in client.list_contacts(PR, SQC).contacts}
    client.grant_relation(PR, SQC, contact_id=mh, role=Role.ROLE_PERSONNE_RESPONSABLE, attest=True)
    code = codes_for(demo, "mh.demers@example.org")[-1]
    assert [(p.organization_id, p.can_manage) for p in client.redeem_link_code("acct-mh", code).profiles] == [
        (SQC, True)
    ]

    # 13. « Mes demandes »: Julie's own requests, newest first, one line each.
    summaries = [row.summary for row in client.list_requests(PR, SQC, mine=True).requests]
    assert summaries == [
        "Ajout d'une relation ou de sujets autorisés : Marie-Hélène Demers",
        "Modification des informations personnelles et des coordonnées : Marie-Hélène Demers",
        "Retrait d'une relation ou de sujets autorisés : Marie-Hélène Demers",
        "Modification des informations personnelles et des coordonnées : Marie-Hélène Demers",
        "Ajout d'une relation ou de sujets autorisés : Marie-Hélène Demers",
        "Ajout d'une relation ou de sujets autorisés : Marie-Hélène Demers",
    ]
