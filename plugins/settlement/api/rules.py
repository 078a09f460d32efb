"""``/api/v1/settlement/rules`` and ``/plans``: attribution rules and commission plans, versioned.

Admins write; managers read (plans: their branch's). A version is never
edited: a new one with a later ``effective_from`` closes the open one
(:mod:`..versions`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from pelago.plugin import Forbidden, HookContext, commit, current_context, paginate, requires

from .. import schemas as s
from .. import versions
from ..models import Plan, Rule
from . import blp
from .branches import get_branch, visible_branch_ids


def _rule_out(r: Rule) -> dict[str, Any]:
    return {k: getattr(r, k) for k in ("id", "situation", "version", "method", "splits", "effective_from",
                                       "effective_to", "note", "created_by", "created_at")}


def _plan_out(p: Plan) -> dict[str, Any]:
    return {k: getattr(p, k) for k in ("id", "branch_id", "role", "version", "mode", "scope", "base", "tiers",
                                       "effective_from", "effective_to", "note", "created_by", "created_at")}


@blp.route("/rules", methods=["GET"])
@blp.arguments(s.RuleListArgs, location="query")
@blp.response(200, s.RulePage)
@requires("manager")
def list_rules(args: dict[str, Any]) -> Any:
    """Attribution rules, newest first (every version).

    Managers and admins. Filter by `?situation=`; each version shows its method, splits and effective range.
    `?limit=` and `?cursor=` page.
    """
    c = current_context()
    stmt = select(Rule)
    if args.get("situation"):
        stmt = stmt.where(Rule.situation == args["situation"])
    page = paginate(c.session, stmt, Rule.id, args.get("cursor"), args["limit"])
    return {"items": [_rule_out(r) for r in page.items], "next_cursor": page.next_cursor}


@blp.route("/rules", methods=["POST"])
@blp.arguments(s.RuleCreate)
@blp.response(201, s.AttributionRule)
@requires("admin")
def create_rule(data: dict[str, Any]) -> Any:
    """A new version of a situation's rule, in effect from ``effective_from`` (422 if that overlaps).

    Admins only. A version is never edited: the new one closes the open version at its start. A start that is
    not after every earlier version's is a 422; a concurrent second writer gets a 409, never an overlap.
    """
    c = current_context()
    splits = [{"role": x["role"], "percent": str(x["percent"])} for x in data["splits"]]
    row = versions.append(
        c, Rule, [Rule.situation == data["situation"]],
        {"situation": data["situation"], "method": data["method"], "splits": splits,
         "effective_from": data["effective_from"], "note": data["note"], "created_by": c.actor.user_id},
        f"{data['situation']} rule",
    )
    out = _rule_out(row)
    commit()
    return out


@blp.route("/plans", methods=["GET"])
@blp.arguments(s.PlanListArgs, location="query")
@blp.response(200, s.PlanPage)
@requires("manager")
def list_plans(args: dict[str, Any]) -> Any:
    """Commission plans, newest first; managers see their branch's.

    Managers (their branch's) and admins. Filter by `?branch_id=` and `?role=`; each version shows its tiers,
    mode, scope, base and effective range. `?limit=` and `?cursor=` page.
    """
    c = current_context()
    stmt = select(Plan)
    allowed = visible_branch_ids(c)
    if allowed is not None:
        stmt = stmt.where(Plan.branch_id.in_(sorted(allowed)))
    if args.get("branch_id"):
        stmt = stmt.where(Plan.branch_id == args["branch_id"])
    if args.get("role"):
        stmt = stmt.where(Plan.role == args["role"])
    page = paginate(c.session, stmt, Plan.id, args.get("cursor"), args["limit"])
    return {"items": [_plan_out(p) for p in page.items], "next_cursor": page.next_cursor}


@blp.route("/plans", methods=["POST"])
@blp.arguments(s.PlanCreate)
@blp.response(201, s.CommissionPlan)
@requires("admin")
def create_plan(data: dict[str, Any]) -> Any:
    """A new version of a branch's plan for a role, in effect from ``effective_from``.

    Admins only. A version is never edited: the new one closes the open version at its start. An unknown branch
    is a 404; a start that is not after every earlier version's is a 422; a concurrent second writer gets a
    409.
    """
    c = current_context()
    out = _plan_out(make_plan(c, data))
    commit()
    return out


def make_plan(c: HookContext, data: dict[str, Any]) -> Plan:
    """The next version of a branch's plan for a role from ``s.PlanCreate``-loaded data; the caller commits."""
    if c.actor is None:  # pragma: no cover - requires() has an actor
        raise Forbidden("no actor")
    get_branch(c, data["branch_id"])
    tiers = [{"up_to": None if t["up_to"] is None else str(t["up_to"]), "rate": str(t["rate"])} for t in data["tiers"]]
    row = versions.append(
        c, Plan, [Plan.branch_id == data["branch_id"], Plan.role == data["role"]],
        {"branch_id": data["branch_id"], "role": data["role"], "mode": data["mode"], "scope": data["scope"],
         "base": data["base"], "tiers": tiers, "effective_from": data["effective_from"], "note": data["note"],
         "created_by": c.actor.user_id},
        f"{data['role']} plan of branch {data['branch_id']}",
    )
    return row
