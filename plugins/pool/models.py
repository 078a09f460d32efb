"""The pool's tables: pools, who uses them, which leads are in them, and what it counted.

A lead is *in a pool* while it has a :class:`PoolEntry` (and no owner): the
entry says which pool, since when, who held it last and why it came. Claiming
deletes the entry in the transaction that sets the owner; releasing and the
sweep write it in the transaction that clears the owner. Every table extends a
core entity by its id and never alters a core table.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Boolean, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from pelago.plugin import Base, BigId, TenantScoped, tenant_key


class Pool(TenantScoped, Base):
    """A pool of unowned leads with its own rules (``settings``, see :mod:`.schemas`).

    One default pool per tenant (``is_default``) and at most one pool per team:
    a team's owned leads are recycled by its team's pool rules into that pool,
    every other lead by the default pool's.
    """

    __tablename__ = "pool_pool"
    __table_args__ = (
        tenant_key(["team_id"], "core_team", ondelete="SET NULL"),
        UniqueConstraint("tenant_id", "name"),
        Index(
            "uq_pool_pool_default", "tenant_id", unique=True,
            postgresql_where=text("is_default"), sqlite_where=text("is_default"),
        ),
        Index(
            "uq_pool_pool_team", "tenant_id", "team_id", unique=True,
            postgresql_where=text("team_id IS NOT NULL"), sqlite_where=text("team_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(1000), default="")
    team_id: Mapped[int | None] = mapped_column(BigId)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class PoolMember(TenantScoped, Base):
    """A user named on a pool: ``member`` (may see and claim) or ``admin`` (may also distribute)."""

    __tablename__ = "pool_member"
    __table_args__ = (tenant_key(["pool_id"], "pool_pool", ondelete="CASCADE"), Index("ix_pool_member_user", "tenant_id", "user_id"),)

    pool_id: Mapped[int] = mapped_column(
        BigId, primary_key=True, autoincrement=False
    )
    user_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("core_user.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    role: Mapped[str] = mapped_column(String(16), default="member")


class PoolEntry(TenantScoped, Base):
    """A lead in a pool. ``from_user_id``/``released_at``: its last owner, for the cooldown."""

    __tablename__ = "pool_entry"
    __table_args__ = (tenant_key(["lead_id"], "core_lead", ondelete="CASCADE"), tenant_key(["pool_id"], "pool_pool", ondelete="CASCADE"), Index("ix_pool_entry_pool", "tenant_id", "pool_id", "lead_id"),)

    lead_id: Mapped[int] = mapped_column(
        BigId, primary_key=True, autoincrement=False
    )
    pool_id: Mapped[int] = mapped_column(BigId)
    entered_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(String(32))
    rule: Mapped[str | None] = mapped_column(String(100))
    from_user_id: Mapped[int | None] = mapped_column(BigId)
    released_at: Mapped[datetime | None]
    hidden_until: Mapped[datetime | None]
    note: Mapped[str] = mapped_column(String(500), default="")


class RepDay(TenantScoped, Base):
    """What one user did in the pool on one day of the tenant's calendar.

    ``claims`` only ever grows (a release gives no claim back); it is raised by
    a conditional upsert, so concurrent claims cannot pass the daily limit. The
    row is also the lock that serialises one user's hold-cap checks.
    """

    __tablename__ = "pool_rep_day"

    user_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("core_user.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    claims: Mapped[int] = mapped_column(Integer, default=0)
    views: Mapped[int] = mapped_column(Integer, default=0)


class Reminder(TenantScoped, Base):
    """A "about to be recycled" reminder that was sent: once per holding and due date."""

    __tablename__ = "pool_reminder"
    __table_args__ = (
        tenant_key(["lead_id"], "core_lead", ondelete="CASCADE"),
        UniqueConstraint("tenant_id", "lead_id", "owner_id", "due_at"),
        Index("ix_pool_reminder_lead", "tenant_id", "lead_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lead_id: Mapped[int] = mapped_column(BigId)
    owner_id: Mapped[int] = mapped_column(BigId)
    due_at: Mapped[datetime]
    rule: Mapped[str] = mapped_column(String(32))
    sent_at: Mapped[datetime]


class Sweep(TenantScoped, Base):
    """One run of the sweep: when, what it released and reminded, by rule."""

    __tablename__ = "pool_sweep"
    
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    trigger: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="running")
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    scanned: Mapped[int] = mapped_column(Integer, default=0)
    released: Mapped[int] = mapped_column(Integer, default=0)
    reminded: Mapped[int] = mapped_column(Integer, default=0)
    vetoed: Mapped[int] = mapped_column(Integer, default=0)
    batches: Mapped[int] = mapped_column(Integer, default=0)
    by_rule: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)


class ConfigVersion(Base):
    """A number that changes whenever a tenant's pools or pool members change.

    On PostgreSQL, triggers on ``pool_pool`` and ``pool_member`` set it to a
    new value of a sequence (never reused, even after a rollback) in the
    changing transaction, whoever writes (this plugin, a cascade from a
    deleted team or user, a hand-written fix). A claim uses the pools it
    cached for the version it saw and checks, inside its own statement, that
    the version is still that one (:mod:`.pools`, :mod:`.taking`).
    """

    __tablename__ = "pool_config_version"

    tenant_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("core_tenant.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    version: Mapped[int] = mapped_column(BigId, default=0)
