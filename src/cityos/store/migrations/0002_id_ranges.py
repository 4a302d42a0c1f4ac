"""Store catalog: the key ranges of each point data file's id-index copy (first and last id
and time of every row group of the copy), registered with the file so ID-temporal queries
read them with the dataset version's statistics instead of the copy's footer.

Revision ID: store_0002_id_ranges
Revises: store_0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "store_0002_id_ranges"
down_revision = "store_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("st_files", sa.Column("id_ranges", sa.LargeBinary, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("st_files") as batch:
        batch.drop_column("id_ranges")
