"""Phone numbers: read in a region, checked and kept in E.164 ("+15145551234").

Google's libphonenumber data (the `phonenumbers` package) decides what a valid number is in
each region, so "abc", a number too short or an unassigned area code is refused, and the
same number typed "514 555-0123" or "+1 (514) 555-0123" is stored once, the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers

__all__ = ["DEFAULT_REGION", "MAX_PHONES", "PhoneNumber", "e164"]

# The guide's "Territoire" when none is chosen: the service is Québec's.
DEFAULT_REGION = "CA"
# "Ajouter un autre numéro": a contact keeps a few numbers, not a directory.
MAX_PHONES = 10


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    type: str  # "cellulaire", "domicile", "travail", "autre", or "" (not given)
    number: str  # E.164
    region: str = ""  # ISO 3166 code the number was read in


def e164(number: str, region: str = "") -> tuple[str, str | None]:
    """The number in E.164 and None, or ("", why it is not a phone number)."""
    region = (region or DEFAULT_REGION).upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        return "", f"region {region[:8]!r} is not an ISO 3166 code with telephone numbering (e.g. CA)"
    if not number.strip():
        return "", "must not be empty"
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return "", "is not a phone number"
    if not phonenumbers.is_valid_number(parsed):
        return "", f"is not a valid phone number in {region} (give it with +country code if it is from elsewhere)"
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164), None
