"""Relational tables of the governance layer: the organisation (administrative units,
departments with jurisdictions and service responsibilities, staff), services and their
workflows, events with their reports, transitions, warnings, idempotency keys and the
dispatcher's overrides (the retraining record).

The relational rows are the truth; the store's ``events`` and ``warnings`` datasets mirror
the current state of each event and warning (see :mod:`cityos.govern._mirror`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from cityos.db import Base

__all__ = [
    "DepartmentRow",
    "EventRow",
    "IdempotencyRow",
    "OverrideRow",
    "ReportRow",
    "ServiceRow",
    "StaffRow",
    "SubscriptionRow",
    "TransitionRow",
    "UnitRow",
    "WarningRow",
    "WebhookDeliveryRow",
]

TZ = DateTime(timezone=True)


class UnitRow(Base):
    """An administrative unit: the city, a district, a street (subdistrict) or a
    community (grid). ``geometry`` is WKB in EPSG:4326."""

    __tablename__ = "govern_units"
    code: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(20), index=True)
    parent: Mapped[str | None] = mapped_column(
        ForeignKey("govern_units.code", ondelete="CASCADE"), nullable=True, index=True
    )
    region_dataset: Mapped[str | None] = mapped_column(String(100), nullable=True)
    region_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    geometry: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class DepartmentRow(Base):
    """A department at one unit (its level), with a function shared by its counterparts at
    other levels (escalation goes to the same function one level up), the services it is
    responsible for and, optionally, a jurisdiction narrower than its unit's region."""

    __tablename__ = "govern_departments"
    code: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    unit: Mapped[str] = mapped_column(ForeignKey("govern_units.code", ondelete="CASCADE"))
    function: Mapped[str] = mapped_column(String(100), index=True)
    services: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of service codes
    webhook_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    #: the key its webhook deliveries are signed with (HMAC-SHA256), if it has one
    webhook_secret: Mapped[str | None] = mapped_column(String(200), nullable=True)
    geometry: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class StaffRow(Base):
    """A person of the organisation: an ``access`` user with a governance role, in a
    department (staff) or on a grid (grid workers)."""

    __tablename__ = "govern_staff"
    username: Mapped[str] = mapped_column(String(100), primary_key=True)
    role: Mapped[str] = mapped_column(String(40))
    department: Mapped[str | None] = mapped_column(
        ForeignKey("govern_departments.code", ondelete="SET NULL"), nullable=True
    )
    unit: Mapped[str | None] = mapped_column(
        ForeignKey("govern_units.code", ondelete="SET NULL"), nullable=True
    )


class ServiceRow(Base):
    """An Open311 service (a kind of request) with its attributes and its workflow."""

    __tablename__ = "govern_services"
    code: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    group: Mapped[str] = mapped_column(String(100), default="")
    keywords: Mapped[str] = mapped_column(Text, default="")
    type: Mapped[str] = mapped_column(String(20), default="realtime")
    function: Mapped[str] = mapped_column(String(100), default="")
    attributes: Mapped[str] = mapped_column(Text, default="[]")  # JSON, Open311 attributes
    workflow: Mapped[str] = mapped_column(Text, default="{}")  # JSON, see Workflow


class EventRow(Base):
    """The current state of one event; ``version`` is its optimistic-lock counter."""

    __tablename__ = "govern_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    service_code: Mapped[str] = mapped_column(ForeignKey("govern_services.code"), index=True)
    category: Mapped[str] = mapped_column(String(100), default="")
    title: Mapped[str] = mapped_column(String(500), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), index=True)
    department: Mapped[str | None] = mapped_column(String(100), nullable=True, index=True)
    assisting: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of departments
    level: Mapped[str | None] = mapped_column(String(20), nullable=True)
    unit: Mapped[str | None] = mapped_column(String(100), nullable=True, index=True)
    district: Mapped[str | None] = mapped_column(String(100), nullable=True, index=True)
    priority: Mapped[int] = mapped_column(Integer, default=3)
    channel: Mapped[str] = mapped_column(String(40), default="native")
    parent_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    source_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    warning_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    x: Mapped[float] = mapped_column(Float)
    y: Mapped[float] = mapped_column(Float)
    address: Mapped[str] = mapped_column(Text, default="")
    attributes: Mapped[str] = mapped_column(Text, default="{}")
    media_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    received_at: Mapped[datetime] = mapped_column(TZ, index=True)
    updated_at: Mapped[datetime] = mapped_column(TZ)
    #: deadline of the step the event waits for now (null once resolved)
    due_at: Mapped[datetime | None] = mapped_column(TZ, nullable=True, index=True)
    #: the service's deadline for resolving the event (the on-time measure)
    resolve_by: Mapped[datetime | None] = mapped_column(TZ, nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(TZ, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(TZ, nullable=True)
    overdue: Mapped[bool] = mapped_column(Boolean, default=False)
    #: the (status, due_at) the timer last marked overdue, so a sweep acts once per step
    overdue_mark: Mapped[str | None] = mapped_column(String(100), nullable=True)
    escalations: Mapped[int] = mapped_column(Integer, default=0)
    reopens: Mapped[int] = mapped_column(Integer, default=0)
    dispatch_mode: Mapped[str | None] = mapped_column(String(20), nullable=True)
    dispatch_confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: the automatic dispatcher's (or the routing table's) suggestion, kept so a human
    #: decision that differs is recorded as an override
    suggested_department: Mapped[str | None] = mapped_column(String(100), nullable=True)
    suggested_level: Mapped[str | None] = mapped_column(String(20), nullable=True)
    satisfaction: Mapped[int | None] = mapped_column(Integer, nullable=True)
    feedback: Mapped[str | None] = mapped_column(Text, nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    #: the grid worker the event is assigned to (``assign``), cleared when it changes hands
    assignee: Mapped[str | None] = mapped_column(String(100), nullable=True, index=True)


class ReportRow(Base):
    """One citizen's (or sensor's) report. A merged duplicate's reports move to the parent
    event, keeping ``first_event`` (the event created for them) and the reporter."""

    __tablename__ = "govern_reports"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("govern_events.id"), index=True)
    first_event: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(40))
    source_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    reporter: Mapped[str | None] = mapped_column(String(100), nullable=True, index=True)
    contact: Mapped[str] = mapped_column(Text, default="{}")  # JSON: email, phone, names ...
    description: Mapped[str] = mapped_column(Text, default="")
    media_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    attachments: Mapped[str] = mapped_column(Text, default="[]")
    x: Mapped[float] = mapped_column(Float)
    y: Mapped[float] = mapped_column(Float)
    received_at: Mapped[datetime] = mapped_column(TZ)


class TransitionRow(Base):
    """One step of an event's history: who did what, when and why."""

    __tablename__ = "govern_transitions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("govern_events.id"), index=True)
    action: Mapped[str] = mapped_column(String(40))
    from_status: Mapped[str | None] = mapped_column(String(20), nullable=True)
    to_status: Mapped[str] = mapped_column(String(20))
    from_department: Mapped[str | None] = mapped_column(String(100), nullable=True)
    department: Mapped[str | None] = mapped_column(String(100), nullable=True)
    actor: Mapped[str] = mapped_column(String(200))
    note: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(TZ, index=True)
    version: Mapped[int] = mapped_column(Integer)


class WarningRow(Base):
    """An early warning raised by a rule (or by hand)."""

    __tablename__ = "govern_warnings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rule: Mapped[str] = mapped_column(String(200), index=True)
    kind: Mapped[str] = mapped_column(String(100))
    severity: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), index=True)
    title: Mapped[str] = mapped_column(String(500), default="")
    x: Mapped[float] = mapped_column(Float)
    y: Mapped[float] = mapped_column(Float)
    t: Mapped[datetime] = mapped_column(TZ, index=True)
    evidence: Mapped[str] = mapped_column(Text, default="{}")
    dedup_key: Mapped[str | None] = mapped_column(String(300), nullable=True, unique=True)
    event_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    service_code: Mapped[str | None] = mapped_column(String(100), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(TZ)
    version: Mapped[int] = mapped_column(Integer, default=1)


class IdempotencyRow(Base):
    """An intake key (``Idempotency-Key`` header or ``channel:source_id``) and what it made."""

    __tablename__ = "govern_idempotency"
    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[int] = mapped_column(Integer)
    report_id: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(TZ)


class OverrideRow(Base):
    """A human decision that differs from (or confirms) the automatic dispatcher's
    suggestion: the labelled example retraining learns from."""

    __tablename__ = "govern_overrides"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(Integer, index=True)
    predicted: Mapped[str | None] = mapped_column(String(100), nullable=True)
    predicted_level: Mapped[str | None] = mapped_column(String(20), nullable=True)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    chosen: Mapped[str] = mapped_column(String(100))
    actor: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(TZ)


class SubscriptionRow(Base):
    """A person's webhook: assignments to them (a grid worker: also to their grid) are
    posted to ``url``, signed with ``secret``."""

    __tablename__ = "govern_subscriptions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(100), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(TZ)


class WebhookDeliveryRow(Base):
    """One webhook notification (to a department, or to a person's subscription), after
    its retries, and how it went."""

    __tablename__ = "govern_webhook_deliveries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    department: Mapped[str | None] = mapped_column(String(100), nullable=True)
    username: Mapped[str | None] = mapped_column(String(100), nullable=True)
    subscription_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    delivery_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    url: Mapped[str] = mapped_column(String(2000))
    kind: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    at: Mapped[datetime] = mapped_column(TZ)
