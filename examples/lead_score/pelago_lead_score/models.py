"""The plugin's one table: a score per lead, keyed by the core lead's id.

A plugin extends a core entity with its own table keyed by that entity's id,
never by altering core tables. The table is prefixed with the plugin's name
and carries ``tenant_id`` (through :class:`~pelago.plugin.TenantScoped`), so a
tenant session's ORM queries only ever see the tenant's own scores.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer
from sqlalchemy.orm import Mapped, mapped_column

from pelago.plugin import Base, BigId, TenantScoped, tenant_key


class LeadScore(TenantScoped, Base):
    """The current score of one lead: recomputed from scratch, never incremented.

    ``oldest_activity_at`` is the oldest activity still inside the scoring
    window (``None`` if none counts); once it leaves the window the score must
    go down, which is how the daily job finds the scores to decay.
    """

    __tablename__ = "lead_score_score"
    __table_args__ = (
        tenant_key(["lead_id"], "core_lead", ondelete="CASCADE"),
        # GET /top: WHERE tenant_id = ? ORDER BY score DESC, lead_id DESC LIMIT n
        Index("ix_lead_score_score_top", "tenant_id", "score", "lead_id"),
        # the decay job: WHERE tenant_id = ? AND oldest_activity_at < ?
        Index("ix_lead_score_score_oldest", "tenant_id", "oldest_activity_at"),
    )

    lead_id: Mapped[int] = mapped_column(
        BigId, primary_key=True, autoincrement=False
    )
    score: Mapped[int] = mapped_column(Integer)
    activities: Mapped[int] = mapped_column(Integer, default=0)
    oldest_activity_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]
