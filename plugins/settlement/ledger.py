"""The ledger: append-only credit and commission entries from won deals, refunds and overrides.

Each change of a deal's money happens under the lock of its
:class:`SettledDeal` row, and at most once: the deal's row (``deal_won``) and
each :class:`Refunded` row (``deal_refunded``) are inserted ``ON CONFLICT DO
NOTHING`` before anything else, so a redelivered event finds its row there
and writes nothing (the entries' unique business keys stand behind that).

Entries land in the period of their branch that contains the event's time
(the win, the refund, the override), or, if that period is locked or paid
already, in the next open one, with ``adjusts_period_id`` naming the locked
one. Periods are locked ``FOR UPDATE`` in (branch, key) order, the order the
lock uses too, so writers never deadlock and never write a locked period.

Clawbacks are proportional and exact: a refund is split over what is left
of each credit line (largest remainder, :func:`.shares.clawback`), so no
clawback is positive and the parts add up to the refund; a line's commission
is taken back as ``c × A ÷ amount`` minus ``c × A' ÷ amount`` when the
refunds so far go from ``A`` to ``A'`` (plans with base ``net``). A full
refund therefore takes back exactly what was credited and paid: the deal
nets to 0.00.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, or_, select, update

from pelago.plugin import Deal, HookContext, NotFound, Refund, User, insert_ignoring_conflict

from . import periods, tiers
from .attribution import Attribution, attribute, manual
from .models import Branch, CreditLine, CreditSet, Entry, Period, Plan, Refunded, SettledDeal
from .shares import ZERO, _order, clawback, clawed_to_date, proportional_to_date

PLUGIN = "settlement"
Key = tuple[int, int | None]


# --- periods ------------------------------------------------------------------------------


def months(ctx: HookContext) -> int:
    return int(ctx.settings(PLUGIN)["period_months"])


def branch_zone(ctx: HookContext, branch_id: int) -> ZoneInfo:
    cache = ctx.session.info.setdefault("settlement_zones", {})
    if branch_id not in cache:
        name = ctx.session.scalar(select(Branch.timezone).where(Branch.id == branch_id))
        if name is None:
            raise NotFound(f"branch {branch_id} not found")
        cache[branch_id] = ZoneInfo(name)
    return cache[branch_id]


def period_row(ctx: HookContext, branch_id: int, key: str, *, lock: bool = True) -> Period:
    """The branch's period ``key``, made open if it does not exist yet; locked ``FOR UPDATE``."""
    b = periods.bounds(key, branch_zone(ctx, branch_id), months(ctx))
    table = Period.__table__
    insert_ignoring_conflict(
        ctx.session, table,
        {"tenant_id": ctx.tenant.id, "branch_id": branch_id, "key": key, "starts_at": b.starts_at,
         "ends_at": b.ends_at, "state": "open", "created_at": ctx.now()},
        ["tenant_id", "branch_id", "key"], None,
    )
    stmt = select(Period).where(Period.branch_id == branch_id, Period.key == key)
    stmt = stmt.execution_options(populate_existing=True)
    if lock:
        stmt = stmt.with_for_update()
    row = ctx.session.scalar(stmt)
    assert row is not None
    return row


def landing(ctx: HookContext, branch_id: int, at: datetime) -> tuple[Period, Period]:
    """``(where an entry of ``at`` lands, the period ``at`` is in)``: the first open one from there on."""
    n = months(ctx)
    natural = period_row(ctx, branch_id, periods.period_of(at, branch_zone(ctx, branch_id), n).key)
    landed = natural
    while landed.state != "open":
        landed = period_row(ctx, branch_id, periods.next_key(landed.key, n))
    return landed, natural


def landings(ctx: HookContext, branch_ids: Iterable[int], at: datetime) -> dict[int, tuple[Period, Period]]:
    return {b: landing(ctx, b, at) for b in sorted(set(branch_ids))}


# --- commission -------------------------------------------------------------------------------


def plan_at(ctx: HookContext, branch_id: int, role: str, at: datetime) -> Plan | None:
    return ctx.session.scalar(
        select(Plan).where(
            Plan.branch_id == branch_id, Plan.role == role, Plan.effective_from <= at,
            or_(Plan.effective_to.is_(None), Plan.effective_to > at),
        )
    )


def _roles(ctx: HookContext, user_ids: Iterable[int | None]) -> dict[int, str]:
    ids = sorted({u for u in user_ids if u is not None})
    if not ids:
        return {}
    return dict(ctx.session.execute(select(User.id, User.role).where(User.id.in_(ids))).all())


def period_base(ctx: HookContext, period_id: int, user_id: int, plan_id: int) -> Decimal:
    """The running total a cumulative plan has counted for a user in a period (under the period's lock)."""
    got = ctx.session.scalar(
        select(func.sum(Entry.base)).where(
            Entry.period_id == period_id, Entry.user_id == user_id, Entry.plan_id == plan_id,
            Entry.kind == "commission",
        )
    )
    return got if got is not None else ZERO


def commission_of(ctx: HookContext, plan: Plan, line_amount: Decimal, period: Period, user_id: int) -> Decimal:
    table = tiers.tiers_of(plan.tiers)
    if plan.scope == "deal":
        return tiers.earned(plan.mode, line_amount, table)
    return tiers.increment(plan.mode, period_base(ctx, period.id, user_id, plan.id), line_amount, table)


# --- writing ------------------------------------------------------------------------------


def _entry(ctx: HookContext, *, key: str, landed: tuple[Period, Period], branch_id: int, user_id: int | None,
           deal_id: int | None, kind: str, origin: str, origin_id: int, amount: Decimal, base: Decimal,
           at: datetime, line_id: int | None = None, plan_id: int | None = None,
           original_id: int | None = None, shared: bool = False) -> dict[str, Any]:
    period, natural = landed
    return {
        "tenant_id": ctx.tenant.id, "key": key, "period_id": period.id, "branch_id": branch_id, "user_id": user_id,
        "deal_id": deal_id, "kind": kind, "origin": origin, "origin_id": origin_id, "amount": amount,
        "base": base, "line_id": line_id, "plan_id": plan_id, "original_id": original_id,
        "adjusts_period_id": natural.id if natural.id != period.id else None, "shared": shared,
        "occurred_at": at, "created_at": ctx.now(),
    }


def _write(ctx: HookContext, rows: list[dict[str, Any]]) -> None:
    if rows:
        ctx.session.execute(insert(Entry.__table__), rows)


def _tag(key: Key) -> str:
    return f"{key[0]}:{key[1] or 0}"


def _new_set(ctx: HookContext, deal: SettledDeal, version: int, att: Attribution, *, reason: str = "",
             actor_id: int | None = None) -> tuple[CreditSet, dict[Key, CreditLine]]:
    cs = CreditSet(
        tenant_id=ctx.tenant.id, deal_id=deal.deal_id, version=version, situation=att.situation,
        rule_id=att.rule.id if att.rule is not None else None,
        rule_version=att.rule.version if att.rule is not None else 0, method=att.method, inputs=att.inputs,
        reason=reason, created_by=actor_id, created_at=ctx.now(),
    )
    ctx.session.add(cs)
    ctx.session.flush()
    lines = {}
    for key in sorted(att.lines, key=_order):
        line = CreditLine(
            tenant_id=ctx.tenant.id, set_id=cs.id, branch_id=key[0], user_id=key[1], roles=att.roles[key],
            percent=str(att.percents[key]), amount=att.lines[key],
        )
        ctx.session.add(line)
        lines[key] = line
    ctx.session.flush()
    return cs, lines


def _price(ctx: HookContext, deal: SettledDeal, lines: dict[Key, CreditLine],
           landed: dict[int, tuple[Period, Period]]) -> dict[int, Plan]:
    """Give each line its plan (the branch's plan for the person's role at the win) and commission."""
    roles = _roles(ctx, (k[1] for k in lines))
    plans: dict[int, Plan] = {}
    for key, line in lines.items():
        role = roles.get(key[1]) if key[1] is not None else None
        plan = plan_at(ctx, key[0], role, deal.won_at) if role else None
        if plan is None:
            continue
        plans[plan.id] = plan
        line.plan_id = plan.id
        line.commission = commission_of(ctx, plan, line.amount, landed[key[0]][0], key[1])  # type: ignore[arg-type]
    ctx.session.flush()
    return plans


def settle_won(ctx: HookContext, deal_id: int) -> SettledDeal | None:
    """Credit a won deal by its rule and pay its commission, once; ``None`` if the deal does not exist."""
    deal = ctx.session.scalar(select(Deal).where(Deal.id == deal_id))
    if deal is None:
        return None
    made = insert_ignoring_conflict(
        ctx.session, SettledDeal.__table__,
        {"tenant_id": ctx.tenant.id, "deal_id": deal.id, "amount": deal.amount, "refunded": ZERO,
         "current_set": 0, "won_at": deal.won_at, "created_at": ctx.now()},
        ["tenant_id", "deal_id"], None,
    )
    settled = _locked_deal(ctx, deal.id)
    if made is None:
        return settled  # settled by an earlier delivery
    att = attribute(ctx, deal, referral_sources=ctx.settings(PLUGIN)["referral_sources"])
    if att is None:
        return settled  # nobody in it belongs to a branch: nothing to settle (current_set stays 0)
    cs, lines = _new_set(ctx, settled, 1, att)
    landed = landings(ctx, (k[0] for k in lines), deal.won_at)
    _price(ctx, settled, lines, landed)
    rows = []
    for key, line in lines.items():
        common = {"landed": landed[key[0]], "branch_id": key[0], "user_id": key[1], "deal_id": deal.id,
                  "origin": "won", "origin_id": deal.id, "at": deal.won_at, "line_id": line.id,
                  "shared": len(landed) > 1}
        rows.append(_entry(ctx, key=f"won:{deal.id}:{_tag(key)}:credit", kind="credit", amount=line.amount,
                           base=line.amount, **common))
        if line.plan_id is not None:
            rows.append(_entry(ctx, key=f"won:{deal.id}:{_tag(key)}:commission", kind="commission",
                               amount=line.commission or ZERO, base=line.amount, plan_id=line.plan_id, **common))
    _write(ctx, rows)
    settled.current_set = cs.version
    if len(landed) == 1:
        settled.won_period_id = next(iter(landed.values()))[0].id
    ctx.session.flush()
    return settled


def _locked_deal(ctx: HookContext, deal_id: int) -> SettledDeal:
    row = ctx.session.scalar(
        select(SettledDeal).where(SettledDeal.deal_id == deal_id)
        .with_for_update().execution_options(populate_existing=True)
    )
    assert row is not None
    return row


def _current_lines(ctx: HookContext, settled: SettledDeal) -> tuple[CreditSet, dict[Key, CreditLine]]:
    cs = ctx.session.scalar(
        select(CreditSet).where(CreditSet.deal_id == settled.deal_id, CreditSet.version == settled.current_set)
    )
    assert cs is not None
    lines = ctx.session.scalars(select(CreditLine).where(CreditLine.set_id == cs.id)).all()
    return cs, {(line.branch_id, line.user_id): line for line in lines}


def _originals(ctx: HookContext, line_ids: list[int]) -> dict[tuple[int, str], int]:
    """The first entry of each line and kind: what a clawback or reversal takes back."""
    rows = ctx.session.execute(
        select(Entry.line_id, Entry.kind, func.min(Entry.id)).where(Entry.line_id.in_(line_ids))
        .group_by(Entry.line_id, Entry.kind)
    ).all()
    return {(line_id, kind): first for line_id, kind, first in rows}


def _balances(ctx: HookContext, lines: dict[Key, CreditLine]) -> dict[Key, Decimal]:
    """What is left of each credit line: its credit entries (the line's own and its clawbacks) summed."""
    by_id = {line.id: key for key, line in lines.items()}
    got = dict(ctx.session.execute(
        select(Entry.line_id, func.sum(Entry.amount))
        .where(Entry.line_id.in_(list(by_id)), Entry.kind == "credit").group_by(Entry.line_id)
    ).all())
    return {key: got.get(line.id, ZERO) for key, line in lines.items()}


def _net_plans(ctx: HookContext, lines: Iterable[CreditLine]) -> dict[int, Plan]:
    ids = sorted({line.plan_id for line in lines if line.plan_id is not None})
    return {p.id: p for p in ctx.session.scalars(select(Plan).where(Plan.id.in_(ids)))} if ids else {}


def _commission_to_date(line: CreditLine, plan: Plan | None, refunded: Decimal, amount: Decimal) -> Decimal:
    """How much of the line's commission the refunds so far took back (0 for a ``gross`` plan)."""
    if line.commission is None or plan is None or plan.base == "gross":
        return ZERO
    return proportional_to_date(line.commission, refunded, amount)


def settle_refund(ctx: HookContext, refund_id: int) -> bool:
    """Claw a refund back from the deal's current credits and commission, once; ``True`` if it wrote."""
    refund = ctx.session.scalar(select(Refund).where(Refund.id == refund_id))
    if refund is None:
        return False
    settled = settle_won(ctx, refund.deal_id)  # the deal_won delivery may come later; it then finds it settled
    if settled is None:
        return False
    made = insert_ignoring_conflict(
        ctx.session, Refunded.__table__,
        {"tenant_id": ctx.tenant.id, "refund_id": refund.id, "deal_id": refund.deal_id, "amount": refund.amount,
         "before": settled.refunded, "at": ctx.now()},
        ["tenant_id", "refund_id"], None,
    )
    if made is None:
        return False
    before, after = settled.refunded, settled.refunded + refund.amount
    settled.refunded = after
    ctx.session.flush()
    if settled.current_set == 0:
        return True
    _, lines = _current_lines(ctx, settled)
    plans = _net_plans(ctx, lines.values())
    back = clawback(_balances(ctx, lines), refund.amount)
    landed = landings(ctx, (k[0] for k in lines), refund.created_at)
    originals = _originals(ctx, [line.id for line in lines.values()])
    rows = []
    for key, line in sorted(lines.items(), key=lambda kv: _order(kv[0])):
        credit = back[key]
        common = {"landed": landed[key[0]], "branch_id": key[0], "user_id": key[1], "deal_id": refund.deal_id,
                  "origin": "refund", "origin_id": refund.id, "at": refund.created_at, "line_id": line.id,
                  "shared": len(landed) > 1}
        if credit:
            rows.append(_entry(ctx, key=f"refund:{refund.id}:{_tag(key)}:credit", kind="credit", amount=credit,
                               base=credit, original_id=originals.get((line.id, "credit")), **common))
        if line.plan_id is not None:
            plan = plans.get(line.plan_id)
            paid = (_commission_to_date(line, plan, before, settled.amount)
                    - _commission_to_date(line, plan, after, settled.amount))
            if paid or credit:
                rows.append(_entry(ctx, key=f"refund:{refund.id}:{_tag(key)}:commission", kind="commission",
                                   amount=paid, base=credit, plan_id=line.plan_id,
                                   original_id=originals.get((line.id, "commission")), **common))
    _write(ctx, rows)
    if len(landed) == 1:
        ctx.session.execute(
            update(Refunded).where(Refunded.id == made).values(period_id=next(iter(landed.values()))[0].id)
            .execution_options(synchronize_session=False)
        )
    return True


def override(ctx: HookContext, deal_id: int, lines_in: list[dict[str, Any]], reason: str,
             actor_id: int | None) -> CreditSet:
    """A new version of a deal's credits, by an admin: the old lines reversed, the new ones booked, now.

    Both net of the refunds so far, so the deal still adds up to its amount
    minus its refunds; later refunds claw back from the new lines.
    """
    settled = settle_won(ctx, deal_id)
    if settled is None:
        raise NotFound(f"deal {deal_id} not found")
    at = ctx.now()
    new_att = manual(settled.amount, lines_in)
    old_lines: dict[Key, CreditLine] = {}
    if settled.current_set:
        _, old_lines = _current_lines(ctx, settled)
    version = settled.current_set + 1 if settled.current_set else _next_version(ctx, deal_id)
    new_att.inputs["replaces_version"] = settled.current_set or None
    cs, new_lines = _new_set(ctx, settled, version, new_att, reason=reason, actor_id=actor_id)
    landed = landings(ctx, [k[0] for k in old_lines] + [k[0] for k in new_lines], at)
    _price(ctx, settled, new_lines, landed)
    refunded = settled.refunded
    rows: list[dict[str, Any]] = []
    if old_lines:
        plans = _net_plans(ctx, old_lines.values())
        left = _balances(ctx, old_lines)
        originals = _originals(ctx, [line.id for line in old_lines.values()])
        for key, line in sorted(old_lines.items(), key=lambda kv: _order(kv[0])):
            common = {"landed": landed[key[0]], "branch_id": key[0], "user_id": key[1], "deal_id": deal_id,
                      "origin": "override", "origin_id": cs.id, "at": at, "line_id": line.id,
                      "shared": len(landed) > 1}
            credit = -left[key]
            rows.append(_entry(ctx, key=f"override:{cs.id}:reverse:{_tag(key)}:credit", kind="credit",
                               amount=credit, base=credit, original_id=originals.get((line.id, "credit")), **common))
            if line.plan_id is not None and line.commission is not None:
                paid = -(line.commission - _commission_to_date(line, plans.get(line.plan_id), refunded, settled.amount))
                rows.append(_entry(ctx, key=f"override:{cs.id}:reverse:{_tag(key)}:commission", kind="commission",
                                   amount=paid, base=credit, plan_id=line.plan_id,
                                   original_id=originals.get((line.id, "commission")), **common))
    plans = _net_plans(ctx, new_lines.values())
    taken = clawed_to_date({k: v.amount for k, v in new_lines.items()}, refunded)
    for key, line in sorted(new_lines.items(), key=lambda kv: _order(kv[0])):
        common = {"landed": landed[key[0]], "branch_id": key[0], "user_id": key[1], "deal_id": deal_id,
                  "origin": "override", "origin_id": cs.id, "at": at, "line_id": line.id,
                      "shared": len(landed) > 1}
        credit = line.amount - taken[key]
        rows.append(_entry(ctx, key=f"override:{cs.id}:{_tag(key)}:credit", kind="credit", amount=credit,
                           base=credit, **common))
        if line.plan_id is not None and line.commission is not None:
            paid = line.commission - _commission_to_date(line, plans.get(line.plan_id), refunded, settled.amount)
            rows.append(_entry(ctx, key=f"override:{cs.id}:{_tag(key)}:commission", kind="commission",
                               amount=paid, base=credit, plan_id=line.plan_id, **common))
    _write(ctx, rows)
    settled.current_set = version
    ctx.session.flush()
    return cs


def _next_version(ctx: HookContext, deal_id: int) -> int:
    top = ctx.session.scalar(select(func.max(CreditSet.version)).where(CreditSet.deal_id == deal_id))
    return (top or 0) + 1
