"""Relational tables of the AI layer: registered model versions and their stage history
(Alembic branch ``ai``). Datasets are named, not foreign keys, so the branch stands alone."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cityos.db import Base, utcnow

__all__ = ["ModelVersionRow", "StageEventRow"]


class ModelVersionRow(Base):
    __tablename__ = "ai_model_versions"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_ai_model_versions_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int] = mapped_column(Integer)
    family: Mapped[str] = mapped_column(String(100))
    horizon: Mapped[int] = mapped_column(Integer)
    params: Mapped[str] = mapped_column(Text)  # JSON
    metrics: Mapped[str] = mapped_column(Text)  # JSON: split -> metric -> horizon -> value
    datasets: Mapped[str] = mapped_column(Text)  # JSON: dataset -> version
    feature_spec: Mapped[str] = mapped_column(Text)  # JSON
    code_version: Mapped[str] = mapped_column(String(200))
    artefact: Mapped[str] = mapped_column(String(2000))
    sha256: Mapped[str] = mapped_column(String(64))
    stage: Mapped[str] = mapped_column(String(20), default="none", index=True)
    study: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON (AutoML)
    reference: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON drift reference
    lineage: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON (e.g. federation)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class StageEventRow(Base):
    __tablename__ = "ai_stage_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int] = mapped_column(Integer)
    from_stage: Mapped[str] = mapped_column(String(20))
    to_stage: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(200), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
