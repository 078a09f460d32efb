"""The tables of ``sms_nurture``: sequences, steps, templates, enrolments, the outbox, phones.

Every table is tenant-scoped; the plugin's own foreign keys carry the tenant
(``UniqueConstraint(tenant_id, id)`` on the parent, a composite foreign key on
the child), so a row can never point at another tenant's row. Keys to core
tables are single-column, like the pool's. The invariants the dispatch relies
on are the database's: one enrolment per (lead, sequence, pass), one active
enrolment per (lead, sequence), one outbox row per (enrolment, step) with a
unique idempotency key (our id, which the provider sees).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Date,
    ForeignKeyConstraint,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from pelago.plugin import Base, BigId, JsonDoc, TenantScoped, tenant_key

#: statuses of an outbox row and their rank: a status only ever moves to a higher rank
RANK = {"queued": 0, "sending": 1, "sent": 2, "delivered": 3, "failed": 3, "skipped": 3, "dropped": 3}
OPEN = ("queued", "sending")


class Template(TenantScoped, Base):
    """A message text with ``{variables}``; ``provider_template_id`` for gateways that need approved templates."""

    __tablename__ = "sms_nurture_template"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(String(1000))
    provider_template_id: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SmsSequence(TenantScoped, Base):
    """Ordered steps sent to enrolled leads; ``trigger`` says who is enrolled automatically."""

    __tablename__ = "sms_nurture_sequence"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        Index("ix_sms_nurture_sequence_trigger", "tenant_id", "status", "trigger"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | paused
    trigger: Mapped[str] = mapped_column(String(32), default="manual")
    trigger_hours: Mapped[int | None] = mapped_column(Integer)
    trigger_reasons: Mapped[list[Any]] = mapped_column(JsonDoc, default=list)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Step(TenantScoped, Base):
    """One step: a template, a delay after enrolment or after the previous step, an optional window."""

    __tablename__ = "sms_nurture_step"
    __table_args__ = (
        UniqueConstraint("tenant_id", "sequence_id", "position"),
        ForeignKeyConstraint(["tenant_id", "sequence_id"], ["sms_nurture_sequence.tenant_id", "sms_nurture_sequence.id"],
                             ondelete="CASCADE"),
        ForeignKeyConstraint(["tenant_id", "template_id"], ["sms_nurture_template.tenant_id", "sms_nurture_template.id"]),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    sequence_id: Mapped[int] = mapped_column(BigId)
    position: Mapped[int] = mapped_column(Integer)
    template_id: Mapped[int] = mapped_column(BigId)
    delay_minutes: Mapped[int] = mapped_column(Integer)
    delay_from: Mapped[str] = mapped_column(String(16), default="previous")  # enrolment | previous
    window_start: Mapped[str | None] = mapped_column(String(5))
    window_end: Mapped[str | None] = mapped_column(String(5))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Enrolment(TenantScoped, Base):
    """A lead in a sequence, for one pass. ``next_position``/``next_due_at``: the step to plan next."""

    __tablename__ = "sms_nurture_enrolment"
    __table_args__ = (
        tenant_key(["lead_id"], "core_lead", ondelete="CASCADE"),
        UniqueConstraint("tenant_id", "lead_id", "sequence_id", "pass_key", name="uq_sms_nurture_enrolment_pass"),
        Index("uq_sms_nurture_enrolment_active", "tenant_id", "lead_id", "sequence_id", unique=True,
              postgresql_where=text("status = 'active'"), sqlite_where=text("status = 'active'")),
        Index("ix_sms_nurture_enrolment_due", "tenant_id", "next_due_at",
              postgresql_where=text("status = 'active'"), sqlite_where=text("status = 'active'")),
        Index("ix_sms_nurture_enrolment_sequence", "tenant_id", "sequence_id", "id"),
        ForeignKeyConstraint(["tenant_id", "sequence_id"], ["sms_nurture_sequence.tenant_id", "sms_nurture_sequence.id"],
                             ondelete="CASCADE"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lead_id: Mapped[int] = mapped_column(BigId)
    sequence_id: Mapped[int] = mapped_column(BigId)
    pass_key: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | exited | completed
    reason: Mapped[str | None] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(32))
    enrolled_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    next_position: Mapped[int] = mapped_column(Integer, default=1)
    next_due_at: Mapped[datetime | None]


class Message(TenantScoped, Base):
    """The outbox: one row per (enrolment, step), whose ``our_id`` is the idempotency key the provider sees.

    ``status`` moves forward only (:data:`RANK`), by conditional updates.
    ``sending`` rows carry a lease; one whose lease ran out is reconciled by
    asking the provider about ``our_id``, never sent again blindly.
    """

    __tablename__ = "sms_nurture_message"
    __table_args__ = (
        tenant_key(["lead_id"], "core_lead", ondelete="CASCADE"),
        UniqueConstraint("tenant_id", "enrolment_id", "step_id"),
        UniqueConstraint("tenant_id", "our_id"),
        Index("ix_sms_nurture_message_due", "tenant_id", "due_at",
              postgresql_where=text("status = 'queued'"), sqlite_where=text("status = 'queued'")),
        Index("ix_sms_nurture_message_lease", "tenant_id", "lease_until",
              postgresql_where=text("status = 'sending'"), sqlite_where=text("status = 'sending'")),
        Index("ix_sms_nurture_message_phone", "tenant_id", "phone", "capped_on"),
        Index("ix_sms_nurture_message_lead", "tenant_id", "lead_id", "id"),
        Index("ix_sms_nurture_message_sequence", "tenant_id", "sequence_id", "id"),
        Index("ix_sms_nurture_message_provider", "tenant_id", "provider_id"),
        Index("ix_sms_nurture_message_planned", "tenant_id", "planned_at"),
        ForeignKeyConstraint(["tenant_id", "enrolment_id"], ["sms_nurture_enrolment.tenant_id", "sms_nurture_enrolment.id"],
                             ondelete="CASCADE"),
        ForeignKeyConstraint(["tenant_id", "step_id"], ["sms_nurture_step.tenant_id", "sms_nurture_step.id"],
                             ondelete="CASCADE"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    our_id: Mapped[str] = mapped_column(String(64))
    enrolment_id: Mapped[int] = mapped_column(BigId)
    step_id: Mapped[int] = mapped_column(BigId)
    sequence_id: Mapped[int] = mapped_column(BigId)
    lead_id: Mapped[int] = mapped_column(BigId)
    phone: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    rank: Mapped[int] = mapped_column(SmallInteger, default=0)
    reason: Mapped[str | None] = mapped_column(String(200))
    planned_at: Mapped[datetime]
    due_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    body: Mapped[str | None] = mapped_column(Text)
    segments: Mapped[int | None] = mapped_column(SmallInteger)
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_id: Mapped[str | None] = mapped_column(String(100))
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    claimed_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    capped_on: Mapped[date | None] = mapped_column(Date)
    sent_at: Mapped[datetime | None]
    final_at: Mapped[datetime | None]


class Phone(TenantScoped, Base):
    """What the tenant knows of one phone number: consent and suppression, with their evidence."""

    __tablename__ = "sms_nurture_phone"
    __table_args__ = (
        UniqueConstraint("tenant_id", "phone"),
        Index("ix_sms_nurture_phone_suppressed", "tenant_id", "suppressed_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    phone: Mapped[str] = mapped_column(String(20))
    consent_at: Mapped[datetime | None]
    consent_source: Mapped[str | None] = mapped_column(String(100))
    consent_text: Mapped[str | None] = mapped_column(String(1000))
    suppressed_at: Mapped[datetime | None]
    suppressed_source: Mapped[str | None] = mapped_column(String(100))
    suppressed_text: Mapped[str | None] = mapped_column(String(1000))


class Evidence(TenantScoped, Base):
    """Append-only: every consent, suppression and removal of a suppression, with who and what."""

    __tablename__ = "sms_nurture_evidence"
    __table_args__ = (Index("ix_sms_nurture_evidence_phone", "tenant_id", "phone", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    phone: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(16))  # consent | suppress | unsuppress
    source: Mapped[str] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(String(1000), default="")
    at: Mapped[datetime]
    user_id: Mapped[int | None] = mapped_column(BigId)


class Inbound(TenantScoped, Base):
    """A reply received from a phone (what it said, and what it did: exit, opt-out)."""

    __tablename__ = "sms_nurture_inbound"
    __table_args__ = (Index("ix_sms_nurture_inbound_phone", "tenant_id", "phone", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    phone: Mapped[str] = mapped_column(String(20))
    text: Mapped[str] = mapped_column(String(1000))
    received_at: Mapped[datetime]
    opt_out: Mapped[bool] = mapped_column(Boolean, default=False)


class LogSent(TenantScoped, Base):
    """What the ``log`` provider "sent": one row per our id (its own idempotency), read back by its query."""

    __tablename__ = "sms_nurture_log_sent"
    __table_args__ = (UniqueConstraint("tenant_id", "our_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    our_id: Mapped[str] = mapped_column(String(64))
    phone: Mapped[str] = mapped_column(String(20))
    body: Mapped[str] = mapped_column(Text)
    sent_at: Mapped[datetime]


class Salt(TenantScoped, Base):
    """The tenant's secret key for :class:`ErasedSuppression` (made on first use, never shown)."""

    __tablename__ = "sms_nurture_salt"
    __table_args__ = (UniqueConstraint("tenant_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    salt: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class ErasedSuppression(TenantScoped, Base):
    """A suppressed phone of an erased person, kept only as HMAC-SHA256(tenant's salt, E.164 number).

    The dispatch checks it at the moment of sending, so the person is never
    texted again, without the tenant holding the number.
    """

    __tablename__ = "sms_nurture_erased_suppression"
    __table_args__ = (UniqueConstraint("tenant_id", "phone_hash"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    phone_hash: Mapped[str] = mapped_column(String(64))
    suppressed_at: Mapped[datetime]
    erased_at: Mapped[datetime]
