"""Governance: notifications to grid workers and staff. An event's ``assignee`` (the grid
worker it is assigned to), staff webhook subscriptions with their signing secret, a
department's webhook signing secret, and who a webhook delivery went to, after how many
attempts.

Revision ID: govern_0002
Revises: govern_0001
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "govern_0002"
down_revision = "govern_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("govern_events") as b:
        b.add_column(sa.Column("assignee", sa.String(length=100), nullable=True))
        b.create_index(b.f("ix_govern_events_assignee"), ["assignee"], unique=False)
    with op.batch_alter_table("govern_departments") as b:
        b.add_column(sa.Column("webhook_secret", sa.String(length=200), nullable=True))
    with op.batch_alter_table("govern_webhook_deliveries") as b:
        b.alter_column("department", existing_type=sa.String(length=100), nullable=True)
        b.add_column(sa.Column("username", sa.String(length=100), nullable=True))
        b.add_column(sa.Column("subscription_id", sa.Integer(), nullable=True))
        b.add_column(sa.Column("delivery_id", sa.String(length=64), nullable=True))
        b.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="1"))
    op.create_table(
        "govern_subscriptions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("secret", sa.String(length=200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_govern_subscriptions")),
    )
    op.create_index(
        op.f("ix_govern_subscriptions_username"),
        "govern_subscriptions",
        ["username"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_govern_subscriptions_username"), table_name="govern_subscriptions")
    op.drop_table("govern_subscriptions")
    with op.batch_alter_table("govern_webhook_deliveries") as b:
        for c in ("attempts", "delivery_id", "subscription_id", "username"):
            b.drop_column(c)
        b.alter_column("department", existing_type=sa.String(length=100), nullable=False)
    with op.batch_alter_table("govern_departments") as b:
        b.drop_column("webhook_secret")
    with op.batch_alter_table("govern_events") as b:
        b.drop_index(b.f("ix_govern_events_assignee"))
        b.drop_column("assignee")
