"""Governance: organisation (units, departments, staff), services and workflows, events,
reports, transitions, warnings, idempotency keys, dispatch overrides, webhook deliveries.

Revision ID: govern_0001
Revises:
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "govern_0001"
down_revision = None
branch_labels = ("govern",)
depends_on = None

TABLES = (
    "govern_transitions",
    "govern_staff",
    "govern_reports",
    "govern_events",
    "govern_departments",
    "govern_webhook_deliveries",
    "govern_warnings",
    "govern_units",
    "govern_services",
    "govern_overrides",
    "govern_idempotency",
)


def upgrade() -> None:
    op.create_table(
        "govern_idempotency",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_govern_idempotency")),
    )
    op.create_table(
        "govern_overrides",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("predicted", sa.String(length=100), nullable=True),
        sa.Column("predicted_level", sa.String(length=20), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("chosen", sa.String(length=100), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_govern_overrides")),
    )
    op.create_index(
        op.f("ix_govern_overrides_event_id"), "govern_overrides", ["event_id"], unique=False
    )
    op.create_table(
        "govern_services",
        sa.Column("code", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("group", sa.String(length=100), nullable=False),
        sa.Column("keywords", sa.Text(), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("function", sa.String(length=100), nullable=False),
        sa.Column("attributes", sa.Text(), nullable=False),
        sa.Column("workflow", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_govern_services")),
    )
    op.create_table(
        "govern_units",
        sa.Column("code", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("level", sa.String(length=20), nullable=False),
        sa.Column("parent", sa.String(length=100), nullable=True),
        sa.Column("region_dataset", sa.String(length=100), nullable=True),
        sa.Column("region_id", sa.String(length=100), nullable=True),
        sa.Column("geometry", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(
            ["parent"],
            ["govern_units.code"],
            name=op.f("fk_govern_units_parent_govern_units"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_govern_units")),
    )
    op.create_index(op.f("ix_govern_units_level"), "govern_units", ["level"], unique=False)
    op.create_index(op.f("ix_govern_units_parent"), "govern_units", ["parent"], unique=False)
    op.create_table(
        "govern_warnings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("rule", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=100), nullable=False),
        sa.Column("severity", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("x", sa.Float(), nullable=False),
        sa.Column("y", sa.Float(), nullable=False),
        sa.Column("t", sa.DateTime(timezone=True), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("dedup_key", sa.String(length=300), nullable=True),
        sa.Column("event_id", sa.Integer(), nullable=True),
        sa.Column("service_code", sa.String(length=100), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_govern_warnings")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_govern_warnings_dedup_key")),
    )
    op.create_index(op.f("ix_govern_warnings_rule"), "govern_warnings", ["rule"], unique=False)
    op.create_index(op.f("ix_govern_warnings_status"), "govern_warnings", ["status"], unique=False)
    op.create_index(op.f("ix_govern_warnings_t"), "govern_warnings", ["t"], unique=False)
    op.create_table(
        "govern_webhook_deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("department", sa.String(length=100), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_govern_webhook_deliveries")),
    )
    op.create_table(
        "govern_departments",
        sa.Column("code", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("unit", sa.String(length=100), nullable=False),
        sa.Column("function", sa.String(length=100), nullable=False),
        sa.Column("services", sa.Text(), nullable=False),
        sa.Column("webhook_url", sa.String(length=2000), nullable=True),
        sa.Column("geometry", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(
            ["unit"],
            ["govern_units.code"],
            name=op.f("fk_govern_departments_unit_govern_units"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_govern_departments")),
    )
    op.create_index(
        op.f("ix_govern_departments_function"), "govern_departments", ["function"], unique=False
    )
    op.create_table(
        "govern_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("service_code", sa.String(length=100), nullable=False),
        sa.Column("category", sa.String(length=100), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("department", sa.String(length=100), nullable=True),
        sa.Column("assisting", sa.Text(), nullable=False),
        sa.Column("level", sa.String(length=20), nullable=True),
        sa.Column("unit", sa.String(length=100), nullable=True),
        sa.Column("district", sa.String(length=100), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=40), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("source_id", sa.String(length=200), nullable=True),
        sa.Column("warning_id", sa.Integer(), nullable=True),
        sa.Column("x", sa.Float(), nullable=False),
        sa.Column("y", sa.Float(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("attributes", sa.Text(), nullable=False),
        sa.Column("media_url", sa.String(length=2000), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolve_by", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("overdue", sa.Boolean(), nullable=False),
        sa.Column("overdue_mark", sa.String(length=100), nullable=True),
        sa.Column("escalations", sa.Integer(), nullable=False),
        sa.Column("reopens", sa.Integer(), nullable=False),
        sa.Column("dispatch_mode", sa.String(length=20), nullable=True),
        sa.Column("dispatch_confidence", sa.Float(), nullable=True),
        sa.Column("suggested_department", sa.String(length=100), nullable=True),
        sa.Column("suggested_level", sa.String(length=20), nullable=True),
        sa.Column("satisfaction", sa.Integer(), nullable=True),
        sa.Column("feedback", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["service_code"],
            ["govern_services.code"],
            name=op.f("fk_govern_events_service_code_govern_services"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_govern_events")),
    )
    op.create_index(
        op.f("ix_govern_events_department"), "govern_events", ["department"], unique=False
    )
    op.create_index(op.f("ix_govern_events_district"), "govern_events", ["district"], unique=False)
    op.create_index(op.f("ix_govern_events_due_at"), "govern_events", ["due_at"], unique=False)
    op.create_index(
        op.f("ix_govern_events_parent_id"), "govern_events", ["parent_id"], unique=False
    )
    op.create_index(
        op.f("ix_govern_events_received_at"), "govern_events", ["received_at"], unique=False
    )
    op.create_index(
        op.f("ix_govern_events_service_code"), "govern_events", ["service_code"], unique=False
    )
    op.create_index(op.f("ix_govern_events_status"), "govern_events", ["status"], unique=False)
    op.create_index(op.f("ix_govern_events_unit"), "govern_events", ["unit"], unique=False)
    op.create_table(
        "govern_reports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("first_event", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=40), nullable=False),
        sa.Column("source_id", sa.String(length=200), nullable=True),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("reporter", sa.String(length=100), nullable=True),
        sa.Column("contact", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("media_url", sa.String(length=2000), nullable=True),
        sa.Column("attachments", sa.Text(), nullable=False),
        sa.Column("x", sa.Float(), nullable=False),
        sa.Column("y", sa.Float(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["govern_events.id"],
            name=op.f("fk_govern_reports_event_id_govern_events"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_govern_reports")),
        sa.UniqueConstraint("token", name=op.f("uq_govern_reports_token")),
    )
    op.create_index(
        op.f("ix_govern_reports_event_id"), "govern_reports", ["event_id"], unique=False
    )
    op.create_index(
        op.f("ix_govern_reports_reporter"), "govern_reports", ["reporter"], unique=False
    )
    op.create_table(
        "govern_staff",
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=40), nullable=False),
        sa.Column("department", sa.String(length=100), nullable=True),
        sa.Column("unit", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["department"],
            ["govern_departments.code"],
            name=op.f("fk_govern_staff_department_govern_departments"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["unit"],
            ["govern_units.code"],
            name=op.f("fk_govern_staff_unit_govern_units"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_govern_staff")),
    )
    op.create_table(
        "govern_transitions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("from_status", sa.String(length=20), nullable=True),
        sa.Column("to_status", sa.String(length=20), nullable=False),
        sa.Column("from_department", sa.String(length=100), nullable=True),
        sa.Column("department", sa.String(length=100), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["govern_events.id"],
            name=op.f("fk_govern_transitions_event_id_govern_events"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_govern_transitions")),
    )
    op.create_index(op.f("ix_govern_transitions_at"), "govern_transitions", ["at"], unique=False)
    op.create_index(
        op.f("ix_govern_transitions_event_id"), "govern_transitions", ["event_id"], unique=False
    )


def downgrade() -> None:
    for name in TABLES:
        op.drop_table(name)
