"""The web console's sign-in sessions (issue 13).

A browser holds only a random token; the row stores ``sha256(token)``, so a
copy of the table signs nobody in. Like :class:`~.tenancy.ApiKey` it is read
*before* the tenant is known, so it is not :class:`TenantScoped`; its
``tenant_id`` mirrors the user's and is what the console trusts.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base, BigId


class ConsoleSession(Base):
    """One signed-in browser: who, until when, and the CSRF token of its forms."""

    __tablename__ = "core_console_session"
    __table_args__ = (
        Index("ix_core_console_session_user", "user_id"),
        Index("ix_core_console_session_expires", "expires_at"),
        {"info": {"tenant_reference": "found by its cookie's token on every console request, before the tenant is known"}},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    tenant_id: Mapped[int] = mapped_column(BigId, ForeignKey("core_tenant.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("core_user.id", ondelete="CASCADE"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    locale: Mapped[str | None] = mapped_column(String(8))  # the user's choice; None = the tenant's default
    notice: Mapped[str | None] = mapped_column(String(1000))  # shown once on the next page (after a redirect)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]


__all__ = ["ConsoleSession"]
