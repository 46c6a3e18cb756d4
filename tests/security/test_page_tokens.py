"""Finding 2: page tokens are unforgeable, and resuming never leaves the organization listed.

C-PR may read ORG-SQC's relations, not EMP-XYZ's. Before the fix a token was base64 JSON
naming any relation id: C-PR could list R-XYZ-DIR (EMP-XYZ's dirigeant) by writing one.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from authz_client import InvalidArgumentError

from authz.commands.paging import PageCursor, encode_token, page_token_key

from ..conftest import Running

PR, SQC, XYZ = "C-PR", "ORG-SQC", "EMP-XYZ"
CONTACTS_QUERY = f"{SQC}\x1f\x1fcontact,delegation"
AUTHORIZATIONS_QUERY = f"{SQC}\x1f\x1forganization/contact,delegation"


def unsigned(query: str, after: str, offset: int = 0, group: int = 0) -> str:
    """A token as the service used to make them: base64 JSON, no signature."""
    raw = json.dumps([query, after, offset, group], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_a_forged_token_cannot_read_another_organization(demo: Running) -> None:
    for forged in (unsigned(CONTACTS_QUERY, "R-XYZ-DIR"), unsigned(CONTACTS_QUERY, "R-XYZ-DIR") + ".AAAA"):
        with pytest.raises(InvalidArgumentError) as caught:
            demo.client.list_contacts(PR, SQC, page_size=5, page_token=forged)
        assert "page_token" in str(caught.value)
    with pytest.raises(InvalidArgumentError):
        demo.client.list_authorizations(
            PR, SQC, page_size=5, page_token=unsigned(AUTHORIZATIONS_QUERY, "R-XYZ-DIR", 0, 1)
        )


def test_a_token_altered_by_one_character_is_refused(demo: Running) -> None:
    page = demo.client.list_contacts(PR, SQC, page_size=2)
    token = page.next_page_token
    assert token
    payload, signature = token.split(".")
    raw = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    raw[1] = "R-XYZ-DIR"
    tampered = base64.urlsafe_b64encode(json.dumps(raw, separators=(",", ":")).encode()).decode().rstrip("=")
    with pytest.raises(InvalidArgumentError):
        demo.client.list_contacts(PR, SQC, page_size=2, page_token=f"{tampered}.{signature}")
    # The genuine token still works, and EMP-XYZ's own dirigeant is never among the rows.
    rest = demo.client.list_contacts(PR, SQC, page_size=100, page_token=token)
    rows = [*page.contacts, *rest.contacts]
    assert rows == list(demo.client.iter_contacts(PR, SQC, page_size=100))
    assert "C-XYZ-DIR" not in {row.contact_id for row in rows}


def test_even_a_signed_token_never_resumes_outside_the_organization(demo: Running) -> None:
    # As if the key had leaked, or a bug signed the wrong relation: the resumed relation is checked too.
    key = page_token_key(demo.app.deps)
    for query, group, list_call in (
        (CONTACTS_QUERY, 0, demo.client.list_contacts),
        (AUTHORIZATIONS_QUERY, 1, demo.client.list_authorizations),
    ):
        token = encode_token(PageCursor(query, "R-XYZ-DIR", 0, group), key)
        with pytest.raises(InvalidArgumentError):
            list_call(PR, SQC, page_size=5, page_token=token)


def test_every_server_of_one_deployment_accepts_the_others_tokens(
    start_server: Callable[..., Running], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    first = start_server(url)
    second = start_server(url, demo=False)
    page = first.client.list_authorizations(PR, SQC, page_size=2)
    rest = list(
        second.client.list_authorizations(PR, SQC, page_size=100, page_token=page.next_page_token).authorizations
    )
    everything = list(first.client.iter_authorizations(PR, SQC, page_size=100))
    assert [*page.authorizations, *rest] == everything
    # A server configured with its own key (AUTHZ_PAGE_TOKEN_KEY) signs with it: the others' tokens are refused.
    keyed = start_server(url, demo=False, page_token_key="a deployment key set by the operator")
    with pytest.raises(InvalidArgumentError):
        keyed.client.list_authorizations(PR, SQC, page_size=100, page_token=page.next_page_token)
    own = keyed.client.list_authorizations(PR, SQC, page_size=2)
    assert keyed.client.list_authorizations(PR, SQC, page_size=100, page_token=own.next_page_token).authorizations
