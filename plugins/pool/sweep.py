"""The sweep: held leads that a rule says are unworked go back to their pool.

Set-based and batched. The tenant's leads are walked by ``(tenant_id, id)``
(the core's ``ix_core_lead_list``) in windows of ``10 × batch`` leads; in each
window one ``SELECT … FOR UPDATE SKIP LOCKED`` picks, with every pool's rules
compiled into one SQL ``CASE`` (:mod:`.rules`), the leads to recycle (at most
``batch``) and those to remind; then a handful of statements release them
(the core's :func:`~pelago.plugin.release_leads`: owner cleared, ledger rows,
one ``lead_released`` event, ``check_assign`` asked; then the pool entries)
and record the reminders, and the transaction commits. No transaction holds more
than one batch, memory holds one batch, and a lead a user is changing right
now (its row locked) is left for the next sweep rather than waited for.

Idempotent: a released lead has no owner, so a second run finds nothing; a
reminder is recorded under (lead, owner, due date) with a unique constraint, so
it is sent once. A dry run runs the same selection without locks and writes
nothing, not even its history row.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, null, or_, select, update

from pelago.plugin import HookContext, Lead, Page, decode_cursor, encode_cursor

from . import counters, pools, rules
from .models import Reminder, Sweep
from .rules import RECYCLABLE, Scope
from .service import Release, put_back

L = Lead.__table__.c
R = Reminder.__table__
PLUGIN = "pool"
WINDOW = 10  # leads scanned per batch, as a multiple of the batch size


@dataclass
class Plan:
    """Every pool's rules, compiled for one moment."""

    now: datetime
    pool: Any  # SQL: the pool each held lead belongs to
    recycle: Any | None  # SQL: the rule recycling the lead now, or NULL
    remind: Any | None  # SQL: the rule recycling it by the end of its pool's reminder window, or NULL
    settings: dict[int, Any]

    @property
    def idle(self) -> bool:
        return self.recycle is None and self.remind is None


def plan(ctx: HookContext, now: datetime) -> Plan:
    all_pools = pools.load(ctx)
    team_pools = [p for p in all_pools.values() if p.team_id is not None]
    default = pools.home(all_pools, None)
    scopes = [Scope(p.id, p.team_id) for p in team_pools]
    scopes.append(Scope(default.id, None, tuple(p.team_id for p in team_pools if p.team_id is not None)))
    settings = {s.pool_id: all_pools[s.pool_id].settings for s in scopes}
    tz = ctx.tenant.tz
    recycle = rules.rule_expression([(s, settings[s.pool_id], now) for s in scopes], tz)
    ahead = [(s, settings[s.pool_id], now + timedelta(days=settings[s.pool_id]["remind_days_before"]))
             for s in scopes if settings[s.pool_id]["remind_days_before"]]
    remind = rules.rule_expression(ahead, tz) if ahead else None
    return Plan(now, rules.pool_expression(scopes), recycle, remind, settings)


@dataclass
class Report:
    """What a sweep did (or, dry, would do)."""

    dry_run: bool
    scanned: int = 0
    released: int = 0
    reminded: int = 0
    vetoed: int = 0
    batches: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)
    batch_seconds: list[float] = field(default_factory=list)  # each batch's transaction, in order
    sweep_id: int | None = None
    moves: list[dict[str, Any]] = field(default_factory=list)  # dry run with keep=True: what would move

    @property
    def longest_batch(self) -> float:
        """Seconds of the longest batch's transaction."""
        return max(self.batch_seconds, default=0.0)


def _selection(p: Plan) -> Any:
    cols = [L.id, L.owner_id, p.pool.label("pool_id"),
            (p.recycle if p.recycle is not None else null()).label("recycle"),
            (p.remind if p.remind is not None else null()).label("remind")]
    if p.remind is not None:
        # what rules.next_due reads of a lead, for the reminders' due dates; without reminders in any
        # pool the batch carries no more than the release needs (no JSON, no timestamps to decode)
        cols += [L.source, L.attributes, L.stage, L.is_customer, L.locked, L.assigned_at, L.created_at,
                 L.last_activity_at, L.stage_changed_at]
    due = [e for e in (p.recycle, p.remind) if e is not None]
    return select(*cols).where(RECYCLABLE, or_(*(e.is_not(None) for e in due)))


def run(
    ctx: HookContext, *, dry_run: bool = False, trigger: str = "periodic", batch: int | None = None,
    progress: Callable[[int], None] | None = None, keep: bool = False,
) -> Report:
    """Sweep ``ctx.tenant``: one transaction per batch (committed here unless ``dry_run``)."""
    session, tenant_id = ctx.session, ctx.tenant.id
    now = ctx.now()
    batch = batch or ctx.settings(PLUGIN).get("sweep_batch") or 1000
    report = Report(dry_run)
    p = plan(ctx, now)
    if not dry_run:
        row = Sweep(tenant_id=tenant_id, trigger=trigger, state="running", started_at=now)
        session.add(row)
        session.flush()
        report.sweep_id = row.id
        session.commit()
    try:
        if not p.idle:
            _walk(ctx, p, batch, report, progress, keep)
    except BaseException as exc:
        session.rollback()
        if not dry_run:
            _finish(ctx, report, "failed", f"{type(exc).__name__}: {exc}")
        raise
    if not dry_run:
        _finish(ctx, report, "done", None)
    return report


def _finish(ctx: HookContext, report: Report, state: str, error: str | None) -> None:
    ctx.session.execute(
        update(Sweep).where(Sweep.id == report.sweep_id).values(
            state=state, finished_at=ctx.now(), scanned=report.scanned, released=report.released,
            reminded=report.reminded, vetoed=report.vetoed, batches=report.batches, by_rule=report.by_rule,
            error=error,
        )
    )
    ctx.session.commit()


def _walk(
    ctx: HookContext, p: Plan, batch: int, report: Report, progress: Callable[[int], None] | None, keep: bool,
) -> None:
    session, tenant_id = ctx.session, ctx.tenant.id
    selection = _selection(p).where(L.tenant_id == tenant_id)
    # Every query below has both ends of its id range: an open-ended one may be planned as a scan of
    # the whole table. Leads created after this moment are new, so not due.
    top = session.scalar(select(func.max(L.id)).where(L.tenant_id == tenant_id)) or 0
    last = 0
    while last < top:
        started = time.perf_counter()
        # The window's end: the id ``WINDOW × batch`` leads on (an index-only scan), or the last lead.
        hi = session.scalar(
            select(L.id).where(L.tenant_id == tenant_id, L.id > last, L.id <= top).order_by(L.id)
            .offset(WINDOW * batch - 1).limit(1)
        )
        full_window = hi is not None
        hi = hi if hi is not None else top
        stmt = selection.where(L.id > last, L.id <= hi).order_by(L.id).limit(batch)
        if not report.dry_run:
            stmt = stmt.with_for_update(skip_locked=True)
        rows = session.execute(stmt).all()
        end = rows[-1].id if len(rows) == batch else hi
        if full_window and end == hi:
            scanned = WINDOW * batch
        else:
            scanned = session.scalar(select(func.count()).select_from(Lead.__table__).where(
                L.tenant_id == tenant_id, L.id > last, L.id <= end)) or 0
        _apply(ctx, p, rows, report, keep)
        if not report.dry_run:
            session.commit()
        report.batches += 1
        report.batch_seconds.append(time.perf_counter() - started)
        report.scanned += scanned
        if progress is not None:
            progress(scanned)
        last = end


def _apply(ctx: HookContext, p: Plan, rows: list[Any], report: Report, keep: bool) -> None:
    recycle = [r for r in rows if r.recycle is not None]
    remind = [r for r in rows if r.recycle is None and r.remind is not None]
    if report.dry_run:
        for r in recycle:
            report.released += 1
            report.by_rule[r.recycle] = report.by_rule.get(r.recycle, 0) + 1
            if keep:
                report.moves.append({"lead_id": r.id, "owner_id": r.owner_id, "pool_id": r.pool_id,
                                     "rule": r.recycle})
        report.reminded += len(remind)
        return
    if recycle:
        moved = put_back(ctx, [Release(r.id, r.owner_id, r.pool_id, r.recycle) for r in recycle],
                         reason="recycled", now=p.now)
        report.vetoed += len(moved.refused)
        report.released += len(moved.moved)
        done = set(moved.moved)
        for r in recycle:
            if r.id in done:
                report.by_rule[r.recycle] = report.by_rule.get(r.recycle, 0) + 1
    if remind:
        report.reminded += _remind(ctx, p, remind)


def _remind(ctx: HookContext, p: Plan, rows: list[Any]) -> int:
    """Record and announce reminders not sent yet for this holding and due date."""
    tz = ctx.tenant.tz
    values = []
    for r in rows:
        due = rules.next_due(tz, p.settings[r.pool_id], r)
        if due is None:  # pragma: no cover - the SQL said a rule is due within the window
            continue
        values.append({"tenant_id": ctx.tenant.id, "lead_id": r.id, "owner_id": r.owner_id, "due_at": due.at,
                       "rule": due.rule, "sent_at": p.now, "_pool": r.pool_id})
    if not values:
        return 0
    insert_ = counters.dialect_insert(ctx.session)
    pool_of = {v["lead_id"]: v.pop("_pool") for v in values}
    sent = ctx.session.execute(
        insert_(R).on_conflict_do_nothing(index_elements=[R.c.tenant_id, R.c.lead_id, R.c.owner_id, R.c.due_at])
        .returning(R.c.lead_id, R.c.owner_id, R.c.due_at, R.c.rule),
        values,
    ).all()
    if sent:
        ctx.emit("pool_recycle_due", [
            {"lead_id": s.lead_id, "owner_id": s.owner_id, "pool_id": pool_of[s.lead_id], "rule": s.rule,
             "due_at": s.due_at, "days_left": rules.days_left(tz, p.now, s.due_at)}
            for s in sorted(sent, key=lambda s: s.lead_id)
        ])
    return len(sent)


# --- preview --------------------------------------------------------------------------------------


def preview(ctx: HookContext, pool_id: int | None, cursor: str | None, limit: int) -> Page[dict[str, Any]]:
    """Leads the sweep would recycle now, under which rule: newest first by id, nothing written."""
    before = decode_cursor(cursor) if cursor else None
    p = plan(ctx, ctx.now())
    if p.recycle is None:
        return Page([], None)
    stmt = select(L.id, L.owner_id, p.pool.label("pool_id"), p.recycle.label("rule")).where(
        L.tenant_id == ctx.tenant.id, RECYCLABLE, p.recycle.is_not(None)
    )
    if pool_id is not None:
        stmt = stmt.where(p.pool == pool_id)
    if before is not None:
        stmt = stmt.where(L.id < before)
    rows = ctx.session.execute(stmt.order_by(L.id.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    items = [{"lead_id": r.id, "owner_id": r.owner_id, "pool_id": r.pool_id, "rule": r.rule} for r in rows]
    return Page(items, encode_cursor(rows[-1].id) if more and rows else None)
