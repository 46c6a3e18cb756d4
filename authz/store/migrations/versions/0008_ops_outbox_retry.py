"""Outbox retries with backoff: when a message is tried next, and until when it is worth sending.

Revision ID: 0008_ops
Revises: 0007_screens
Create Date: 2026-12-04 23:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_ops"
down_revision = "0007_screens"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        # NULL: at once. Set after each failed attempt, further each time (exponential backoff).
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        # NULL: the server's give-up window after created_at. A link code's email: the code's own expiry.
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("expires_at")
        batch.drop_column("next_attempt_at")
