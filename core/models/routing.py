"""How a tenant routes new leads: its switches and its team-choosing rules."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base, BigId, TenantScoped, tenant_key

RULE_FIELDS = ("channel", "source", "region", "product")


class RoutingSettings(TenantScoped, Base):
    """One row per tenant; no row means the defaults (everything off)."""

    __tablename__ = "core_routing_settings"
    __table_args__ = (tenant_key(["default_team_id"], "core_team", ondelete="SET NULL"), tenant_key(["repurchase_team_id"], "core_team", ondelete="SET NULL"),)

    tenant_id: Mapped[int] = mapped_column(  # type: ignore[assignment]
        BigId, ForeignKey("core_tenant.id", ondelete="CASCADE"), primary_key=True
    )
    auto_routing: Mapped[bool] = mapped_column(Boolean, default=False)
    default_team_id: Mapped[int | None] = mapped_column(BigId)
    handoff_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    repurchase_team_id: Mapped[int | None] = mapped_column(BigId)
    updated_at: Mapped[datetime]


class RoutingVersion(TenantScoped, Base):
    """The version of the tenant's routing configuration; no row means version 0.

    Bumped in the transaction of every change to the tenant's routing
    settings, rules, teams or users (the ``before_flush`` listener of
    :mod:`pelago.core.db`), so a process's cached configuration
    (:mod:`pelago.core.routing_config`) is never used past the edit's commit.
    """

    __tablename__ = "core_routing_version"

    tenant_id: Mapped[int] = mapped_column(  # type: ignore[assignment]
        BigId, ForeignKey("core_tenant.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class RoutingRule(TenantScoped, Base):
    """"Leads matching ``match`` go to ``team_id``"; the lowest ``priority`` wins.

    ``match`` maps any of channel, source, region, product to a list of
    accepted values: every key given must match (AND), any value of a key may
    (OR); an empty ``match`` matches every lead.
    """

    __tablename__ = "core_routing_rule"
    __table_args__ = (
        tenant_key(["team_id"], "core_team", ondelete="CASCADE"),
        UniqueConstraint("tenant_id", "name"),
        Index("ix_core_routing_rule_order", "tenant_id", "priority", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    priority: Mapped[int] = mapped_column(Integer, default=100)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    match: Mapped[dict[str, Any]] = mapped_column(default=dict)
    team_id: Mapped[int] = mapped_column(BigId)
    created_at: Mapped[datetime]
