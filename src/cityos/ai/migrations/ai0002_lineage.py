"""AI: the lineage of a registered version (e.g. the federation, project and job a
federated model came from, and every party's data versions).

Revision ID: ai_0002
Revises: ai_0001
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "ai_0002"
down_revision = "ai_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ai_model_versions") as t:
        t.add_column(sa.Column("lineage", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ai_model_versions") as t:
        t.drop_column("lineage")
