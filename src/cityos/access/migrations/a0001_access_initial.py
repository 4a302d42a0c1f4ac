"""Access layer: users, departments, roles, API keys, dataset policies, audit log.

Revision ID: a0001_access
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0001_access"
down_revision = None
branch_labels = ("access",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_departments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.UniqueConstraint("name", name="uq_access_departments_name"),
    )
    op.create_table(
        "access_roles",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.UniqueConstraint("name", name="uq_access_roles_name"),
    )
    op.create_table(
        "access_users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(100), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("full_name", sa.String(200), nullable=False, server_default=""),
        sa.Column(
            "department_id",
            sa.Integer,
            sa.ForeignKey("access_departments.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("username", name="uq_access_users_username"),
    )
    op.create_table(
        "access_user_roles",
        sa.Column(
            "user_id",
            sa.Integer,
            sa.ForeignKey("access_users.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "role_id",
            sa.Integer,
            sa.ForeignKey("access_roles.id", ondelete="CASCADE"),
            primary_key=True,
        ),
    )
    op.create_table(
        "access_api_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column(
            "user_id",
            sa.Integer,
            sa.ForeignKey("access_users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(200), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("key_id", name="uq_access_api_keys_key_id"),
    )
    op.create_table(
        "access_dataset_policies",
        sa.Column("dataset", sa.String(200), primary_key=True),
        sa.Column("classification", sa.String(20), nullable=False),
        sa.Column(
            "owner_department_id",
            sa.Integer,
            sa.ForeignKey("access_departments.id", ondelete="SET NULL"),
            nullable=True,
        ),
    )
    op.create_table(
        "access_grants",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "role_id",
            sa.Integer,
            sa.ForeignKey("access_roles.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("dataset", sa.String(200), nullable=False),
        sa.Column("permission", sa.String(10), nullable=False),
        sa.UniqueConstraint("role_id", "dataset", "permission", name="uq_access_grants_role_id"),
    )
    op.create_table(
        "access_row_filters",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "role_id",
            sa.Integer,
            sa.ForeignKey("access_roles.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("dataset", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
    )
    op.create_table(
        "access_unmask",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "role_id",
            sa.Integer,
            sa.ForeignKey("access_roles.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("dataset", sa.String(200), nullable=False),
        sa.Column("personal", sa.String(30), nullable=False),
        sa.UniqueConstraint("role_id", "dataset", "personal", name="uq_access_unmask_role_id"),
    )
    op.create_table(
        "access_masking_rules",
        sa.Column("personal", sa.String(30), primary_key=True),
        sa.Column("strategy", sa.String(20), nullable=False),
        sa.Column("keep_start", sa.Integer, nullable=False, server_default="0"),
        sa.Column("keep_end", sa.Integer, nullable=False, server_default="0"),
        sa.Column("mask_char", sa.String(4), nullable=False, server_default="*"),
    )
    op.create_table(
        "access_meta",
        sa.Column("key", sa.String(50), primary_key=True),
        sa.Column("value", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "access_audit",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("ts", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(50), nullable=False),
        sa.Column("dataset", sa.String(200), nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("prev_hash", name="uq_access_audit_prev_hash"),
        sa.UniqueConstraint("hash", name="uq_access_audit_hash"),
    )
    op.create_table(
        "access_audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    for name in (
        "access_audit_head",
        "access_audit",
        "access_meta",
        "access_masking_rules",
        "access_unmask",
        "access_row_filters",
        "access_grants",
        "access_dataset_policies",
        "access_api_keys",
        "access_user_roles",
        "access_users",
        "access_roles",
        "access_departments",
    ):
        op.drop_table(name)
