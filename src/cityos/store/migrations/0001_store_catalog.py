"""Store catalog: datasets, files, row-group statistics, commits.

Revision ID: store_0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "store_0001"
down_revision = None
branch_labels = ("store",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "st_datasets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("model", sa.String(40), nullable=False),
        sa.Column("schema_json", sa.Text, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("name", name="uq_st_datasets_name"),
    )
    op.create_table(
        "st_files",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "dataset_id",
            sa.Integer,
            sa.ForeignKey("st_datasets.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("path", sa.String(1000), nullable=False),
        sa.Column("partition", sa.String(100), nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("t_min", sa.BigInteger),
        sa.Column("t_max", sa.BigInteger),
        sa.Column("x_min", sa.Float),
        sa.Column("y_min", sa.Float),
        sa.Column("x_max", sa.Float),
        sa.Column("y_max", sa.Float),
        sa.Column("commit_id", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_st_files_dataset_id", "st_files", ["dataset_id"])
    op.create_table(
        "st_row_groups",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "file_id", sa.Integer, sa.ForeignKey("st_files.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("rg", sa.Integer, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("t_min", sa.BigInteger),
        sa.Column("t_max", sa.BigInteger),
        sa.Column("x_min", sa.Float),
        sa.Column("y_min", sa.Float),
        sa.Column("x_max", sa.Float),
        sa.Column("y_max", sa.Float),
        sa.Column("id_hashes", sa.LargeBinary),
    )
    op.create_index("ix_st_row_groups_file_id", "st_row_groups", ["file_id"])
    op.create_table(
        "st_commits",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "dataset_id",
            sa.Integer,
            sa.ForeignKey("st_datasets.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("rows_added", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("rows_removed", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("source", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_st_commits_dataset_id", "st_commits", ["dataset_id"])


def downgrade() -> None:
    op.drop_table("st_commits")
    op.drop_table("st_row_groups")
    op.drop_table("st_files")
    op.drop_table("st_datasets")
