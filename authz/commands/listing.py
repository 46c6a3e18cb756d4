"""Paging over an organization's relations, shared by ListContacts and ListAuthorizations."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from authz.commands.paging import PageCursor, decode_token, encode_token
from authz.domain.model import Relation, RelationKind
from authz.errors import InvalidArgument
from authz.store.interface import Transaction

__all__ = ["paged_rows"]

Row = TypeVar("Row")


def paged_rows(
    tx: Transaction,
    organization_id: str,
    *,
    groups: Sequence[tuple[RelationKind, ...]],
    contact_id: str | None,
    token: str,
    size: int,
    rows_of: Callable[[Relation], list[Row]],
    key: bytes,
    name_key: str | None = None,
) -> tuple[list[Row], str]:
    """Rows of the organization's relations, group after group, in relation-id order within one.

    Groups put some kinds first (the guide lists the organization's own authorizations
    before its contacts'). A token names the next row to give: its group, the relation it
    is in and its rank there, so a page is exactly `size` rows even when one relation
    yields several. Relations are never deleted (removal ends them), so the relation a
    token names is always still there. Tokens are signed (`key`, see paging.py), and the
    relation one resumes at is read only if it is one this listing would give: resuming
    never leaves the organization listed.
    """
    query = f"{organization_id}\x1f{contact_id or ''}\x1f{'/'.join(','.join(k.value for k in g) for g in groups)}"
    if name_key:
        query += f"\x1f{name_key}"
    cursor = decode_token(token, query, key)
    rows: list[Row] = []
    group = cursor.group if cursor is not None else 0

    def take(relation: Relation, skip: int) -> str:
        relation_rows = rows_of(relation)
        for index in range(skip, len(relation_rows)):
            if len(rows) == size:
                return encode_token(PageCursor(query, relation.id, index, group), key)
            rows.append(relation_rows[index])
        return ""

    after: str | None = None
    if cursor is not None:
        if group >= len(groups):
            raise InvalidArgument.field("page_token", "was issued for another query")
        resumed = tx.get_relation(cursor.after)
        if resumed is not None and not _listed(resumed, organization_id, groups[group], contact_id):
            raise InvalidArgument.field("page_token", "was issued for another query")
        if resumed is not None and (next_token := take(resumed, cursor.offset)):
            return rows, next_token
        after = cursor.after
    while group < len(groups):
        batch = tx.relations_page(
            organization_id, kinds=groups[group], contact_id=contact_id, after=after, limit=size + 1, name_key=name_key
        )
        if not batch:
            group, after = group + 1, None
            continue
        for relation in batch:
            if next_token := take(relation, 0):
                return rows, next_token
        after = batch[-1].id
    return rows, ""


def _listed(relation: Relation, organization_id: str, kinds: tuple[RelationKind, ...], contact_id: str | None) -> bool:
    """Would `relations_page(organization_id, kinds=kinds, contact_id=contact_id)` give this relation?"""
    return (
        organization_id in (relation.organization_id, relation.via_organization_id, relation.grantee_organization_id)
        and relation.kind in kinds
        and (contact_id is None or relation.contact_id == contact_id)
    )
