"""Finding 7, through the server: input the API used to accept.

An email with a trailing newline (Python's `$` matches before a final newline) would end
the header block of the email it is sent in; a name made only of a filler character
prints as nothing. Both are refused with their field, and nothing is written.
"""

from __future__ import annotations

import pytest
from authz_client import InvalidArgumentError, NewContact

from ..conftest import Running
from ..integration.helpers import row_counts

PR, SQC = "C-PR", "ORG-SQC"


@pytest.mark.parametrize(
    ("contact", "field"),
    [
        (NewContact(first_name="Eve", last_name="Roy", email="eve.roy@example.org\n"), "new_contact.email"),
        (
            NewContact(first_name="Eve", last_name="Roy", email="eve.roy@example.org\r\nBcc: x@evil.example"),
            "new_contact.email",
        ),
        (NewContact(first_name="\u3164", last_name="Roy", email="eve.roy@example.org"), "new_contact.first_name"),
        (NewContact(first_name="Eve", last_name="\u3164\u3164", email="eve.roy@example.org"), "new_contact.last_name"),
        (NewContact(first_name="\u115f", last_name="Roy", email="eve.roy@example.org"), "new_contact.first_name"),
        (NewContact(first_name="Eve", last_name="\u2800", email="eve.roy@example.org"), "new_contact.last_name"),
    ],
)
def test_a_new_contact_with_a_trailing_newline_or_a_filler_name_is_refused(
    demo: Running, contact: NewContact, field: str
) -> None:
    before = row_counts(demo)
    with pytest.raises(InvalidArgumentError) as refused:
        demo.client.grant_relation(PR, SQC, new_contact=contact, role="membre_du_personnel", attest=True)
    assert [path for path, _ in refused.value.field_violations] == [field]
    assert row_counts(demo) == before
    assert not demo.emails()
