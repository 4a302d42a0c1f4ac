"""Ingest: dead letters, lineage, ingested files, source state, mappings.

Revision ID: ingest_0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "ingest_0001"
down_revision = None
branch_labels = ("ingest",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ingest_dead_letters",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("dataset", sa.String(200), nullable=False),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("position", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("rule", sa.String(500), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("status", sa.String(20), nullable=False, server_default="open"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("fingerprint", name="uq_ingest_dead_letters_fingerprint"),
    )
    op.create_index("ix_ingest_dead_letters_dataset", "ingest_dead_letters", ["dataset"])
    op.create_index("ix_ingest_dead_letters_status", "ingest_dead_letters", ["status"])
    op.create_table(
        "ingest_lineage",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("dataset", sa.String(200), nullable=False),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("received", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("accepted", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("duplicates", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("rejected", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_index("ix_ingest_lineage_dataset", "ingest_lineage", ["dataset"])
    op.create_table(
        "ingest_files",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("path", sa.String(2000), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("mtime_ns", sa.BigInteger, nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("ingested_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("source", "path", name="uq_ingest_files_source"),
    )
    op.create_table(
        "ingest_source_state",
        sa.Column("source", sa.String(500), primary_key=True),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "ingest_mappings",
        sa.Column("dataset", sa.String(200), primary_key=True),
        sa.Column("mapping", sa.Text, nullable=False),
        sa.Column("base_dir", sa.Text, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_table("ingest_mappings")
    op.drop_table("ingest_source_state")
    op.drop_table("ingest_files")
    op.drop_table("ingest_lineage")
    op.drop_table("ingest_dead_letters")
