"""The privacy audit: who exported or erased whose data, and when (append-only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base, BigId, JsonDoc, TenantScoped

PRIVACY_ACTIONS = ("export", "erase")


class PrivacyAudit(TenantScoped, Base):
    """One privacy request carried out: an export or an erasure of a person, by whom, about which leads.

    The person is kept only as ``subject_hash``, the SHA-256 of a random
    per-row ``subject_salt`` and the normalised phone or email, never in
    clear: after an erasure the audit must not hold what was erased. Whoever
    knows the phone can still check a row (``services.privacy.subject_matches``).
    On PostgreSQL a trigger refuses UPDATE and DELETE (migration ``0008``).
    """

    __tablename__ = "core_privacy_audit"
    __table_args__ = (
        CheckConstraint("action IN ('export','erase')", name="action"),
        CheckConstraint("subject_kind IN ('phone','email')", name="subject_kind"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    action: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[int | None] = mapped_column(BigId)  # the user; None for an operator's CLI command
    actor: Mapped[str] = mapped_column(String(254))  # the user's email, or "cli"
    subject_kind: Mapped[str] = mapped_column(String(8))
    subject_salt: Mapped[str] = mapped_column(String(32))
    subject_hash: Mapped[str] = mapped_column(String(64))
    lead_ids: Mapped[list[Any]] = mapped_column(JsonDoc, default=list)
    reason: Mapped[str] = mapped_column(String(500), default="")
    at: Mapped[datetime]
