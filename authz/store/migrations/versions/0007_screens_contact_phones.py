"""Several phone numbers per contact, in E.164 (the contact form's "Ajouter un autre numéro").

Revision ID: 0007_screens
Revises: 0006_sec
Create Date: 2026-12-04 23:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_screens"
down_revision = "0006_sec"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "contact_phones",
        sa.Column("contact_id", sa.String(length=128), sa.ForeignKey("contacts.id"), primary_key=True),
        sa.Column("position", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("number", sa.String(length=40), nullable=False),
        sa.Column("region", sa.String(length=2), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("contact_phones")
