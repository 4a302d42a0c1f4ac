"""Access layer: a per-user token generation, bumped by a password, role or activity change
so that tokens issued before it stop working.

Revision ID: a0002_token_generation
Revises: a0001_access
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0002_token_generation"
down_revision = "a0001_access"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "access_users",
        sa.Column("token_generation", sa.Integer, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    with op.batch_alter_table("access_users") as batch:
        batch.drop_column("token_generation")
