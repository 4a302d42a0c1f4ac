"""AI: model registry (versions with params, metrics, dataset versions, artefacts) and
stage history.

Revision ID: ai_0001
Revises:
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "ai_0001"
down_revision = None
branch_labels = ("ai",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ai_model_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("family", sa.String(100), nullable=False),
        sa.Column("horizon", sa.Integer, nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("datasets", sa.Text, nullable=False),
        sa.Column("feature_spec", sa.Text, nullable=False),
        sa.Column("code_version", sa.String(200), nullable=False),
        sa.Column("artefact", sa.String(2000), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("stage", sa.String(20), nullable=False, server_default="none"),
        sa.Column("study", sa.Text, nullable=True),
        sa.Column("reference", sa.Text, nullable=True),
        sa.Column("created_by", sa.String(200), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("name", "version", name="uq_ai_model_versions_name"),
    )
    op.create_index("ix_ai_model_versions_name", "ai_model_versions", ["name"])
    op.create_index("ix_ai_model_versions_stage", "ai_model_versions", ["stage"])
    op.create_table(
        "ai_stage_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("from_stage", sa.String(20), nullable=False),
        sa.Column("to_stage", sa.String(20), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False, server_default=""),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_ai_stage_events_name", "ai_stage_events", ["name"])


def downgrade() -> None:
    op.drop_table("ai_stage_events")
    op.drop_table("ai_model_versions")
