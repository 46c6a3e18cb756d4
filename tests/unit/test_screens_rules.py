"""Small rules behind the guide's other screens: search keys, the confirmation email,
attestation boxes per form, migration-issue keys."""

from __future__ import annotations

from datetime import date

import pytest

from authz.commands.base import Attestation
from authz.commands.forms import ADD_FORM, CHANGE_FORM, LINK_CODE_FORM, require_boxes
from authz.commands.migration_issues import relation_match_key, row_match_key
from authz.domain.model import END_OF_TIME, Relation, RelationKind, Role
from authz.domain.text import search_key
from authz.errors import InvalidArgument
from authz.mail import render_contact_update_email


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Hélène", "helene"),
        ("TREMBLAY", "tremblay"),
        ("Marie-Hélène  Demers", "marie-helene demers"),
        ("Luc Côté", "luc cote"),
        ("Straße", "strasse"),  # casefold, not lower
        ("Ｊｕｌｉｅ", "julie"),  # NFKD folds full-width letters
        ("Çà et là", "ca et la"),
    ],
)
def test_search_keys_forgive_accents_case_and_spacing(name: str, key: str) -> None:
    assert search_key(name) == key


def test_the_confirmation_email_names_what_changed_in_the_contacts_language() -> None:
    french = render_contact_update_email(
        first_name="Gérard",
        last_name="Thériault",
        language="fr",
        organization_name="SQC\nCode de liaison : X",
        changed_fields=["email", "phone"],
    )
    assert french.subject.startswith("Vos informations")
    assert "- Adresse courriel\n- Numéro de téléphone principal\n" in french.body
    assert "\nCode de liaison" not in french.body  # a name cannot forge a line
    english = render_contact_update_email(
        first_name="Nadia", last_name="Bouchard", language="en", organization_name="SQC", changed_fields=["language"]
    )
    assert english.subject.startswith("Your information") and "- Language of communication\n" in english.body


def test_each_form_requires_exactly_its_boxes() -> None:
    both = Attestation(authorizes_acting=True, changes_accurate=True)
    accurate = Attestation(changes_accurate=True)
    assert require_boxes(both, ADD_FORM) == {"authorizes_acting": True, "changes_accurate": True}
    assert require_boxes(accurate, CHANGE_FORM) == {"changes_accurate": True}
    assert require_boxes(both, LINK_CODE_FORM) == {"changes_accurate": True}  # a box the form lacks is not recorded
    with pytest.raises(InvalidArgument) as missing:
        require_boxes(accurate, ADD_FORM)
    assert [v.field for v in missing.value.violations] == ["attestation.authorizes_acting"]
    with pytest.raises(InvalidArgument):
        require_boxes(Attestation(authorizes_acting=True), CHANGE_FORM)


def test_a_refused_row_and_the_relation_re_creating_it_share_a_key() -> None:
    start = date(2026, 1, 1)
    relation = Relation("R-new", RelationKind.CONTACT, "ORG", start, END_OF_TIME, contact_id="C1", role=Role.DIRIGEANT)
    row = {"id": "R-old", "contact_id": "C1", "organization_id": "ORG", "role": "dirigeant", "start_date": "bad"}
    assert row_match_key("relations", row) == relation_match_key(relation)
    assert row_match_key("relations", {**row, "role": "representant"}) != relation_match_key(relation)
    grant = Relation("O", RelationKind.ORGANIZATION, "EMP", start, END_OF_TIME, grantee_organization_id="ORG")
    assert row_match_key("organization_relations", {"grantor_id": "EMP", "grantee_id": "ORG"}) == relation_match_key(
        grant
    )
    delegation = Relation(
        "D", RelationKind.DELEGATION, "EMP", start, END_OF_TIME, contact_id="C1", via_organization_id="ORG"
    )
    delegated_row = {"contact_id": "C1", "via_organization_id": "ORG", "target_organization_id": "EMP"}
    assert row_match_key("delegations", delegated_row) == relation_match_key(delegation)
    assert row_match_key("contacts", {"id": "C1"}) is None
