"""Where leads come from in bulk or from outside: webhook channels and CSV imports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, deferred, mapped_column

from ..crypto import EncryptedString
from ..db import Base, BigId, TenantScoped, tenant_key

IMPORT_STATES = ("queued", "running", "done", "failed")
SUBMISSION_STATES = ("accepted", "processed", "failed")


class Channel(TenantScoped, Base):
    """A source that posts leads to ``POST /api/v1/intake/<key>``, signed with ``secret``.

    ``key`` is public and unique across the installation (the webhook URL has
    no tenant in it); ``secret`` signs bodies (HMAC-SHA256) and is shown only
    when created or rotated. ``mapping`` says where each lead field sits in
    this channel's payloads (dotted paths), since every ad platform differs.
    """

    __tablename__ = "core_channel"
    __tenant_reference__ = "a webhook finds its channel by the globally unique key in its URL, before the tenant is known"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    secret: Mapped[str] = mapped_column(EncryptedString)  # encrypted at rest (core.crypto)
    mapping: Mapped[dict[str, Any]] = mapped_column(default=dict)
    source: Mapped[str | None] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]


class Import(TenantScoped, Base):
    """A CSV import: the file, its options, and its progress as the job runs."""

    __tablename__ = "core_import"
    __table_args__ = (
        Index("ix_core_import_stalled", "lease_until", postgresql_where=text("status = 'running'"),
              sqlite_where=text("status = 'running'")),
        CheckConstraint("status IN ('queued','running','done','failed')", name="status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    filename: Mapped[str] = mapped_column(String(255), default="")
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes] = deferred(mapped_column(LargeBinary))
    encoding: Mapped[str | None] = mapped_column(String(20))
    mapping: Mapped[dict[str, Any]] = mapped_column(default=dict)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    total_rows: Mapped[int | None] = mapped_column(Integer)
    processed_rows: Mapped[int] = mapped_column(Integer, default=0)
    created_leads: Mapped[int] = mapped_column(Integer, default=0)
    merged_rows: Mapped[int] = mapped_column(Integer, default=0)
    skipped_rows: Mapped[int] = mapped_column(Integer, default=0)
    failed_rows: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(String(1000))
    created_by: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("core_user.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # The worker's lease (``services.imports``): renewed with each batch; expired = the worker died.
    lease_until: Mapped[datetime | None]
    lease_token: Mapped[str | None] = mapped_column(String(32))
    resume_after_row: Mapped[int] = mapped_column(Integer, default=0)  # the last row of the last batch committed
    attempts: Mapped[int] = mapped_column(Integer, default=0)


class ImportError_(TenantScoped, Base):
    """One refused row of an import: row number (1 = first data row), field, message."""

    __tablename__ = "core_import_error"
    __table_args__ = (tenant_key(["import_id"], "core_import", ondelete="CASCADE"), Index("ix_core_import_error_import", "tenant_id", "import_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    import_id: Mapped[int] = mapped_column(BigId)
    row: Mapped[int] = mapped_column(Integer)
    field: Mapped[str] = mapped_column(String(100))
    message: Mapped[str] = mapped_column(String(500))


class StoredSubmission(TenantScoped, Base):
    """One webhook submission as accepted: stored before it is routed (``services.submissions``).

    The webhook answers as soon as this row is committed; a router then takes
    ``accepted`` rows in micro-batches through the intake line and records
    what became of each (``outcome``, ``lead_id``, ``touch_id``). ``key`` is
    the idempotency key, unique per tenant, so a retried external id finds
    the first submission. ``dedupe`` (the normalised phone, else the email)
    keeps the order per phone across routers; ``lease_until``/``lease_token``
    fence a router that died or stalled mid-batch.
    """

    __tablename__ = "core_submission"
    __table_args__ = (
        UniqueConstraint("tenant_id", "key"),
        tenant_key(["lead_id"], "core_lead", ondelete="SET NULL"),
        Index("ix_core_submission_pending", "id", postgresql_where=text("status = 'accepted'"),
              sqlite_where=text("status = 'accepted'")),
        Index("ix_core_submission_dedupe", "tenant_id", "dedupe", "id",
              postgresql_where=text("status = 'accepted'"), sqlite_where=text("status = 'accepted'")),
        Index("ix_core_submission_age", "status", "received_at"),  # the retention sweep (core.retention)
        CheckConstraint("status IN ('accepted','processed','failed')", name="status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("core_channel.id", ondelete="SET NULL"))
    key: Mapped[str] = mapped_column(String(200))
    dedupe: Mapped[str | None] = mapped_column(String(254))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)  # mapped lead fields
    touch: Mapped[dict[str, Any]] = mapped_column(default=dict)  # attribution of the touch to write
    raw: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the payload as received
    status: Mapped[str] = mapped_column(String(16), default="accepted")
    outcome: Mapped[str | None] = mapped_column(String(16))  # created, merged or replayed
    lead_id: Mapped[int | None] = mapped_column(BigId)
    touch_id: Mapped[int | None] = mapped_column(BigId)
    errors: Mapped[dict[str, Any] | None] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None]
    lease_token: Mapped[str | None] = mapped_column(String(32))
    received_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]
