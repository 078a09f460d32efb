"""The event outbox and the record of each (event, plugin) delivery."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base, BigId, TenantKeyed, TenantScoped, tenant_key

DELIVERY_STATES = ("pending", "delivered", "failed", "skipped")


class OutboxEvent(TenantScoped, Base):
    """An event, written in the transaction of the change it describes."""

    __tablename__ = "core_event"
    
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column()
    actor_id: Mapped[int | None] = mapped_column(BigId)
    created_at: Mapped[datetime]


class Delivery(TenantScoped, Base):
    """One plugin's receipt of one event: state, attempts and last error.

    Created with the event for every plugin that implements the hook and is on
    for the tenant, so a failing plugin is retried alone and stays visible.
    """

    __tablename__ = "core_event_delivery"
    __table_args__ = (
        tenant_key(["event_id"], "core_event", ondelete="CASCADE"),
        UniqueConstraint("tenant_id", "event_id", "plugin"),
        Index("ix_core_event_delivery_due", "state", "next_attempt_at"),
        Index("ix_core_event_delivery_tenant", "tenant_id", "state", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[int] = mapped_column(BigId)
    plugin: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]


class PeriodicRun(TenantKeyed, Base):
    """The last due time each periodic job was started, per tenant.

    Claimed by a conditional UPDATE, so two schedulers never start the same
    period twice.
    """

    __tablename__ = "core_periodic_run"
    __table_args__ = (UniqueConstraint("tenant_id", "job"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(BigId, ForeignKey("core_tenant.id", ondelete="CASCADE"))
    job: Mapped[str] = mapped_column(String(128))
    last_run_at: Mapped[datetime]
