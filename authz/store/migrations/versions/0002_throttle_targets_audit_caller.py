"""Legacy-password guesses counted per legacy username; the audit names the calling service.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 11:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("link_code_attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("legacy_username", sa.String(length=200), nullable=True))
        batch_op.create_index("ix_link_code_attempts_legacy", ["legacy_username", "at"], unique=False)
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("caller", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_column("caller")
    with op.batch_alter_table("link_code_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_link_code_attempts_legacy")
        batch_op.drop_column("legacy_username")
