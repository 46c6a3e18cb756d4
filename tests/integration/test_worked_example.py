"""The worked example of docs/DOMAIN.md, as a person responsible goes through the guide's steps 1 to 7."""

from __future__ import annotations

import re

import pytest
from authz_client import FailedPreconditionError, NewContact, Right, Role

from ..conftest import Running

CODE_LINE = re.compile(r"^Code de liaison : ([0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4})$", re.MULTILINE)

SQC = "ORG-SQC"
ABC = "EMP-ABC"
PR = "C-PR"  # Julie Tremblay, the association's person responsible
W, R = Right.RIGHT_WRITE, Right.RIGHT_READ


def test_the_guide_from_first_login_to_removal(demo_any: Running) -> None:
    client = demo_any.client

    # Steps 1-2: Julie created her account at the identity provider, then links it with her
    # legacy portal credentials, and selects her profile.
    linked = client.link_legacy_access("acct-julie", "sqc-admin", "demo-legacy-password")
    assert list(linked.contact_ids) == [PR]
    profiles = client.list_profiles("acct-julie").profiles
    assert [(p.contact_id, p.organization_id, p.role) for p in profiles] == [(PR, SQC, Role.ROLE_PERSONNE_RESPONSABLE)]
    assert profiles[0].organization_name == "SYNDICAT QUÉBÉCOIS DE LA CONSTRUCTION"

    # Step 3: the association's contacts: two dirigeants, one individu autorisé, one
    # représentant (and Julie herself), all active.
    rows = [row for row in client.iter_contacts(PR, SQC) if row.organization_id == SQC and not row.via_organization_id]
    roles = sorted(Role.Name(row.role) for row in rows if row.contact_id != PR)
    assert roles == ["ROLE_DIRIGEANT", "ROLE_DIRIGEANT", "ROLE_INDIVIDU_AUTORISE", "ROLE_REPRESENTANT"]
    assert all(row.active for row in rows)

    # Step 4: "Le contact n'existe pas": Marie-Hélène Demers, membre du personnel, write on the
    # monthly report and read on the profile. She is created and receives a link code.
    added = client.grant_relation(
        PR,
        SQC,
        new_contact=NewContact(
            first_name="Marie-Hélène", last_name="Demers", email="mh.demers@example.org", language="fr"
        ),
        role=Role.ROLE_MEMBRE_DU_PERSONNEL,
        subjects=[("rapport_mensuel", W), ("profil", R)],
        attest=True,
    )
    assert added.link_code_sent and added.contact_id
    mh = added.contact_id
    emails = [e for e in demo_any.emails() if "mh.demers@example.org" in e]
    assert len(emails) == 1
    code = CODE_LINE.search(emails[0])
    assert code is not None, emails[0]

    # She creates her account and links it with the code (typed in lower case, no dashes).
    redeemed = client.redeem_link_code("acct-mh", code.group(1).replace("-", "").lower())
    assert (redeemed.contact_id, redeemed.organization_id) == (mh, SQC)
    assert [p.contact_id for p in client.list_profiles("acct-mh").profiles] == [mh]

    # Step 5: Julie finds her by name ("helene") and corrects her details; she is told in French.
    assert [row.contact_id for row in client.iter_contacts(PR, SQC, query="helene")] == [mh]
    found = client.get_contact(PR, SQC, mh)
    assert (found.first_name, found.email, [r.organization_name for r in found.relations]) == (
        "Marie-Hélène",
        "mh.demers@example.org",
        ["SYNDICAT QUÉBÉCOIS DE LA CONSTRUCTION"],
    )
    updated = client.update_contact(PR, SQC, mh, phone="+1 514 555-1234", phone_type="cellulaire", attest=True)
    assert list(updated.changed_fields) == ["phone", "phone_type"] and updated.confirmation_sent
    assert any("Vos informations ont été modifiées" in e for e in demo_any.emails() if "mh.demers@example.org" in e)

    # She can write the association's monthly report, not its payments.
    assert client.allowed(mh, SQC, "rapport_mensuel", W)
    assert client.allowed(mh, SQC, "profil", R)
    assert not client.allowed(mh, SQC, "profil", W)
    assert not client.allowed(mh, SQC, "paiements_et_releves", R)

    # Step 5b: ABC authorized the association to write its payments and read its monthly
    # report; Julie delegates both to Marie-Hélène.
    delegated = client.grant_relation(
        PR,
        SQC,
        contact_id=mh,
        target_organization_id=ABC,
        subjects=[("paiements_et_releves", W), ("rapport_mensuel", R)],
        attest=True,
    )
    assert client.allowed(mh, ABC, "paiements_et_releves", W)
    assert client.allowed(mh, ABC, "rapport_mensuel", R)
    assert not client.allowed(mh, ABC, "rapport_mensuel", W)
    explained = client.check(mh, ABC, "paiements_et_releves", W, explain=True)
    assert explained.allowed and any(delegated.relation_id in step for step in explained.path)

    # Delegating ABC's union vote is refused: the association holds nothing there.
    with pytest.raises(FailedPreconditionError):
        client.grant_relation(
            PR, SQC, contact_id=mh, target_organization_id=ABC, subjects=[("scrutin_syndical", R)], attest=True
        )

    # Step 6: a link code for the représentant, who could not use her legacy access (English).
    issued = client.issue_link_code(PR, SQC, "C-REP", attest=True)
    assert issued.expires_at.seconds > 0
    english = [e for e in demo_any.emails() if "nadia.bouchard" in e]
    assert len(english) == 1 and re.search(r"^Link code: [0-9A-Z-]{19}$", english[0], re.MULTILINE)

    # Step 7: another person responsible: Luc Côté (individu autorisé) gets the role and may
    # then manage the association's relations.
    assert not client.allowed("C-IND", SQC, "relations", W)
    client.grant_relation(PR, SQC, contact_id="C-IND", role=Role.ROLE_PERSONNE_RESPONSABLE, attest=True)
    assert client.allowed("C-IND", SQC, "relations", W)

    # ABC withdraws the association: Marie-Hélène loses ABC at once, nothing was copied.
    client.revoke_relation("C-ABC-PR", ABC, grantee_organization_id=SQC, all_relations=True, attest=True)
    assert not client.allowed(mh, ABC, "paiements_et_releves", W)
    assert not client.allowed(mh, ABC, "rapport_mensuel", R)
    assert client.allowed(mh, SQC, "rapport_mensuel", W)  # her own association is untouched

    # "Mes demandes": every change Julie made, newest first, with the boxes of each form.
    requests = list(client.iter_requests(PR, SQC))
    assert [r.action for r in requests][:3] == ["grant_relation", "issue_link_code", "grant_relation"]
    assert "update_contact" in [r.action for r in requests]
    assert all(r.attestation.changes_accurate for r in requests if r.actor_id == PR)

    # "Toutes les relations": she shows active = false, and every check for her is denied.
    removed = client.revoke_relation(PR, SQC, contact_id=mh, all_relations=True, attest=True)
    assert removed.relations_ended == 2  # her relation with the association and the delegation
    mine = [row for row in client.iter_contacts(PR, SQC) if row.contact_id == mh]
    assert mine and not any(row.active for row in mine)
    for organization in (SQC, ABC):
        for subject in ("rapport_mensuel", "profil", "paiements_et_releves"):
            assert not client.allowed(mh, organization, subject, R)
