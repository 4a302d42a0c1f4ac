"""Federation: the kind of a project (vertical or horizontal), who bound a dataset (its
rows are read as that user), and the AI-registry version a published model is.

Revision ID: fed_0002
Revises: fed_0001
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "fed_0002"
down_revision = "fed_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fed_projects") as t:
        t.add_column(sa.Column("kind", sa.String(20), nullable=False, server_default="vertical"))
    with op.batch_alter_table("fed_bindings") as t:
        t.add_column(sa.Column("bound_by", sa.String(200), nullable=False, server_default=""))
    with op.batch_alter_table("fed_models") as t:
        t.add_column(sa.Column("registry_name", sa.String(200), nullable=False, server_default=""))
        t.add_column(sa.Column("registry_version", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("fed_models") as t:
        t.drop_column("registry_version")
        t.drop_column("registry_name")
    with op.batch_alter_table("fed_bindings") as t:
        t.drop_column("bound_by")
    with op.batch_alter_table("fed_projects") as t:
        t.drop_column("kind")
