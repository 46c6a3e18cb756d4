""" "Mes demandes" rows: the audit's changes field by field, and one line summing a request up."""

from __future__ import annotations

from authz.commands.requests import FieldChange, field_changes, summary


def test_field_changes_pairs_before_and_after_and_lists_what_was_set() -> None:
    changes = {
        "contact_id": "C-1",
        "changed_fields": ["email", "phones"],
        "before": {"email": "a@example.org", "phones": []},
        "after": {"email": "b@example.org", "phones": ["cellulaire:+15149876543"]},
        "link_code_sent": False,
        "relations": [
            {
                "relation_id": "R-1",
                "contact_id": "C-1",
                "end_date": {"before": "9999-12-31", "after": "2027-01-31"},
                "subjects_added": {"rapport_mensuel": "read"},
            }
        ],
    }
    assert field_changes(changes) == [
        FieldChange("email", "a@example.org", "b@example.org"),
        FieldChange("phones", "", "cellulaire:+15149876543"),
        FieldChange("relations[R-1].end_date", "9999-12-31", "2027-01-31"),
        FieldChange("relations[R-1].subjects_added", "", "rapport_mensuel:read"),
    ]


def test_summary_names_the_action_in_french_and_whom_it_was_for() -> None:
    names = {"C-1": "Luc Côté"}
    assert summary("grant_relation", {"contact_id": "C-1"}, names) == (
        "Ajout d'une relation ou de sujets autorisés : Luc Côté"
    )
    assert summary("revoke_relation", {"grantee_organization_id": "EMP-ABC"}, names) == (
        "Retrait d'une relation ou de sujets autorisés : EMP-ABC"
    )
    assert summary("some_new_action", {}, names) == "some new action"
