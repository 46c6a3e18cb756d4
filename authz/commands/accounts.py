"""`require_account` on reads: a caller so configured reads personal data, and watches changes,
only for the end-user account it names (`x-authz-account`), as one of that account's profiles.

Writes are bound in the write envelope; this is the same binding for reads of contacts,
emails and audit (ListContacts, GetContact, ListRequests, ListAuthorizations,
ListMigrationIssues, ListProfiles) and for Watch. Checks and lookups carry no personal data
and are not bound.
"""

from __future__ import annotations

from collections.abc import Iterable

from authz.calls import account_id, account_required
from authz.commands.base import Deps
from authz.domain.model import MANAGEMENT_SUBJECT, Right
from authz.domain.validation import Violations, id_problem
from authz.errors import PermissionDenied
from authz.store.interface import Transaction

__all__ = ["bind_read_to_account", "watch_scope"]

_NO_ACCOUNT = "this caller must name the end-user account (x-authz-account) with each read of personal data"


def bind_read_to_account(tx: Transaction, *, actor_id: str | None = None, account: str | None = None) -> None:
    """Under `require_account`: the actor must be a profile linked to the acting account, and an
    account-wide read (`account`) must be for the acting account itself. Otherwise nothing."""
    if not account_required():
        return
    acting = account_id()
    if not acting:
        raise PermissionDenied(_NO_ACCOUNT, reason="ACCOUNT_REQUIRED")
    if account is not None and account != acting:
        raise PermissionDenied("the request is for another account than the one that is acting", reason="OTHER_ACCOUNT")
    if actor_id is not None and actor_id not in tx.linked_contacts(acting):
        raise PermissionDenied(
            f"{actor_id!r} is not a profile linked to the account that is acting", reason="NOT_ACCOUNT_PROFILE"
        )


def watch_scope(deps: Deps, organization_ids: Iterable[str]) -> frozenset[str] | None:
    """The organizations a Watch stream is limited to (None: every one).

    Under `require_account` a stream must name its organizations, and the acting account must
    have a linked profile that may read each one's relations (what a manager's screens read).
    """
    wanted = list(organization_ids)
    violations = Violations()
    for index, organization_id in enumerate(wanted):
        violations.check(f"organization_ids[{index}]", id_problem(organization_id))
    violations.raise_if_any("invalid organization ids")
    scope = frozenset(wanted) or None
    if not account_required():
        return scope
    acting = account_id()
    if not acting:
        raise PermissionDenied(
            "this caller must name the end-user account (x-authz-account) to watch", reason="ACCOUNT_REQUIRED"
        )
    if scope is None:
        raise PermissionDenied(
            "this caller must name the organizations it watches (organization_ids)", reason="WATCH_SCOPE_REQUIRED"
        )
    with deps.store.transaction() as tx:
        profiles = tx.linked_contacts(acting)
    now = deps.clock().timestamp()
    for organization_id in sorted(scope):
        if not any(deps.engine.check(p, organization_id, MANAGEMENT_SUBJECT, Right.READ, now) for p in profiles):
            raise PermissionDenied(
                f"no profile of the acting account may read {organization_id!r}", reason="NOT_ACCOUNT_ORGANIZATION"
            )
    return scope
