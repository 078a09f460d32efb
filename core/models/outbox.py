"""The event outbox and the record of each (event, plugin) delivery."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base, BigId, TenantKeyed, TenantScoped, tenant_key

DELIVERY_STATES = ("pending", "delivered", "failed", "skipped")
POST_STATES = ("queued", "sending", "sent", "failed")


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
        Index("ix_core_event_delivery_event", "event_id"),  # a delivery job's claim: see migration 0016
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


class OutboundPost(TenantScoped, Base):
    """An HTTP POST to a URL a tenant chose, queued in a transaction and sent after it commits.

    Written by :func:`pelago.core.posts.queue_post` (``pelago.plugin.queue_post``)
    in the caller's transaction (an event handler's, typically), so the POST
    is made exactly when the change it reports committed, and never while a
    transaction (on SQLite: the one write lock) waits for a receiver. A
    sender claims a row with a lease (``lease_token``, ``lease_until``) and
    records the answer only under it; a row whose lease ran out is sent
    again (at least once: receivers dedupe, e.g. on the pool's ``event_id``).
    """

    __tablename__ = "core_outbound_post"
    __table_args__ = (
        Index("ix_core_outbound_post_due", "status", "next_attempt_at"),
        Index("ix_core_outbound_post_age", "status", "created_at"),  # the retention sweep (core.retention)
        CheckConstraint("status IN ('queued','sending','sent','failed')", name="status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    plugin: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(2000))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    headers: Mapped[dict[str, Any]] = mapped_column()
    timeout: Mapped[int] = mapped_column(Integer, default=10)
    status: Mapped[str] = mapped_column(String(8), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    lease_token: Mapped[str | None] = mapped_column(String(40))
    lease_until: Mapped[datetime | None]
    answer_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    event_id: Mapped[int | None] = mapped_column(BigId)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
