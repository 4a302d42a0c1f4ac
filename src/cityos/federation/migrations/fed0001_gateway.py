"""Federation: projects, members, bindings, field metadata, jobs and published models of a
party's gateway.

Revision ID: fed_0001
Revises:
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "fed_0001"
down_revision = None
branch_labels = ("federation",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fed_projects",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("federation", sa.String(63), nullable=False),
        sa.Column("guest", sa.String(63), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "fed_members",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("party", sa.String(63), nullable=False),
        sa.Column("role", sa.String(10), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("url", sa.String(500), nullable=False, server_default=""),
        sa.UniqueConstraint("project_id", "party", name="uq_fed_members_party"),
    )
    op.create_index("ix_fed_members_project_id", "fed_members", ["project_id"])
    op.create_table(
        "fed_bindings",
        sa.Column("project_id", sa.String(64), primary_key=True),
        sa.Column("dataset", sa.String(63), nullable=False),
        sa.Column("id_field", sa.String(200), nullable=False),
        sa.Column("fields", sa.Text, nullable=False),
        sa.Column("label", sa.String(200), nullable=True),
        sa.Column("dataset_version", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "fed_field_meta",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("party", sa.String(63), nullable=False),
        sa.Column("fields", sa.Text, nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("project_id", "party", name="uq_fed_field_meta_party"),
    )
    op.create_index("ix_fed_field_meta_project_id", "fed_field_meta", ["project_id"])
    op.create_table(
        "fed_jobs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("algorithm", sa.String(63), nullable=False),
        sa.Column("params", sa.Text, nullable=False, server_default="{}"),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
        sa.Column("max_retries", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.Text, nullable=False, server_default=""),
        sa.Column("result", sa.Text, nullable=False, server_default="{}"),
        sa.Column("created_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_fed_jobs_project_id", "fed_jobs", ["project_id"])
    op.create_table(
        "fed_models",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("algorithm", sa.String(63), nullable=False),
        sa.Column("part_path", sa.String(2000), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("data_versions", sa.Text, nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_fed_models_project_id", "fed_models", ["project_id"])


def downgrade() -> None:
    for t in ("fed_models", "fed_jobs", "fed_field_meta", "fed_bindings", "fed_members"):
        op.drop_table(t)
    op.drop_table("fed_projects")
