"""``/api/v1/settlement/deals/{deal_id}/credits``: a deal's credit versions, and an admin's override.

An override is a new version with its reason, never an edit: the ledger
reverses the current lines and books the new ones in the current open period
(:func:`..ledger.override`). Managers read the deals credited to their branch.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from pelago.plugin import Deal, InvalidInput, NotFound, User, commit, current_context, requires

from .. import ledger
from .. import schemas as s
from ..models import Branch, CreditLine, CreditSet, SettledDeal
from . import blp
from .branches import visible_branch_ids


def _credits(c: Any, deal_id: int) -> dict[str, Any]:
    settled = c.session.scalar(select(SettledDeal).where(SettledDeal.deal_id == deal_id))
    if settled is None:
        raise NotFound(f"deal {deal_id} has no credits (unknown deal, or not settled yet)")
    sets = c.session.scalars(
        select(CreditSet).where(CreditSet.deal_id == deal_id).order_by(CreditSet.version.desc())
    ).all()
    lines: dict[int, list[CreditLine]] = {cs.id: [] for cs in sets}
    if sets:
        for line in c.session.scalars(
            select(CreditLine).where(CreditLine.set_id.in_(list(lines))).order_by(CreditLine.id)
        ):
            lines[line.set_id].append(line)
    allowed = visible_branch_ids(c)
    if allowed is not None and not any(line.branch_id in allowed for ls in lines.values() for line in ls):
        raise NotFound(f"deal {deal_id} has no credits (unknown deal, or not settled yet)")
    return {
        "deal_id": deal_id, "amount": settled.amount, "refunded": settled.refunded,
        "versions": [
            {"id": cs.id, "deal_id": cs.deal_id, "version": cs.version, "current": cs.version == settled.current_set,
             "situation": cs.situation, "method": cs.method, "rule_id": cs.rule_id, "rule_version": cs.rule_version,
             "reason": cs.reason, "inputs": cs.inputs, "created_by": cs.created_by, "created_at": cs.created_at,
             "lines": [
                 {"id": x.id, "branch_id": x.branch_id, "user_id": x.user_id, "roles": x.roles, "percent": x.percent,
                  "amount": x.amount, "plan_id": x.plan_id, "commission": x.commission}
                 for x in lines[cs.id]
             ]}
            for cs in sets
        ],
    }


@blp.route("/deals/<int:deal_id>/credits", methods=["GET"])
@blp.response(200, s.DealCredits)
@requires("manager")
def deal_credits(deal_id: int) -> Any:
    """Every version of the deal's credits, newest first, with the inputs each rule used.

    Managers (the deals credited to their branch) and admins. Each version shows its situation, rule and
    method, its lines (branch, user, roles, percent, amount, commission) and whether it is current. A deal that
    is unknown, not settled yet, or not credited to the manager's branch is a 404.
    """
    c = current_context()
    return _credits(c, deal_id)


@blp.route("/deals/<int:deal_id>/credits", methods=["POST"])
@blp.arguments(s.CreditOverride)
@blp.response(201, s.DealCredits)
@requires("admin")
def override_credits(data: dict[str, Any], deal_id: int) -> Any:
    """Override the deal's credits: a new version (lines by branch and user, percentages adding up to 100).

    Admins only, with a `reason`. The override is a new version, never an edit: the ledger reverses the current
    lines and books the new ones in the current open period. An unknown deal is a 404; an unknown branch or
    user in the lines, or percentages that do not add up to 100, a 422. Returns every version (201).
    """
    c = current_context()
    if c.session.scalar(select(Deal.id).where(Deal.id == deal_id)) is None:
        raise NotFound(f"deal {deal_id} not found")
    branch_ids = sorted({x["branch_id"] for x in data["lines"]})
    user_ids = sorted({x["user_id"] for x in data["lines"] if x.get("user_id")})
    known_branches = set(c.session.scalars(select(Branch.id).where(Branch.id.in_(branch_ids))))
    known_users = set(c.session.scalars(select(User.id).where(User.id.in_(user_ids)))) if user_ids else set()
    errors = {}
    for i, x in enumerate(data["lines"]):
        problems = []
        if x["branch_id"] not in known_branches:
            problems.append(f"no branch {x['branch_id']}")
        if x.get("user_id") and x["user_id"] not in known_users:
            problems.append(f"no user {x['user_id']}")
        if problems:
            errors[str(i)] = problems
    if errors:
        raise InvalidInput("unknown branch or user in the lines", {"lines": errors})
    ledger.override(c, deal_id, data["lines"], data["reason"], c.actor.user_id if c.actor else None)
    out = _credits(c, deal_id)
    commit()
    return out
