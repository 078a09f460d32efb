"""Who gets a new lead: the decision hooks, called in order, with an explanation.

The steps are hooks (``choose_team``, ``exclude_candidates``, ``choose_owner``)
so any plugin can take one over; the core's own answers live in the built-in
default plugin (``trylast``). :func:`decide` writes nothing, which is what makes
a preview possible; :mod:`pelago.core.services.leads` applies the decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from .context import HookContext
from .models import Lead, Team, User


@dataclass(frozen=True)
class TeamChoice:
    """A ``choose_team`` answer: the team, and why."""

    team_id: int
    reason: str
    rule: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OwnerChoice:
    """A ``choose_owner`` answer. ``user_id=None`` leaves the lead unowned on purpose."""

    user_id: int | None
    reason: str
    rule: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Decision:
    """The outcome of routing one lead, with everything needed to explain it."""

    team_id: int | None
    owner_id: int | None  # None: the lead stays unowned (the explanation says why)
    rule: str | None
    explanation: dict[str, Any]


def candidates_of(ctx: HookContext, team: Team) -> list[User]:
    """Active reps and managers of ``team`` who are not on leave."""
    return list(
        ctx.session.scalars(
            select(User)
            .where(
                User.team_id == team.id,
                User.active.is_(True),
                User.on_leave.is_(False),
                User.role.in_(("rep", "manager")),
            )
            .order_by(User.id)
        )
    )


def decide(ctx: HookContext, lead: Lead) -> Decision:
    """Route ``lead`` (not yet owned) through the hooks of the tenant's plugins."""
    hooks = ctx.hooks
    explanation: dict[str, Any] = {}
    team: Team | None = None
    if lead.team_id is not None:
        team = ctx.session.get(Team, lead.team_id)
        explanation["team"] = {"team_id": lead.team_id, "reason": "given by the caller"}
    else:
        choice = hooks.choose_team(ctx=ctx, lead=lead)
        if choice is not None:
            team = ctx.session.get(Team, choice.team_id)
            explanation["team"] = {
                "team_id": choice.team_id, "reason": choice.reason, "rule": choice.rule,
                **dict(choice.detail),
            }
            if team is None or not team.active:
                why = "does not exist in this tenant" if team is None else "is inactive"
                explanation["team"] = {
                    "team_id": None, "reason": f"{choice.rule or 'a plugin'} chose team {choice.team_id}, which {why}",
                }
                team = None
    if team is None:
        explanation.setdefault("team", {"team_id": None, "reason": "no team chosen"})
        return Decision(None, None, None, explanation)

    candidates = candidates_of(ctx, team)
    excluded: dict[int, str] = {}
    for result in hooks.exclude_candidates(ctx=ctx, lead=lead, team=team, candidates=candidates):
        for user_id, why in (result or {}).items():
            excluded.setdefault(int(user_id), why)
    eligible = [u for u in candidates if u.id not in excluded]
    explanation["candidates"] = [u.id for u in candidates]
    explanation["excluded"] = {str(k): v for k, v in excluded.items()}
    if not eligible:
        explanation["owner"] = {"user_id": None, "reason": "no eligible candidate in the team"}
        return Decision(team.id, None, None, explanation)

    owner = hooks.choose_owner(ctx=ctx, lead=lead, team=team, candidates=eligible)
    if owner is None:
        explanation["owner"] = {"user_id": None, "reason": "no plugin chose an owner"}
        return Decision(team.id, None, None, explanation)
    if owner.user_id is not None and owner.user_id not in {u.id for u in eligible}:
        raise ValueError(f"choose_owner returned user {owner.user_id}, who is not an eligible candidate")
    explanation["owner"] = {
        "user_id": owner.user_id, "reason": owner.reason, "rule": owner.rule, **dict(owner.detail)
    }
    return Decision(team.id, owner.user_id, owner.rule, explanation)
