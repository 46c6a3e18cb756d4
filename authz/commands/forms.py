"""Rule 9: each form carries its own "J'atteste que…" boxes, and a write requires exactly those.

- adding a relation or authorization: both boxes (`authorizes_acting`, "permettra… d'agir
  pour mon compte", and `changes_accurate`, "les modifications demandées sont exactes");
- removing, changing a relation, changing a contact's details, resolving a migration issue:
  `changes_accurate` only;
- issuing a new link code: the declaration of the contact form it is issued from ("Cocher
  la case qui atteste que les modifications demandées sont exactes"), `changes_accurate`.

A box a form does not carry is neither required nor recorded: the audit keeps the boxes
of the form that was filled in.
"""

from __future__ import annotations

from authz.commands.base import Attestation
from authz.domain.validation import Violations
from authz.errors import FieldViolation, InvalidArgument

__all__ = ["ADD_FORM", "CHANGE_FORM", "LINK_CODE_FORM", "box_violations", "refuse_if_any", "require_boxes"]

ADD_FORM = ("authorizes_acting", "changes_accurate")
CHANGE_FORM = ("changes_accurate",)
LINK_CODE_FORM = ("changes_accurate",)


def require_boxes(attestation: Attestation, boxes: tuple[str, ...]) -> dict[str, bool]:
    """Refuse the write unless every box of its form is ticked; the boxes, as the audit records them."""
    missing = [
        FieldViolation(f"attestation.{box}", "must be attested (true)")
        for box in boxes
        if not getattr(attestation, box)
    ]
    if missing:
        names = " and ".join(box for box in boxes if not getattr(attestation, box))
        raise InvalidArgument(f"the attestations of this form are required: {names}", missing)
    return dict.fromkeys(boxes, True)


def box_violations(attestation: Attestation, boxes: tuple[str, ...], violations: Violations) -> dict[str, bool]:
    """Record each box of the form left unticked beside the request's other problems, so that a
    refused write names them all at once; the boxes, as the audit records them."""
    for box in boxes:
        if not getattr(attestation, box):
            violations.add(f"attestation.{box}", "must be attested (true)")
    return dict.fromkeys(boxes, True)


def refuse_if_any(violations: Violations, message: str, found: Violations | None = None) -> None:
    """Refuse the write with every problem found, saying so when a box was left unticked.

    `found`: what the caller's edge found first; a field it already names is not named twice.
    """
    if found is not None and found.items:
        named = {v.field for v in found.items}
        violations.items = [*found.items, *(v for v in violations.items if v.field not in named)]
    if any(v.field.startswith("attestation.") for v in violations.items):
        message = f"{message} (the attestations of this form are required)"
    violations.raise_if_any(message)
