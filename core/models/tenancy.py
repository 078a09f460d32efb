"""Tenants, their people and credentials, and their plugin switches."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base, BigId, TenantScoped, tenant_key

ROLES = ("operator", "admin", "manager", "rep")
STRATEGIES = ("round_robin", "load_balanced", "weighted")
ROLE_RANK = {"rep": 1, "manager": 2, "admin": 3, "operator": 4}


class Tenant(Base):
    """A customer of the installation. ``plugins_version`` bumps on any plugin change.

    The version is read with the tenant on every authenticated request, which is
    what lets the per-tenant plugin cache stay correct without a query of its own.
    """

    __tablename__ = "core_tenant"
    __table_args__ = ({"info": {"tenant_reference": "the tenants themselves: every tenant table's tenant_id points here"}},)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    default_region: Mapped[str] = mapped_column(String(2), default="CN")
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    plugins_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime]


class Team(TenantScoped, Base):
    """A group of reps with the strategy that shares leads among them.

    ``rr_pointer`` is the *last assigned user id* of round robin (not a
    position), so adding or removing a rep shifts nobody; routing locks the
    team row while it moves the pointer.
    """

    __tablename__ = "core_team"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        CheckConstraint(
            "strategy IN ('round_robin','load_balanced','weighted')", name="strategy"
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(1000), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    strategy: Mapped[str] = mapped_column(
        String(16), default="round_robin", server_default="round_robin"
    )
    rr_pointer: Mapped[int | None] = mapped_column(BigId)
    created_at: Mapped[datetime]


class User(TenantScoped, Base):
    """A person. Operators belong to no tenant (``tenant_id`` NULL)."""

    __tablename__ = "core_user"
    __tenant_reference__ = (
        "operators belong to no tenant (tenant_id NULL, which a distribution column cannot be); "
        "read on every request to authenticate, before the tenant is known; a few rows per tenant"
    )
    __table_args__ = (
        tenant_key(["team_id"], "core_team", ondelete="SET NULL"),
        UniqueConstraint("tenant_id", "email"),
        CheckConstraint(
            "(role = 'operator') = (tenant_id IS NULL)", name="operator_has_no_tenant"
        ),
        CheckConstraint("role IN ('operator','admin','manager','rep')", name="role"),
        CheckConstraint("daily_capacity IS NULL OR daily_capacity >= 0", name="capacity"),
        CheckConstraint("weight BETWEEN 1 AND 1000", name="weight"),
        Index("ix_core_user_team", "tenant_id", "team_id"),
        Index(
            "uq_core_user_operator_email",
            "email",
            unique=True,
            postgresql_where=text("tenant_id IS NULL"),
            sqlite_where=text("tenant_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(  # type: ignore[assignment]
        BigId, ForeignKey("core_tenant.id", ondelete="CASCADE"), nullable=True
    )
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(16))
    team_id: Mapped[int | None] = mapped_column(BigId)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    on_leave: Mapped[bool] = mapped_column(Boolean, default=False)
    # Routing: leads per day at most (None = no cap), share under "weighted",
    # and working hours ({"days": [1..7], "start": "09:00", "end": "18:00"}).
    daily_capacity: Mapped[int | None] = mapped_column(Integer)
    weight: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    working_hours: Mapped[dict[str, Any] | None] = mapped_column()
    password_hash: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime]


class ApiKey(Base):
    """A bearer credential. Only ``sha256(secret)`` is stored; the key is shown once.

    Not tenant-scoped by the session filter: it is read *before* the tenant is
    known. Its ``tenant_id`` mirrors the user's and is what authentication trusts.
    """

    __tablename__ = "core_api_key"
    __table_args__ = (
        Index("ix_core_api_key_user", "user_id"),
        {"info": {"tenant_reference": "found by its prefix before the tenant is known; operators' keys have no tenant"}},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("core_tenant.id", ondelete="CASCADE")
    )
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("core_user.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class TenantPlugin(TenantScoped, Base):
    """One tenant's switch and settings for one deployed plugin."""

    __tablename__ = "core_tenant_plugin"

    tenant_id: Mapped[int] = mapped_column(  # type: ignore[assignment]
        BigId, ForeignKey("core_tenant.id", ondelete="CASCADE"), primary_key=True
    )
    plugin: Mapped[str] = mapped_column(String(64), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_by: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("core_user.id", ondelete="SET NULL")
    )
    updated_at: Mapped[datetime]


__all__ = ["ROLES", "ROLE_RANK", "STRATEGIES", "ApiKey", "Team", "Tenant", "TenantPlugin", "User"]
