"""Won deals and their refunds. Money is ``Decimal``; refunds never edit a deal."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base, BigId, TenantScoped, tenant_key

DEAL_KINDS = ("first_purchase", "repurchase")


class Deal(TenantScoped, Base):
    """A won deal. ``refunded`` is the running total of its refunds.

    A refund is one conditional UPDATE (``refunded + x <= amount``) plus its
    :class:`Refund` row, and a CHECK keeps ``refunded`` within ``amount``, so
    concurrent refunds can never return more than was paid.
    """

    __tablename__ = "core_deal"
    __table_args__ = (
        tenant_key(["lead_id"], "core_lead", ondelete="RESTRICT"),
        tenant_key(["team_id"], "core_team", ondelete="SET NULL"),
        Index("ix_core_deal_lead", "tenant_id", "lead_id"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("refunded >= 0 AND refunded <= amount", name="refund_within_amount"),
        CheckConstraint("kind IN ('first_purchase','repurchase')", name="kind"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lead_id: Mapped[int] = mapped_column(BigId)
    owner_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("core_user.id", ondelete="SET NULL")
    )
    team_id: Mapped[int | None] = mapped_column(BigId)
    amount: Mapped[Decimal]
    refunded: Mapped[Decimal] = mapped_column(default=Decimal("0.00"))
    currency: Mapped[str] = mapped_column(String(3))
    product: Mapped[str] = mapped_column(String(200), default="")
    kind: Mapped[str] = mapped_column(String(16))
    won_at: Mapped[datetime]
    created_by: Mapped[int | None] = mapped_column(BigId)


class Refund(TenantScoped, Base):
    """A refund: a new negative entry against a deal, never an edit of it."""

    __tablename__ = "core_refund"
    __table_args__ = (
        tenant_key(["deal_id"], "core_deal", ondelete="RESTRICT"),
        Index("ix_core_refund_deal", "tenant_id", "deal_id", "id"),
        CheckConstraint("amount > 0", name="amount_positive"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    deal_id: Mapped[int] = mapped_column(BigId)
    amount: Mapped[Decimal]
    reason: Mapped[str] = mapped_column(String(500))
    created_by: Mapped[int | None] = mapped_column(BigId)
    created_at: Mapped[datetime]
