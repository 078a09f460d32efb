"""Fair division of new leads between branches: smooth weighted round robin, row-locked.

A *policy* version gives each branch a weight, the team that receives its
leads and an optional daily cap. For a batch of new leads (``choose_team`` is
asked once per batch; an import's batch is up to 1,000 leads) each lead takes
the policy of its source, else the default policy (source ``""``), in effect
now. The policies' state rows are locked once for the batch (``SELECT … FOR
UPDATE`` in policy id order; on SQLite the transaction's write lock
serialises), then each lead is one step of nginx's smooth weighted round
robin over the policy's branches:

    every branch that can take the lead: current += weight
    the branch with the largest current takes it (ties: the lower branch id)
    that branch: current -= the sum of the weights added

so over every Σweights consecutive leads the split is exact, and every prefix
of the log is within one lead of the weights. A branch that is inactive or
at its daily cap (counted in the branch's own timezone) sits the step out:
its current is not touched, and the others share the step by their weights
(nginx's treatment of a peer that is down), so the sequence of an uncapped
stretch is the one the plain algorithm gives. When no branch can take a
lead, it goes to the tenant's default intake team, or, when the pool is on
or there is no default team, is left to the rest of routing; the reason is
in its allocation row either way.

Each divided lead is an append-only :class:`~.models.Allocation` row in the
policy's log (``seq``), written once with the lead's id (the intake line
reserves a new lead's id before routing: ``LeadInfo.new_id``), in one
statement per policy and batch; the same facts go into the ``choose_team``
answer's ``detail``, which the core writes into the lead's routing
explanation (its ownership history, and ``POST /api/v1/routing/preview``,
whose savepoint is rolled back with the state and the rows).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Table, and_, insert, or_, select, update

from pelago.plugin import HookContext, LeadInfo, TeamChoice, default_intake_team, dialect_name, upsert

from .models import Allocation, Branch, BranchDay, DivisionState, Policy, PolicyEntry

PLUGIN = "settlement"
ALLOCATIONS: Table = Allocation.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class Share:
    """A branch's share in a policy version, with what division needs of the branch."""

    branch_id: int
    name: str
    team_id: int
    weight: int
    daily_cap: int | None
    timezone: str
    active: bool


@dataclass
class Plan:
    """A policy version in effect, its shares by branch id order."""

    id: int
    source: str
    version: int
    shares: list[Share] = field(default_factory=list)


#: an allocation of the batch: branch id, team id, lead id, lead key, reason
Row = tuple[int | None, int | None, int | None, str, str]


@dataclass(frozen=True)
class Pick:
    """One step of the round robin: the branch (``None``: no branch could take the lead) and why."""

    share: Share | None
    reason: str


def key_of(phone: str | None, email: str | None) -> str:
    """A lead's natural key, its phone (E.164) else its email: how its allocation finds its id."""
    return f"phone:{phone}" if phone else f"email:{email or ''}"


def lead_key(lead: LeadInfo) -> str:
    return key_of(lead.phone, lead.email)


def plans_of(ctx: HookContext, policy_ids: Sequence[int]) -> list[Plan]:
    """The given policy versions with their shares, in effect or not (for a preview)."""
    return list(_plans(ctx, Policy.id.in_(list(policy_ids))).values())


def plans_in_effect(ctx: HookContext, sources: Iterable[str], at: datetime) -> dict[str, Plan]:
    """The policy version in effect at ``at`` for each of ``sources`` that has one, and for ``""``."""
    wanted = sorted({*sources, ""})
    return {p.source: p for p in _plans(ctx, Policy.source.in_(wanted), Policy.effective_from <= at,
                                         or_(Policy.effective_to.is_(None), Policy.effective_to > at)).values()}


def _plans(ctx: HookContext, *where: Any) -> dict[int, Plan]:
    rows = ctx.session.execute(
        select(Policy.id, Policy.source, Policy.version, PolicyEntry.branch_id, Branch.name, PolicyEntry.team_id,
               PolicyEntry.weight, PolicyEntry.daily_cap, Branch.timezone, Branch.active)
        .join(PolicyEntry, and_(PolicyEntry.policy_id == Policy.id, PolicyEntry.tenant_id == Policy.tenant_id))
        .join(Branch, and_(Branch.id == PolicyEntry.branch_id, Branch.tenant_id == PolicyEntry.tenant_id))
        .where(Policy.tenant_id == ctx.tenant.id, *where)
        .order_by(Policy.id, PolicyEntry.branch_id)
    ).all()
    plans: dict[int, Plan] = {}
    for pid, source, version, branch_id, name, team_id, weight, cap, tz, active in rows:
        plan = plans.setdefault(pid, Plan(pid, source, version))
        plan.shares.append(Share(branch_id, name, team_id, weight, cap, tz, active))
    return plans


def step(plan: Plan, current: dict[int, int], used: Mapping[int, int]) -> Pick:
    """One step of smooth weighted round robin over the branches that can take a lead; updates ``current``.

    ``used`` is each branch's count for its own day, this lead not included.
    """
    able: list[Share] = []
    out: list[str] = []
    for s in plan.shares:
        if not s.active:
            out.append(f"{s.name} is inactive")
        elif s.daily_cap is not None and used.get(s.branch_id, 0) >= s.daily_cap:
            out.append(f"{s.name} is at its daily cap of {s.daily_cap}")
        else:
            able.append(s)
    if not able:
        return Pick(None, "; ".join(out))
    total = 0
    best: Share | None = None
    for s in able:
        total += s.weight
        current[s.branch_id] = current.get(s.branch_id, 0) + s.weight
        if best is None or current[s.branch_id] > current[best.branch_id]:
            best = s
    assert best is not None
    current[best.branch_id] -= total
    reason = "weighted round robin" + (f" ({'; '.join(out)})" if out else "")
    return Pick(best, reason)


def branch_day(share: Share, at: datetime) -> date:
    """The day of ``at`` on the branch's own calendar (its timezone), for its daily cap."""
    return at.astimezone(ZoneInfo(share.timezone)).date()


def _counted(plans: Iterable[Plan]) -> dict[int, Share]:
    """The plans' branches by id: each one's day is counted, capped by this policy or not, so a
    cap counts every lead the branch got that day, by any policy."""
    return {s.branch_id: s for p in plans for s in p.shares}


def divide(ctx: HookContext, leads: Sequence[LeadInfo]) -> list[TeamChoice | None] | None:
    """``choose_team`` for a batch: one locked round robin step per lead that a policy covers."""
    now = ctx.now()
    plans = plans_in_effect(ctx, {lead.source for lead in leads if lead.source}, now)
    if not plans:
        return None
    chosen: list[Plan | None] = [plans.get(lead.source or "") or plans.get("") for lead in leads]
    involved = sorted({p.id: p for p in chosen if p is not None}.values(), key=lambda p: p.id)
    if not involved:
        return None
    session = ctx.session
    states = {
        pid: (dict(current or {}), seq)
        for pid, current, seq in session.execute(
            select(DivisionState.policy_id, DivisionState.current, DivisionState.seq)
            .where(DivisionState.tenant_id == ctx.tenant.id, DivisionState.policy_id.in_([p.id for p in involved]))
            .order_by(DivisionState.policy_id).with_for_update()
        )
    }
    counted = _counted(involved)
    used = _lock_days(ctx, counted, now)
    start = dict(used)
    currents = {p.id: ({int(k): int(v) for k, v in states[p.id][0].items()}, states[p.id][1]) for p in involved}
    fallback: int | None = None
    fallback_known = False
    pool_on = ctx.enabled("pool")
    answers: list[TeamChoice | None] = []
    rows: dict[int, list[Row]] = {p.id: [] for p in involved}
    reasons: dict[tuple[int, int, str], str] = {}  # the batch's few distinct reasons, made once each
    for lead, plan in zip(leads, chosen, strict=True):
        if plan is None:
            answers.append(None)
            continue
        current, seq = currents[plan.id]
        seq += 1
        currents[plan.id] = (current, seq)
        pick = step(plan, current, used)
        label = f"{plan.source or 'default'} policy v{plan.version}"
        if pick.share is not None:
            share = pick.share
            used[share.branch_id] += 1
            team_id: int | None = share.team_id
            said = (plan.id, share.branch_id, pick.reason)
            reason = reasons.get(said) or reasons.setdefault(said, f"{share.name} by {label}: {pick.reason}")
        else:
            if not fallback_known:
                fallback, fallback_known = (None if pool_on else default_intake_team(ctx)), True
            team_id = fallback
            where = (
                "the tenant's default intake team" if team_id is not None
                else "left to the pool" if pool_on else "left to routing (no default intake team)"
            )
            reason = f"no branch could take it by {label} ({pick.reason}): {where}"
        branch_id = pick.share.branch_id if pick.share is not None else None
        lead_id = lead.new_id if lead.new_id is not None else lead.id
        rows[plan.id].append((branch_id, team_id, lead_id, lead_key(lead)[:260], reason[:300]))
        detail = {"settlement": {"policy_id": plan.id, "version": plan.version, "seq": seq, "branch_id": branch_id}}
        answers.append(None if team_id is None else TeamChoice(team_id, reason, rule="settlement", detail=detail))
    for plan in involved:
        current, seq = currents[plan.id]
        _insert(ctx, plan, seq - len(rows[plan.id]) + 1, rows[plan.id], now)
        session.execute(
            update(DivisionState)
            .where(DivisionState.tenant_id == ctx.tenant.id, DivisionState.policy_id == plan.id)
            .values(current={str(k): v for k, v in sorted(current.items())}, seq=seq, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    changed = [(b, n) for b, n in used.items() if n != start.get(b)]
    if changed:
        upsert(session, BranchDay, [
            {"branch_id": b, "day": branch_day(counted[b], now), "allocated": n} for b, n in sorted(changed)
        ], key=["tenant_id", "branch_id", "day"], update=["allocated"])
    return answers


def _lock_days(ctx: HookContext, branches: Mapping[int, Share], now: datetime) -> dict[int, int]:
    """Each branch's count for its day so far, its row locked until commit (created at 0).

    Locked after the policies' state rows, in branch id order, so batches of
    different policies sharing a branch take turns without deadlocking.
    """
    if not branches:
        return {}
    days = {b: branch_day(s, now) for b, s in branches.items()}
    upsert(ctx.session, BranchDay, [
        {"branch_id": b, "day": d, "allocated": 0} for b, d in sorted(days.items())
    ], key=["tenant_id", "branch_id", "day"], update=[])
    found = ctx.session.execute(
        select(BranchDay.branch_id, BranchDay.day, BranchDay.allocated)
        .where(BranchDay.tenant_id == ctx.tenant.id, BranchDay.branch_id.in_(sorted(days)),
               BranchDay.day.in_(sorted(set(days.values()))))
        .order_by(BranchDay.branch_id, BranchDay.day).with_for_update()
    ).all()
    return {b: n for b, d, n in found if days[b] == d}


def _insert(ctx: HookContext, plan: Plan, first: int, rows: list[Row], now: datetime) -> None:
    """One policy's allocations of the batch, ``seq`` from ``first`` on: one statement.

    PostgreSQL gets one array per column as a single text literal (the batch
    is read by the server, not adapted value by value in Python), and the
    batch's few distinct reasons once.
    """
    if not rows:
        return
    if dialect_name(ctx.session) == "postgresql":
        from sqlalchemy import text

        reasons: dict[str, int] = {}
        ctx.session.execute(text(
            "INSERT INTO settlement_allocation"
            " (tenant_id, at, policy_id, version, seq, branch_id, team_id, lead_id, lead_key, reason)"
            " SELECT :tenant, :at, :policy, :version, :first + x.n - 1, x.branch_id, x.team_id, x.lead_id,"
            " x.lead_key, (CAST(:reasons AS text[]))[x.r]"
            " FROM unnest(CAST(:branches AS bigint[]), CAST(:teams AS bigint[]), CAST(:leads AS bigint[]),"
            " CAST(:keys AS text[]), CAST(:rs AS int[])) WITH ORDINALITY AS x(branch_id, team_id, lead_id, lead_key, r, n)"
        ), {
            "tenant": ctx.tenant.id, "at": now, "policy": plan.id, "version": plan.version, "first": first,
            "branches": _ints(r[0] for r in rows), "teams": _ints(r[1] for r in rows),
            "leads": _ints(r[2] for r in rows), "keys": _texts(r[3] for r in rows),
            "rs": _ints(reasons.setdefault(r[4], len(reasons) + 1) for r in rows),
            "reasons": _texts(reasons),
        })
    else:
        ctx.session.execute(insert(ALLOCATIONS), [
            {"tenant_id": ctx.tenant.id, "at": now, "policy_id": plan.id, "version": plan.version, "seq": first + k,
             "branch_id": b, "team_id": t, "lead_id": lead_id, "lead_key": key, "reason": reason}
            for k, (b, t, lead_id, key, reason) in enumerate(rows)
        ])


def _ints(values: Iterable[int | None]) -> str:
    """A PostgreSQL array literal of integers (``NULL`` for ``None``)."""
    return "{" + ",".join("NULL" if v is None else str(int(v)) for v in values) + "}"


def _texts(values: Iterable[str]) -> str:
    """A PostgreSQL array literal of texts, each quoted."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def preview(ctx: HookContext, plan: Plan, n: int) -> list[dict[str, Any]]:
    """The next ``n`` picks of ``plan`` from its stored state and today's counts; writes nothing."""
    now = ctx.now()
    row = ctx.session.execute(
        select(DivisionState.current, DivisionState.seq)
        .where(DivisionState.tenant_id == ctx.tenant.id, DivisionState.policy_id == plan.id)
    ).one()
    current = {int(k): int(v) for k, v in (row.current or {}).items()}
    seq = row.seq
    counted = _counted([plan])
    used = dict.fromkeys(counted, 0)
    if counted:
        days = {b: branch_day(s, now) for b, s in counted.items()}
        for b, d, count in ctx.session.execute(
            select(BranchDay.branch_id, BranchDay.day, BranchDay.allocated)
            .where(BranchDay.tenant_id == ctx.tenant.id, BranchDay.branch_id.in_(sorted(days)))
        ):
            if days[b] == d:
                used[b] = count
    out = []
    for _ in range(n):
        seq += 1
        pick = step(plan, current, used)
        if pick.share is not None:
            used[pick.share.branch_id] += 1
        out.append({
            "seq": seq, "branch_id": pick.share.branch_id if pick.share else None,
            "branch": pick.share.name if pick.share else None,
            "team_id": pick.share.team_id if pick.share else None, "reason": pick.reason,
        })
    return out
