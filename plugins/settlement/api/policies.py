"""``/api/v1/settlement/policies`` and ``/allocations``: distribution policies and their logs.

A policy is never edited: ``POST /policies`` makes the next version for its
source, effective from a time not in the past, and closes the version in
effect with a conditional update; versions of one source never overlap
(422). Managers and admins read; admins write. A manager reads the
allocations of their own branch only.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, func, select, update

from pelago.plugin import (
    Conflict,
    HookContext,
    InvalidInput,
    Lead,
    NotFound,
    commit,
    current_context,
    flush_or_conflict,
    paginate,
    requires,
)

from .. import division
from .. import schemas as s
from ..models import Allocation, Branch, BranchTeam, DivisionState, Policy, PolicyEntry
from . import blp
from .branches import visible_branch_ids


def _policy(c: HookContext, policy_id: int) -> Policy:
    policy = c.session.scalar(select(Policy).where(Policy.id == policy_id))
    if policy is None:
        raise NotFound(f"policy {policy_id} not found")
    return policy


def _out(c: HookContext, policies: list[Policy]) -> list[dict[str, Any]]:
    ids = [p.id for p in policies]
    entries: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    seqs: dict[int, int] = {}
    if ids:
        for e, name in c.session.execute(
            select(PolicyEntry, Branch.name)
            .join(Branch, and_(Branch.id == PolicyEntry.branch_id, Branch.tenant_id == PolicyEntry.tenant_id))
            .where(PolicyEntry.policy_id.in_(ids)).order_by(PolicyEntry.policy_id, PolicyEntry.branch_id)
        ):
            entries[e.policy_id].append({"branch_id": e.branch_id, "branch": name, "team_id": e.team_id,
                                         "weight": e.weight, "daily_cap": e.daily_cap})
        seqs = dict(c.session.execute(
            select(DivisionState.policy_id, DivisionState.seq).where(DivisionState.policy_id.in_(ids))
        ).all())
    return [{
        "id": p.id, "source": p.source or None, "version": p.version, "effective_from": p.effective_from,
        "effective_to": p.effective_to, "note": p.note, "entries": entries[p.id], "allocated": seqs.get(p.id, 0),
        "created_by": p.created_by, "created_at": p.created_at,
    } for p in policies]


def _check_entries(c: HookContext, entries: list[dict[str, Any]]) -> None:
    """Each branch is the tenant's and active, each team is in its branch: else 422 naming the entry."""
    branch_ids = [e["branch_id"] for e in entries]
    branches = dict(c.session.execute(
        select(Branch.id, Branch.active).where(Branch.id.in_(branch_ids))
    ).all())
    homes = dict(c.session.execute(
        select(BranchTeam.team_id, BranchTeam.branch_id).where(BranchTeam.team_id.in_([e["team_id"] for e in entries]))
    ).all())
    errors: dict[str, Any] = {}
    for i, e in enumerate(entries):
        if e["branch_id"] not in branches:
            errors[str(i)] = {"branch_id": [f"no branch {e['branch_id']} in this tenant"]}
        elif not branches[e["branch_id"]]:
            errors[str(i)] = {"branch_id": [f"branch {e['branch_id']} is inactive"]}
        elif homes.get(e["team_id"]) != e["branch_id"]:
            errors[str(i)] = {"team_id": [f"team {e['team_id']} is not a team of branch {e['branch_id']}"]}
    if errors:
        raise InvalidInput("invalid policy entries", {"entries": errors})


@blp.route("/policies", methods=["POST"])
@blp.arguments(s.PolicyCreate)
@blp.response(201, s.Policy)
@requires("admin")
def create_policy(data: dict[str, Any]) -> Any:
    """Make the next version of a distribution policy

    The branches' weights, intake teams and optional daily caps for a source (`source` null: the
    default policy, for every source without its own). Effective from `effective_from` (default now,
    never in the past); the version in effect is closed at that moment, and a start that overlaps it
    is a 422. Each version starts its round robin afresh. Admins only.
    """
    c = current_context()
    policy = make_policy(c, data)
    out = _out(c, [_policy(c, policy.id)])[0]
    commit()
    return out


def make_policy(c: HookContext, data: dict[str, Any]) -> Policy:
    """The next version of a source's policy from ``s.PolicyCreate``-loaded data; the caller commits.

    422 for a past start, an overlap or a bad entry; 409 for a concurrent version.
    """
    now = c.now()
    source = data["source"] or ""
    start = data["effective_from"] or now
    if start < now:
        raise InvalidInput("policies are not retroactive", {"effective_from": ["must not be in the past"]})
    _check_entries(c, data["entries"])
    open_ = c.session.scalar(select(Policy).where(Policy.source == source, Policy.effective_to.is_(None)))
    if open_ is not None and start <= open_.effective_from:
        raise InvalidInput("overlapping versions", {"effective_from": [
            f"must be after {open_.effective_from.isoformat()}, when version {open_.version} takes effect"
        ]})
    top = c.session.scalar(select(func.max(Policy.version)).where(Policy.source == source)) or 0
    if open_ is not None:
        closed = c.session.execute(
            update(Policy)
            .where(Policy.id == open_.id, Policy.effective_to.is_(None), Policy.effective_from < start)
            .values(effective_to=start).execution_options(synchronize_session=False)
        ).rowcount
        if closed != 1:
            raise Conflict("the policy changed meanwhile; retry")
    policy = Policy(
        tenant_id=c.tenant.id, source=source, version=top + 1, effective_from=start, effective_to=None,
        note=data["note"], created_by=c.actor.user_id if c.actor else None, created_at=now,
    )
    c.session.add(policy)
    flush_or_conflict(c.session, "another version of this policy was made meanwhile; retry")
    c.session.add_all([
        PolicyEntry(tenant_id=c.tenant.id, policy_id=policy.id, **e) for e in data["entries"]
    ])
    c.session.add(DivisionState(tenant_id=c.tenant.id, policy_id=policy.id, current={}, seq=0, updated_at=now))
    flush_or_conflict(c.session, "a branch or team of the policy changed meanwhile; retry")
    c.session.expire_all()
    return policy


@blp.route("/policies", methods=["GET"])
@blp.arguments(s.PolicyListArgs, location="query")
@blp.response(200, s.PolicyPage)
@requires("manager")
def list_policies(args: dict[str, Any]) -> Any:
    """List policy versions

    Every version of every policy, newest first; `?source=` one source's versions (empty: the
    default policy's). Managers and admins.
    """
    c = current_context()
    stmt = select(Policy)
    if "source" in args:
        stmt = stmt.where(Policy.source == (args["source"] or ""))
    page = paginate(c.session, stmt, Policy.id, args.get("cursor"), args["limit"])
    return {"items": _out(c, list(page.items)), "next_cursor": page.next_cursor}


@blp.route("/policies/<int:policy_id>", methods=["GET"])
@blp.response(200, s.Policy)
@requires("manager")
def show_policy(policy_id: int) -> Any:
    """Show a policy version

    One version with its entries, its effective range and how many leads it has divided. Managers
    and admins.
    """
    c = current_context()
    return _out(c, [_policy(c, policy_id)])[0]


@blp.route("/policies/<int:policy_id>/preview", methods=["GET"])
@blp.arguments(s.PreviewArgs, location="query")
@blp.response(200, s.PolicyPreview)
@requires("manager")
def preview_policy(args: dict[str, Any], policy_id: int) -> Any:
    """Preview the next allocations of a policy version

    The next `n` steps of the version's round robin, from its stored state and today's counts
    against the daily caps. Computed, not taken: nothing is locked or written. Managers and admins.
    """
    c = current_context()
    policy = _policy(c, policy_id)
    plans = {p.id: p for p in division.plans_of(c, [policy.id])}
    return {"policy_id": policy.id, "version": policy.version,
            "items": division.preview(c, plans[policy.id], args["n"])}


@blp.route("/allocations", methods=["GET"])
@blp.arguments(s.AllocationListArgs, location="query")
@blp.response(200, s.AllocationPage)
@requires("manager")
def list_allocations(args: dict[str, Any]) -> Any:
    """List allocations

    The allocation log, newest first: one row per divided lead with its policy version, position in
    that version's log, branch, team and reason. Filters `lead_id`, `branch_id`, `policy_id`.
    Managers see their own branch's rows.
    """
    c = current_context()
    stmt = select(Allocation)
    for name in ("branch_id", "policy_id"):
        if args.get(name) is not None:
            stmt = stmt.where(getattr(Allocation, name) == args[name])
    if args.get("lead_id") is not None:  # by the lead's key (indexed), then its id
        lead = c.session.execute(select(Lead.phone, Lead.email).where(Lead.id == args["lead_id"])).first()
        key = division.key_of(lead.phone, lead.email) if lead is not None else ""
        stmt = stmt.where(Allocation.lead_key == key, Allocation.lead_id == args["lead_id"])
    allowed = visible_branch_ids(c)
    if allowed is not None:
        stmt = stmt.where(Allocation.branch_id.in_(sorted(allowed)))
    page = paginate(c.session, stmt, Allocation.id, args.get("cursor"), args["limit"])
    return {"items": [{
        "id": a.id, "lead_id": a.lead_id, "policy_id": a.policy_id, "version": a.version, "seq": a.seq,
        "branch_id": a.branch_id, "team_id": a.team_id, "reason": a.reason, "at": a.at,
    } for a in page.items], "next_cursor": page.next_cursor}
