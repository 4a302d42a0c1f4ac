"""Relational state of a party's gateway, in its own city database (Alembic branch
``federation``): projects and their members, the datasets the party bound, field metadata
published by every party, jobs, and published models."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cityos.db import Base, utcnow

__all__ = [
    "BindingRow",
    "FieldMetaRow",
    "JobRow",
    "MemberRow",
    "ModelRow",
    "ProjectRow",
]


class ProjectRow(Base):
    __tablename__ = "fed_projects"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    federation: Mapped[str] = mapped_column(String(63))
    guest: Mapped[str] = mapped_column(String(63))
    status: Mapped[str] = mapped_column(String(20))  # proposed | active | declined
    kind: Mapped[str] = mapped_column(String(20), default="vertical")  # vertical | horizontal
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class MemberRow(Base):
    __tablename__ = "fed_members"
    __table_args__ = (UniqueConstraint("project_id", "party", name="uq_fed_members_party"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    party: Mapped[str] = mapped_column(String(63))
    role: Mapped[str] = mapped_column(String(10))  # guest | host
    status: Mapped[str] = mapped_column(String(20))  # invited | accepted | declined
    url: Mapped[str] = mapped_column(String(500), default="")


class BindingRow(Base):
    __tablename__ = "fed_bindings"

    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    dataset: Mapped[str] = mapped_column(String(63))
    id_field: Mapped[str] = mapped_column(String(200))
    fields: Mapped[str] = mapped_column(Text)  # JSON list of feature fields
    label: Mapped[str | None] = mapped_column(String(200), nullable=True)
    dataset_version: Mapped[int] = mapped_column(Integer)
    bound_by: Mapped[str] = mapped_column(String(200), default="")  # rows are read as this user
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FieldMetaRow(Base):
    __tablename__ = "fed_field_meta"
    __table_args__ = (UniqueConstraint("project_id", "party", name="uq_fed_field_meta_party"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    party: Mapped[str] = mapped_column(String(63))
    fields: Mapped[str] = mapped_column(Text)  # JSON list of {name, type, description, stats}
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class JobRow(Base):
    __tablename__ = "fed_jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # train | infer
    algorithm: Mapped[str] = mapped_column(String(63))
    params: Mapped[str] = mapped_column(Text, default="{}")
    state: Mapped[str] = mapped_column(String(20))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_retries: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelRow(Base):
    __tablename__ = "fed_models"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    job_id: Mapped[str] = mapped_column(String(64))
    algorithm: Mapped[str] = mapped_column(String(63))
    part_path: Mapped[str] = mapped_column(String(2000))  # this party's own part
    sha256: Mapped[str] = mapped_column(String(64))
    data_versions: Mapped[str] = mapped_column(Text)  # JSON {party: {dataset, version}}
    registry_name: Mapped[str] = mapped_column(String(200), default="")  # the AI registry's
    registry_version: Mapped[int] = mapped_column(Integer, default=0)
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
