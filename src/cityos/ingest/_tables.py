"""Relational tables of the ingest layer: dead letters, lineage, files already ingested,
source positions (watermarks) and the mappings in use per dataset.

Datasets are referred to by name (not a foreign key into the store's catalog), so the
ingest migration branch stands alone.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cityos.db import Base, utcnow

__all__ = ["DeadLetterRow", "IngestedFileRow", "LineageRow", "MappingRow", "SourceStateRow"]


class DeadLetterRow(Base):
    __tablename__ = "ingest_dead_letters"
    __table_args__ = (UniqueConstraint("fingerprint", name="uq_ingest_dead_letters_fingerprint"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset: Mapped[str] = mapped_column(String(200), index=True)
    source: Mapped[str] = mapped_column(String(500))
    position: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)  # the original record, as JSON
    rule: Mapped[str] = mapped_column(String(500))
    message: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="open", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LineageRow(Base):
    __tablename__ = "ingest_lineage"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset: Mapped[str] = mapped_column(String(200), index=True)
    source: Mapped[str] = mapped_column(String(500))
    kind: Mapped[str] = mapped_column(String(40))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    received: Mapped[int] = mapped_column(BigInteger, default=0)
    accepted: Mapped[int] = mapped_column(BigInteger, default=0)
    duplicates: Mapped[int] = mapped_column(BigInteger, default=0)
    rejected: Mapped[int] = mapped_column(BigInteger, default=0)


class IngestedFileRow(Base):
    __tablename__ = "ingest_files"
    __table_args__ = (UniqueConstraint("source", "path", name="uq_ingest_files_source"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(500))
    path: Mapped[str] = mapped_column(String(2000))
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    rows: Mapped[int] = mapped_column(BigInteger, default=0)
    ingested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SourceStateRow(Base):
    __tablename__ = "ingest_source_state"

    source: Mapped[str] = mapped_column(String(500), primary_key=True)
    state: Mapped[str] = mapped_column(Text)  # JSON, e.g. {"watermark": ...}
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class MappingRow(Base):
    __tablename__ = "ingest_mappings"

    dataset: Mapped[str] = mapped_column(String(200), primary_key=True)
    mapping: Mapped[str] = mapped_column(Text)  # JSON mapping document
    base_dir: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
