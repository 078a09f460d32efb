"""Attribution: who gets credit for a deal, by the rule of its situation, as a versioned credit set.

**Situations**, recognised from the deal, the lead and the ownership ledger
(:func:`pelago.plugin.ownership_history`), the first that applies:

1. ``referral``: the lead's ``source`` is one of the settings' ``referral_sources``;
2. ``walk_in``: the lead's first owner's branch is not the closer's (a
   customer of one branch bought in another);
3. ``repurchase``: ``deal.kind`` is ``repurchase``;
4. ``first_purchase``: every other deal.

The rule of the situation in effect at ``won_at`` decides; a situation with
no rule falls back to the rule of the deal's kind (3 or 4), and with none
either, to the built-in "owner at win" (``rule_version`` 0).

**Roles** a rule names: ``closer`` (the owner at win, the deal's
``owner_id``/``team_id``), ``first_owner`` (the first owner in the ledger),
``previous_owner`` (the last owner before the closer who is not the
closer), ``inviter`` (the user named by the lead's ``attributes.inviter_id``,
else the first owner). A role that cannot be resolved falls back to the
closer. A person's branch is the branch of the team she was in at that
step of the ledger (the deal's team for the closer; the current team for an
inviter who never owned the lead); a team in no branch gives the deal's
branch. A deal in no branch at all is not settled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import or_, select

from pelago.plugin import Deal, HookContext, Lead, User, ownership_history

from .models import BranchTeam, Rule
from .shares import Share, split_two_levels

ROLES = ("closer", "first_owner", "previous_owner", "inviter")
OWNER_AT_WIN = ({"role": "closer", "percent": "100"},)
FIRST_OWNER = ({"role": "first_owner", "percent": "100"},)
PLUGIN = "settlement"


@dataclass(frozen=True)
class Person:
    role: str
    user_id: int | None
    team_id: int | None
    branch_id: int | None
    source: str  # where it came from: "deal", "ledger #<change id>", "lead.attributes.inviter_id", "fallback: closer"


@dataclass(frozen=True)
class Attribution:
    situation: str
    rule: Rule | None
    method: str
    lines: dict[tuple[int, int | None], Decimal]
    roles: dict[tuple[int, int | None], list[str]]
    percents: dict[tuple[int, int | None], Decimal]
    inputs: dict[str, Any]


def branch_of_teams(ctx: HookContext, team_ids: set[int | None]) -> dict[int, int]:
    ids = sorted(t for t in team_ids if t is not None)
    if not ids:
        return {}
    return dict(ctx.session.execute(select(BranchTeam.team_id, BranchTeam.branch_id).where(BranchTeam.team_id.in_(ids))).all())


def rule_at(ctx: HookContext, situation: str, at: datetime) -> Rule | None:
    return ctx.session.scalar(
        select(Rule).where(
            Rule.situation == situation, Rule.effective_from <= at,
            or_(Rule.effective_to.is_(None), Rule.effective_to > at),
        )
    )


def people(ctx: HookContext, deal: Deal, lead: Lead) -> dict[str, Person]:
    """The roles of a deal, resolved from the deal, the lead and its ownership ledger up to the win."""
    steps = [s for s in ownership_history(ctx, [deal.lead_id])[deal.lead_id] if s.at <= deal.won_at]
    owned = [s for s in steps if s.to_user_id is not None]
    found: dict[str, tuple[int | None, int | None, str]] = {"closer": (deal.owner_id, deal.team_id, "deal")}
    if owned:
        first = owned[0]
        found["first_owner"] = (first.to_user_id, first.to_team_id, f"ledger #{first.change_id}")
        before = [s for s in owned if s.to_user_id != deal.owner_id]
        if before:
            last = before[-1]
            found["previous_owner"] = (last.to_user_id, last.to_team_id, f"ledger #{last.change_id}")
    inviter = (lead.attributes or {}).get("inviter_id")
    if isinstance(inviter, int) and not isinstance(inviter, bool):
        user = ctx.session.scalar(select(User).where(User.id == inviter))
        if user is not None:
            held = [s for s in owned if s.to_user_id == inviter]
            team = held[-1].to_team_id if held else user.team_id
            found["inviter"] = (inviter, team, "lead.attributes.inviter_id")
    if "inviter" not in found and "first_owner" in found:
        u, t, src = found["first_owner"]
        found["inviter"] = (u, t, f"first owner ({src})")
    branches = branch_of_teams(ctx, {t for _, t, _ in found.values()})
    deal_branch = branches.get(deal.team_id) if deal.team_id is not None else None
    out: dict[str, Person] = {}
    for role in ROLES:
        user, team, src = found.get(role) or (deal.owner_id, deal.team_id, "fallback: closer")
        branch = branches.get(team) if team is not None else None
        out[role] = Person(role, user, team, branch if branch is not None else deal_branch, src)
    return out


def situation_of(ctx: HookContext, deal: Deal, lead: Lead, roles: dict[str, Person], referral_sources: Sequence[str]) -> str:
    if lead.source is not None and lead.source in referral_sources:
        return "referral"
    first, closer = roles["first_owner"], roles["closer"]
    if first.source.startswith("ledger") and first.branch_id is not None and closer.branch_id is not None \
            and first.branch_id != closer.branch_id:
        return "walk_in"
    return "repurchase" if deal.kind == "repurchase" else "first_purchase"


def splits_of(method: str, splits: Sequence[dict[str, Any]]) -> Sequence[dict[str, Any]]:
    if method == "owner_at_win":
        return OWNER_AT_WIN
    if method == "first_owner":
        return FIRST_OWNER
    return splits


def attribute(ctx: HookContext, deal: Deal, *, referral_sources: Sequence[str]) -> Attribution | None:
    """The credit lines of ``deal`` by its rule, or ``None`` when no one in it belongs to a branch."""
    lead = ctx.session.scalar(select(Lead).where(Lead.id == deal.lead_id))
    assert lead is not None  # a deal's lead is never deleted (RESTRICT)
    roles = people(ctx, deal, lead)
    situation = situation_of(ctx, deal, lead, roles, referral_sources)
    rule = rule_at(ctx, situation, deal.won_at)
    if rule is None and situation in ("referral", "walk_in"):
        rule = rule_at(ctx, "repurchase" if deal.kind == "repurchase" else "first_purchase", deal.won_at)
    method = rule.method if rule is not None else "owner_at_win"
    chosen = splits_of(method, rule.splits if rule is not None else ())
    return lines_of(deal.amount, chosen, roles, situation=situation, rule=rule, method=method)


def lines_of(amount: Decimal, chosen: Sequence[dict[str, Any]], roles: dict[str, Person], *, situation: str,
             rule: Rule | None, method: str) -> Attribution | None:
    shares: list[Share] = []
    named: dict[tuple[int, int | None], list[str]] = {}
    pct: dict[tuple[int, int | None], Decimal] = {}
    for split in chosen:
        person = roles[split["role"]]
        if person.branch_id is None:
            continue
        weight = Decimal(split["percent"])
        key = (person.branch_id, person.user_id)
        shares.append(Share(person.branch_id, person.user_id, weight))
        named.setdefault(key, []).append(split["role"])
        pct[key] = pct.get(key, Decimal(0)) + weight
    if not shares:
        return None
    lines = split_two_levels(amount, shares)
    inputs = {
        "situation": situation,
        "rule": None if rule is None else {"id": rule.id, "version": rule.version, "method": rule.method},
        "splits": list(chosen),
        "roles": {r: {"user_id": p.user_id, "team_id": p.team_id, "branch_id": p.branch_id, "from": p.source}
                  for r, p in roles.items()},
    }
    return Attribution(situation, rule, method, lines, named, pct, inputs)


def manual(amount: Decimal, lines: Sequence[dict[str, Any]]) -> Attribution:
    """An admin's override: ``[{branch_id, user_id, percent}]``, percents adding up to 100 (checked by the schema)."""
    shares = [Share(x["branch_id"], x.get("user_id"), Decimal(x["percent"])) for x in lines]
    named = {(s.branch_id, s.user_id): ["manual"] for s in shares}
    pct: dict[tuple[int, int | None], Decimal] = {}
    for s in shares:
        pct[(s.branch_id, s.user_id)] = pct.get((s.branch_id, s.user_id), Decimal(0)) + s.weight
    inputs = {"situation": "override", "lines": [{**x, "percent": str(x["percent"])} for x in lines]}
    return Attribution("override", None, "manual", split_two_levels(amount, shares), named, pct, inputs)
