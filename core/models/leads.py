"""Leads and what happens to them: touches, activities, ownership and stage history."""

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
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base, BigId, TenantScoped, tenant_key

STAGES = ("new", "contacted", "qualified", "won", "lost")
#: The stage machine: where ``POST /leads/{id}/stage`` may move a lead from each stage. Forward
#: through the open stages, any open stage to ``won`` or ``lost``, ``lost`` back to ``new``
#: (reopened); ``won`` is final (a customer's next purchase is a deal, and the lead stays won).
STAGE_TRANSITIONS: dict[str, tuple[str, ...]] = {
    "new": ("contacted", "qualified", "won", "lost"),
    "contacted": ("qualified", "won", "lost"),
    "qualified": ("won", "lost"),
    "lost": ("new",),
    "won": (),
}
#: A deal moves a lead of any stage but ``won`` to ``won`` (a lost lead that buys after all).
DEAL_TRANSITIONS = {(old, "won") for old in STAGES if old != "won"}
ACTIVITY_KINDS = ("call", "note", "visit", "wechat", "sms", "meeting", "email")


class Lead(TenantScoped, Base):
    """A person who may buy. ``phone`` is E.164; uniqueness is the database's job.

    Duplicate = same tenant and same phone, or same email when there is no
    phone: two partial unique indexes hold that rule under concurrent intake.
    """

    __tablename__ = "core_lead"
    __table_args__ = (
        tenant_key(["team_id"], "core_team", ondelete="SET NULL"),
        Index(
            "uq_core_lead_phone",
            "tenant_id",
            "phone",
            unique=True,
            postgresql_where=text("phone IS NOT NULL"),
            sqlite_where=text("phone IS NOT NULL"),
        ),
        Index(
            "uq_core_lead_email",
            "tenant_id",
            "email",
            unique=True,
            postgresql_where=text("phone IS NULL AND email IS NOT NULL"),
            sqlite_where=text("phone IS NULL AND email IS NOT NULL"),
        ),
        Index("ix_core_lead_email", "tenant_id", "email"),
        Index("ix_core_lead_owner", "tenant_id", "owner_id", "id"),
        # open leads per rep (load balancing, hold caps) as an index-only count
        Index("ix_core_lead_owner_stage", "tenant_id", "owner_id", "stage"),
        Index("ix_core_lead_team", "tenant_id", "team_id", "id"),
        Index("ix_core_lead_stage", "tenant_id", "stage", "id"),
        Index("ix_core_lead_source", "tenant_id", "source", "id"),
        Index("ix_core_lead_created", "tenant_id", "created_at"),
        CheckConstraint(
            "stage IN ('new','contacted','qualified','won','lost')", name="stage"
        ),
        CheckConstraint(
            "stage <> 'lost' OR lost_reason IS NOT NULL", name="lost_needs_reason"
        ),
        CheckConstraint("phone IS NOT NULL OR email IS NOT NULL", name="reachable"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    phone: Mapped[str | None] = mapped_column(String(20))
    email: Mapped[str | None] = mapped_column(String(254))
    source: Mapped[str | None] = mapped_column(String(100))
    region: Mapped[str | None] = mapped_column(String(100))
    product: Mapped[str | None] = mapped_column(String(100))
    stage: Mapped[str] = mapped_column(String(16), default="new")
    lost_reason: Mapped[str | None] = mapped_column(String(500))
    is_customer: Mapped[bool] = mapped_column(Boolean, default=False)
    owner_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("core_user.id", ondelete="SET NULL")
    )
    team_id: Mapped[int | None] = mapped_column(BigId)
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    assigned_at: Mapped[datetime | None]
    stage_changed_at: Mapped[datetime]
    last_activity_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(Integer, default=1)

    # The ORM identity stays ``id`` (the table's key is (tenant_id, id): TenantScoped).
    __mapper_args__ = {"version_id_col": version, "primary_key": [id]}


class Touch(TenantScoped, Base):
    """One raw submission of a lead, kept whole with its attribution.

    ``idempotency_key`` (an external id or an ``Idempotency-Key`` header) is
    unique per tenant, so a retried submission is recognised, not re-applied.
    """

    __tablename__ = "core_touch"
    __table_args__ = (
        tenant_key(["lead_id"], "core_lead", ondelete="CASCADE"),
        Index("ix_core_touch_lead", "tenant_id", "lead_id", "id"),
        Index(
            "uq_core_touch_idempotency",
            "tenant_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
            sqlite_where=text("idempotency_key IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lead_id: Mapped[int] = mapped_column(BigId)
    channel: Mapped[str | None] = mapped_column(String(100))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str | None] = mapped_column(String(100))
    utm_source: Mapped[str | None] = mapped_column(String(200))
    utm_medium: Mapped[str | None] = mapped_column(String(200))
    utm_campaign: Mapped[str | None] = mapped_column(String(200))
    utm_term: Mapped[str | None] = mapped_column(String(200))
    utm_content: Mapped[str | None] = mapped_column(String(200))
    click_id: Mapped[str | None] = mapped_column(String(200))
    merged: Mapped[bool] = mapped_column(Boolean, default=False)
    raw: Mapped[dict[str, Any]] = mapped_column(default=dict)
    received_at: Mapped[datetime]


class Activity(TenantScoped, Base):
    """A follow-up logged on a lead (call, message, visit, note …) by a user."""

    __tablename__ = "core_activity"
    __table_args__ = (
        tenant_key(["lead_id"], "core_lead", ondelete="CASCADE"),
        Index("ix_core_activity_lead", "tenant_id", "lead_id", "id"),
        CheckConstraint(
            "kind IN ('call','note','visit','wechat','sms','meeting','email')", name="kind"
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lead_id: Mapped[int] = mapped_column(BigId)
    user_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("core_user.id", ondelete="SET NULL")
    )
    kind: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    occurred_at: Mapped[datetime]
    created_at: Mapped[datetime]


class OwnershipChange(TenantScoped, Base):
    """Append-only ledger: every change of a lead's owner, with its reason.

    ``reason`` is the kind of change (``created``, ``manual``, ``routing``,
    ``released``, ``claimed``, ``recycled``, ``handoff`` …); ``rule`` names the
    rule or plugin that decided; ``detail`` is the explanation (candidates
    considered, why others were skipped). On PostgreSQL a trigger refuses
    UPDATE and DELETE.
    """

    __tablename__ = "core_ownership_change"
    __table_args__ = (
        tenant_key(["lead_id"], "core_lead", ondelete="CASCADE"),
        Index("ix_core_ownership_change_lead", "tenant_id", "lead_id", "id"),
        Index("ix_core_ownership_change_to", "tenant_id", "to_user_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lead_id: Mapped[int] = mapped_column(BigId)
    from_user_id: Mapped[int | None] = mapped_column(BigId)
    to_user_id: Mapped[int | None] = mapped_column(BigId)
    from_team_id: Mapped[int | None] = mapped_column(BigId)
    to_team_id: Mapped[int | None] = mapped_column(BigId)
    reason: Mapped[str] = mapped_column(String(32))
    rule: Mapped[str | None] = mapped_column(String(200))
    note: Mapped[str] = mapped_column(String(1000), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    actor_id: Mapped[int | None] = mapped_column(BigId)
    at: Mapped[datetime]


class StageChange(TenantScoped, Base):
    """Append-only history of stage moves."""

    __tablename__ = "core_stage_change"
    __table_args__ = (tenant_key(["lead_id"], "core_lead", ondelete="CASCADE"), Index("ix_core_stage_change_lead", "tenant_id", "lead_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lead_id: Mapped[int] = mapped_column(BigId)
    old: Mapped[str | None] = mapped_column(String(16))
    new: Mapped[str] = mapped_column(String(16))
    lost_reason: Mapped[str | None] = mapped_column(String(500))
    actor_id: Mapped[int | None] = mapped_column(BigId)
    at: Mapped[datetime]
