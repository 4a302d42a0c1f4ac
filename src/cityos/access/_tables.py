"""Relational tables of the access layer (users, roles, policies, audit).

Datasets are referred to by name, not by foreign key into the store's catalog, so the
access branch of the migrations stands alone and policies may exist before the data does.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from cityos.db import Base, utcnow

__all__ = [
    "ApiKeyRow",
    "AuditHeadRow",
    "AuditRow",
    "DatasetPolicyRow",
    "DepartmentRow",
    "GrantRow",
    "MaskingRuleRow",
    "MetaRow",
    "RoleRow",
    "RowFilterRow",
    "UnmaskRow",
    "UserRoleRow",
    "UserRow",
]


class DepartmentRow(Base):
    __tablename__ = "access_departments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")


class RoleRow(Base):
    __tablename__ = "access_roles"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")


class UserRow(Base):
    __tablename__ = "access_users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    full_name: Mapped[str] = mapped_column(String(200), default="")
    department_id: Mapped[int | None] = mapped_column(
        ForeignKey("access_departments.id", ondelete="SET NULL"), nullable=True
    )
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # tokens carry the value they were issued at; a password, role or activity change
    # bumps it, so every token issued before the change is refused
    token_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class UserRoleRow(Base):
    __tablename__ = "access_user_roles"
    user_id: Mapped[int] = mapped_column(
        ForeignKey("access_users.id", ondelete="CASCADE"), primary_key=True
    )
    role_id: Mapped[int] = mapped_column(
        ForeignKey("access_roles.id", ondelete="CASCADE"), primary_key=True
    )


class ApiKeyRow(Base):
    __tablename__ = "access_api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("access_users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class DatasetPolicyRow(Base):
    __tablename__ = "access_dataset_policies"
    dataset: Mapped[str] = mapped_column(String(200), primary_key=True)
    classification: Mapped[str] = mapped_column(String(20))
    owner_department_id: Mapped[int | None] = mapped_column(
        ForeignKey("access_departments.id", ondelete="SET NULL"), nullable=True
    )


class GrantRow(Base):
    __tablename__ = "access_grants"
    __table_args__ = (UniqueConstraint("role_id", "dataset", "permission"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    role_id: Mapped[int] = mapped_column(ForeignKey("access_roles.id", ondelete="CASCADE"))
    dataset: Mapped[str] = mapped_column(String(200))  # a name, or "*" for every dataset
    permission: Mapped[str] = mapped_column(String(10))  # read | write


class RowFilterRow(Base):
    __tablename__ = "access_row_filters"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    role_id: Mapped[int] = mapped_column(ForeignKey("access_roles.id", ondelete="CASCADE"))
    dataset: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))  # bbox | polygon | column
    spec: Mapped[str] = mapped_column(Text)  # canonical JSON


class UnmaskRow(Base):
    __tablename__ = "access_unmask"
    __table_args__ = (UniqueConstraint("role_id", "dataset", "personal"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    role_id: Mapped[int] = mapped_column(ForeignKey("access_roles.id", ondelete="CASCADE"))
    dataset: Mapped[str] = mapped_column(String(200))  # a name or "*"
    personal: Mapped[str] = mapped_column(String(30))  # a personal kind or "*"


class MaskingRuleRow(Base):
    __tablename__ = "access_masking_rules"
    personal: Mapped[str] = mapped_column(String(30), primary_key=True)
    strategy: Mapped[str] = mapped_column(String(20))
    keep_start: Mapped[int] = mapped_column(Integer, default=0)
    keep_end: Mapped[int] = mapped_column(Integer, default=0)
    mask_char: Mapped[str] = mapped_column(String(4), default="*")


class MetaRow(Base):
    """Counters; ``policy_generation`` invalidates cached policy snapshots."""

    __tablename__ = "access_meta"
    key: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class AuditRow(Base):
    __tablename__ = "access_audit"
    # seq is assigned by the appender, not the database: a gap is evidence of deletion
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ts: Mapped[str] = mapped_column(String(40))  # ISO 8601 UTC text: hashed byte for byte
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(50))
    dataset: Mapped[str | None] = mapped_column(String(200), nullable=True)
    detail: Mapped[str] = mapped_column(Text)  # canonical JSON
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditHeadRow(Base):
    """The last entry's seq and hash, updated with every append (catches truncation)."""

    __tablename__ = "access_audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
