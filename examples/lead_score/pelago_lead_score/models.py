"""The plugin's one table: a score per lead, keyed by the core lead's id.

A plugin extends a core entity with its own table keyed by that entity's id,
never by altering core tables. The table is prefixed with the plugin's name
and carries ``tenant_id`` (through :class:`~pelago.core.db.TenantScoped`), so a
tenant session's ORM queries only ever see the tenant's own scores.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer
from sqlalchemy.orm import Mapped, mapped_column

from pelago.core.db import Base, BigId, TenantScoped


class LeadScore(TenantScoped, Base):
    """The current score of one lead. Recomputed from scratch, never incremented."""

    __tablename__ = "lead_score_score"
    __table_args__ = (
        # GET /top: ORDER BY score DESC, lead_id DESC LIMIT n within a tenant.
        Index("ix_lead_score_score_top", "tenant_id", "score", "lead_id"),
    )

    lead_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("core_lead.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    score: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime]
