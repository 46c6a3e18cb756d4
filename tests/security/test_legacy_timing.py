"""Finding 6: LinkLegacyAccess does the same work whether the username exists or not.

Its time used to tell: 2–12 ms for an unknown username, 150–215 ms for an existing one
(the key derivation ran only then). Counted here, not timed: each answer runs PBKDF2
exactly once, at the iteration count of a real hash, known username or not.
"""

from __future__ import annotations

import pytest
from authz_client import InvalidArgumentError

import authz.commands.legacy as legacy
from authz.domain.secrets import LEGACY_ITERATIONS

from ..conftest import Running


def test_an_unknown_username_costs_the_same_key_derivation(demo: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    derivations: list[int] = []
    real = legacy.verify_django_pbkdf2

    def counting(password: str, encoded: str) -> bool:
        derivations.append(int(encoded.split("$")[1]))
        return real(password, encoded)

    monkeypatch.setattr(legacy, "verify_django_pbkdf2", counting)
    answers = []
    for account, username in (("acct-a", "sqc-admin"), ("acct-b", "no-such-login"), ("acct-c", "sqc-direction")):
        with pytest.raises(InvalidArgumentError) as refused:
            demo.client.link_legacy_access(account, username, "not the password")
        answers.append((refused.value.message, refused.value.field_violations))
    # One derivation per call, each at the full count, and one answer for all three.
    assert derivations == [LEGACY_ITERATIONS] * 3
    assert len(set(map(repr, answers))) == 1
