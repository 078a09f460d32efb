"""Routing as a tenant configures and questions it: settings, rules, preview, hand-off.

The engine itself is :mod:`pelago.core.routing`; this module is what the API
and the deal flow call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from ..context import HookContext
from ..db import flush_or_conflict
from ..errors import InvalidInput, NotFound
from ..models import RULE_FIELDS, Lead, RoutingRule, RoutingSettings, Team
from ..phones import BadPhone, normalise
from ..routing import LeadInfo, route

# --- settings -------------------------------------------------------------------


def get_settings(ctx: HookContext) -> RoutingSettings:
    """The tenant's routing settings; a tenant that never saved any gets the defaults (all off)."""
    row = ctx.session.get(RoutingSettings, ctx.tenant.id)
    if row is None:
        row = RoutingSettings(
            tenant_id=ctx.tenant.id, auto_routing=False, default_team_id=None, handoff_enabled=False,
            repurchase_team_id=None, updated_at=ctx.now(),
        )
    return row


def update_settings(ctx: HookContext, data: Mapping[str, Any]) -> RoutingSettings:
    for name in ("default_team_id", "repurchase_team_id"):
        if data.get(name) is not None:
            _team(ctx, data[name], name)
    row = get_settings(ctx)
    for name in ("auto_routing", "default_team_id", "handoff_enabled", "repurchase_team_id"):
        if name in data:
            setattr(row, name, data[name])
    if row.handoff_enabled and row.repurchase_team_id is None:
        raise InvalidInput("hand-off needs a repurchase team",
                           {"repurchase_team_id": ["required when handoff_enabled is true"]})
    row.updated_at = ctx.now()
    ctx.session.merge(row)
    ctx.session.flush()
    return row


# --- rules ------------------------------------------------------------------------


def list_rules(ctx: HookContext) -> list[RoutingRule]:
    return list(ctx.session.scalars(select(RoutingRule).order_by(RoutingRule.priority, RoutingRule.id)))


def get_rule(ctx: HookContext, rule_id: int) -> RoutingRule:
    rule = ctx.session.get(RoutingRule, rule_id)
    if rule is None:
        raise NotFound(f"routing rule {rule_id} not found")
    return rule


def save_rule(ctx: HookContext, data: Mapping[str, Any], rule: RoutingRule | None = None) -> RoutingRule:
    """Create (``rule=None``) or change a rule; its team must be one of the tenant's."""
    if "team_id" in data:
        _team(ctx, data["team_id"], "team_id")
    if "match" in data:
        unknown = set(data["match"]) - set(RULE_FIELDS)
        if unknown:
            raise InvalidInput("unknown match field", {"match": [f"unknown: {', '.join(sorted(unknown))}"]})
    if rule is None:
        rule = RoutingRule(created_at=ctx.now(), active=True, priority=100, match={})
        ctx.session.add(rule)
    for name in ("name", "priority", "active", "match", "team_id"):
        if name in data:
            setattr(rule, name, data[name])
    flush_or_conflict(ctx.session, "a rule with that name exists", {"name": ["already taken"]})
    return rule


def delete_rule(ctx: HookContext, rule: RoutingRule) -> None:
    ctx.session.delete(rule)
    ctx.session.flush()


def _team(ctx: HookContext, team_id: int, field: str) -> Team:
    team = ctx.session.get(Team, team_id)
    if team is None:
        raise InvalidInput("unknown team", {field: [f"no team {team_id} in this tenant"]})
    return team


# --- preview ----------------------------------------------------------------------


def preview(ctx: HookContext, data: Mapping[str, Any]) -> dict[str, Any]:
    """What routing would decide for a hypothetical lead, and whether it would merge instead.

    Runs the real engine inside a savepoint that is rolled back, so plugins
    answer as they would on intake and nothing (not even the round-robin
    pointer) is written.
    """
    phone = data.get("phone")
    if phone:
        try:
            phone = normalise(str(phone), ctx.tenant.default_region)
        except BadPhone as exc:
            raise InvalidInput("invalid phone", {"phone": [str(exc)]}) from None
    email = (data.get("email") or "").strip().lower() or None
    if data.get("team_id") is not None:
        _team(ctx, data["team_id"], "team_id")
    duplicate = None
    if phone:
        duplicate = ctx.session.scalar(select(Lead.id).where(Lead.phone == phone))
    elif email:
        duplicate = ctx.session.scalar(select(Lead.id).where(Lead.email == email).order_by(Lead.id).limit(1))
    info = LeadInfo(
        None, data.get("name") or "", phone, email, data.get("source"), data.get("region"),
        data.get("product"), data.get("channel"), dict(data.get("attributes") or {}), data.get("team_id"),
    )
    savepoint = ctx.session.begin_nested()
    try:
        decision = route(ctx, [info], reason="preview")[0]
    finally:
        savepoint.rollback()
    return {
        "duplicate_of": duplicate,
        "team_id": decision.team_id,
        "owner_id": decision.owner_id,
        "rule": decision.rule,
        "explanation": decision.explanation,
    }


# --- hand-off ---------------------------------------------------------------------


def handoff_if_due(ctx: HookContext, lead: Lead, kind: str) -> None:
    """After a first purchase, move the customer to the repurchase team, if the tenant says so.

    A locked lead is never moved by a rule. With no eligible rep in the
    repurchase team the customer stays where it is, and the ledger says why.
    """
    if kind != "first_purchase" or lead.locked:
        return
    settings = ctx.session.get(RoutingSettings, ctx.tenant.id)
    if settings is None or not settings.handoff_enabled or settings.repurchase_team_id is None:
        return
    if lead.team_id == settings.repurchase_team_id:
        return
    from dataclasses import replace

    from .leads import record_decision

    info = replace(LeadInfo.of(lead), team_id=settings.repurchase_team_id)
    decision = route(ctx, [info], reason="handoff")[0]
    decision.explanation["handoff"] = {"from_team_id": lead.team_id, "to_team_id": settings.repurchase_team_id}
    record_decision(ctx, lead, decision, reason="handoff")
