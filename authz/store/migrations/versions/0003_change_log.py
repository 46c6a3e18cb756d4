"""The change log every process follows, and the store's identity that revision tokens carry.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 12:00:00
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One row per committed write, numbered by the store revision (dense, in commit order: see
    # authz/store/sql/changes.py RevisionLogSql.lock_revision). `relations` holds the changed relations
    # as they stand after the write; NULL means "reload everything" (a bulk import).
    op.create_table(
        "change_log",
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("committed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("operation", sa.String(length=40), nullable=False),
        sa.Column("relations", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("revision", name=op.f("pk_change_log")),
    )
    op.create_table(
        "store_identity",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("store_id", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_store_identity")),
    )
    # Made once, here: a revision token names the store it came from, and another store refuses it.
    op.bulk_insert(
        sa.table("store_identity", sa.column("id", sa.Integer), sa.column("store_id", sa.String)),
        [{"id": 1, "store_id": uuid.uuid4().hex[:16]}],
    )


def downgrade() -> None:
    op.drop_table("store_identity")
    op.drop_table("change_log")
