"""The tables of ``conversions``: ad accounts, rules, the conversion outbox, and spend.

An :class:`Account` is where conversions go (an adapter and its credentials);
a :class:`Rule` says which lifecycle moment of which channel's leads is
reported to that account, under which event type; a :class:`Conversion` is
one (lead, rule) to report, and the database holds it to once: its business
key ``(tenant_id, rule_id, lead_id)`` is unique, so events delivered twice,
two workers or a retried job can never make a second row. :class:`Spend` is
what a campaign cost on a day, uploaded as CSV for the funnel report.

Foreign keys among these tables carry ``tenant_id`` (a rule cannot point at
another tenant's account); those to core tables are single-column.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from pelago.plugin import Base, BigId, EncryptedString, TenantScoped, tenant_key

#: The lifecycle moments a rule may report. ``valid_lead``: a lead created (a
#: submission merged into an existing lead is a duplicate and never counts);
#: ``first_contact``: the first follow-up a user logged (automatic activities do
#: not count); ``qualified``: the lead reached stage ``qualified``;
#: ``deal_won``: its first won deal, with the deal's value.
MOMENTS = ("valid_lead", "first_contact", "qualified", "deal_won")
#: Where a conversion is: ``queued`` (waiting, maybe for a retry), ``sending``
#: (a worker holds its lease), then one of the ends: ``accepted`` (the platform
#: said so), ``sent`` (delivered, the answer says no more), ``rejected`` (the
#: platform's message kept; not retried unless a user asks), ``expired`` (the
#: click was older than the window: never sent), ``in_doubt`` (a worker died
#: mid-send and the platform cannot be asked; a user decides), ``failed``
#: (every attempt met a transient error).
STATUSES = ("queued", "sending", "sent", "accepted", "rejected", "expired", "in_doubt", "failed")
FINAL = ("sent", "accepted", "rejected", "expired", "in_doubt", "failed")


class Account(TenantScoped, Base):
    """An ad platform account conversions are sent to: its adapter, endpoint and credentials.

    ``config`` holds the adapter's non-secret fields (an advertiser id, a
    generic endpoint's extra headers); ``secret`` the token or signing key,
    encrypted at rest and never shown. ``in_doubt``: what a worker does with a
    conversion whose sender died mid-request, ``hold`` (mark it ``in_doubt``
    for a user) or ``resend`` (send it again with the same idempotency key,
    for platforms that deduplicate on it).
    """

    __tablename__ = "conversions_account"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        CheckConstraint("in_doubt IN ('hold','resend')", name="in_doubt"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    adapter: Mapped[str] = mapped_column(String(40))
    url: Mapped[str] = mapped_column(String(500), default="")
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    secret: Mapped[str] = mapped_column(EncryptedString, default="")
    in_doubt: Mapped[str] = mapped_column(String(8), default="hold")
    created_at: Mapped[datetime]


class Rule(TenantScoped, Base):
    """Which moment of which channel's leads is reported to an account, and as what.

    A lead matches when one of its touches came from ``channel`` (the touch's
    channel, or its source when ``match`` is ``source``) and carries a click
    id under ``click_key``: ``click_id`` (the touch's column) or a dotted path
    into the raw submission (``ad.callback``). ``touch`` picks the click when
    a merged lead has several: its ``first`` or ``last`` matching touch. A
    click older than ``window_days`` when the moment happens is expired.
    """

    __tablename__ = "conversions_rule"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        ForeignKeyConstraint(
            ["tenant_id", "account_id"], ["conversions_account.tenant_id", "conversions_account.id"],
            ondelete="CASCADE",
        ),
        Index("ix_conversions_rule_account", "tenant_id", "account_id"),
        CheckConstraint("window_days >= 1", name="window_positive"),
        CheckConstraint("touch IN ('first','last')", name="touch"),
        CheckConstraint("match IN ('channel','source')", name="match"),
        CheckConstraint("moment IN ('valid_lead','first_contact','qualified','deal_won')", name="moment"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    account_id: Mapped[int] = mapped_column(BigId)
    match: Mapped[str] = mapped_column(String(8), default="channel")
    channel: Mapped[str] = mapped_column(String(100))
    moment: Mapped[str] = mapped_column(String(16))
    event_type: Mapped[str] = mapped_column(String(100))
    window_days: Mapped[int] = mapped_column(Integer, default=30)
    click_key: Mapped[str] = mapped_column(String(100), default="click_id")
    touch: Mapped[str] = mapped_column(String(8), default="last")
    send_value: Mapped[bool] = mapped_column(Boolean, default=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]


class Conversion(TenantScoped, Base):
    """One (lead, rule) to report: the outbox row, unique per business key.

    ``status`` moves forward only by conditional UPDATEs (see :mod:`.sending`):
    a worker claims a due row with a lease (``lease_token`` and
    ``lease_until``) and only the holder of that lease may record the answer.
    ``dispatched_at`` is set (and committed) just before the request leaves:
    a row whose lease ran out without it never reached the platform and is
    simply sent again; with it, the platform may have it (``in_doubt``).
    ``value``: the deal's amount net of refunds at send time (``deal_won``).
    """

    __tablename__ = "conversions_conversion"
    __table_args__ = (
        tenant_key(["lead_id"], "core_lead", ondelete="CASCADE"),
        tenant_key(["touch_id"], "core_touch", ondelete="SET NULL"),
        tenant_key(["deal_id"], "core_deal", ondelete="SET NULL"),
        UniqueConstraint("tenant_id", "rule_id", "lead_id"),
        ForeignKeyConstraint(
            ["tenant_id", "rule_id"], ["conversions_rule.tenant_id", "conversions_rule.id"], ondelete="CASCADE",
        ),
        Index("ix_conversions_conversion_due", "tenant_id", "status", "next_attempt_at"),
        Index("ix_conversions_conversion_lead", "tenant_id", "lead_id"),
        CheckConstraint(
            "status IN ('queued','sending','sent','accepted','rejected','expired','in_doubt','failed')",
            name="status",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    rule_id: Mapped[int] = mapped_column(BigId)
    lead_id: Mapped[int] = mapped_column(BigId)
    touch_id: Mapped[int | None] = mapped_column(BigId)
    deal_id: Mapped[int | None] = mapped_column(BigId)
    channel: Mapped[str] = mapped_column(String(100))
    moment: Mapped[str] = mapped_column(String(16))
    event_type: Mapped[str] = mapped_column(String(100))
    click_id: Mapped[str] = mapped_column(String(500))
    clicked_at: Mapped[datetime]
    occurred_at: Mapped[datetime]
    value: Mapped[Decimal | None]
    currency: Mapped[str | None] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    lease_token: Mapped[str | None] = mapped_column(String(40))
    lease_until: Mapped[datetime | None]
    dispatched_at: Mapped[datetime | None]
    message: Mapped[str] = mapped_column(String(1000), default="")
    answer_status: Mapped[int | None] = mapped_column(Integer)
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Spend(TenantScoped, Base):
    """What a channel's campaign cost on one day of the tenant's calendar (from a CSV upload)."""

    __tablename__ = "conversions_spend"
    __table_args__ = (
        UniqueConstraint("tenant_id", "day", "channel", "campaign"),
        CheckConstraint("amount >= 0", name="amount_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    channel: Mapped[str] = mapped_column(String(100))
    campaign: Mapped[str] = mapped_column(String(200), default="")
    amount: Mapped[Decimal]
    uploaded_at: Mapped[datetime]
