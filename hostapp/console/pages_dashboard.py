"""The dashboard: today's intake by source and team, unowned leads, the stage funnel, a rep's own numbers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from pelago.core.models import STAGES, Activity, Deal, Lead, OwnershipChange, Team
from pelago.core.routing import day_start
from pelago.core.services import leads as lead_svc

from ..auth import ctx
from . import bp
from .web import console, render_page


def _bars(rows: list[tuple[str, int]], width: int = 320) -> dict[str, Any]:
    """What the template draws as an inline SVG bar chart (server-side: no chart library)."""
    top = max((n for _label, n in rows), default=0) or 1
    return {"rows": [(label, n, round(n / top * (width - 140))) for label, n in rows],
            "height": 22 * len(rows) + 4, "width": width}


def _flows(c: Any, today: Any, days: int = 30) -> dict[str, Any]:
    """Leads that lost their owner (into the pool) and that got one back from nobody, per day for ``days`` days.

    Read from the core's ownership ledger, so it counts releases, recycles,
    claims and distributions alike; a manager's or admin's view (reps see only their own leads).
    """
    since = today - timedelta(days=days - 1)
    rows = c.session.execute(
        select(OwnershipChange.at, OwnershipChange.from_user_id, OwnershipChange.to_user_id)
        .where(OwnershipChange.at >= since,
               (OwnershipChange.from_user_id.is_(None)) != (OwnershipChange.to_user_id.is_(None)))
    ).all()
    tz = c.tenant.tz
    start = since.date()
    inflow = [0] * days
    outflow = [0] * days
    for at, from_user, _to_user in rows:
        i = (at.astimezone(tz).date() - start).days
        if 0 <= i < days:
            (inflow if from_user is not None else outflow)[i] += 1
    top = max([*inflow, *outflow, 1])
    bars = [(start + timedelta(days=i), inflow[i], outflow[i], round(inflow[i] / top * 80), round(outflow[i] / top * 80))
            for i in range(days)]
    return {"bars": bars, "total_in": sum(inflow), "total_out": sum(outflow)}


@bp.get("/")
def dashboard() -> Any:
    c = ctx()
    session = c.session
    today = day_start(c)
    visible = lead_svc.visible(c).subquery()
    by_source = session.execute(
        select(visible.c.source, func.count()).where(visible.c.created_at >= today)
        .group_by(visible.c.source).order_by(func.count().desc())
    ).all()
    teams = dict(session.execute(select(Team.id, Team.name)).all())
    by_team = session.execute(
        select(visible.c.team_id, func.count()).where(visible.c.created_at >= today)
        .group_by(visible.c.team_id).order_by(func.count().desc())
    ).all()
    unowned = session.scalar(select(func.count()).select_from(visible).where(visible.c.owner_id.is_(None))) or 0
    funnel = dict(session.execute(select(visible.c.stage, func.count()).group_by(visible.c.stage)).all())
    me = console().user.id
    mine = {
        "open": session.scalar(select(func.count()).select_from(Lead).where(
            Lead.owner_id == me, Lead.stage.not_in(("won", "lost")))) or 0,
        "activities": session.scalar(select(func.count()).select_from(Activity).where(
            Activity.user_id == me, Activity.occurred_at >= today)) or 0,
        "deals": session.scalar(select(func.count()).select_from(Deal).where(
            Deal.owner_id == me, Deal.won_at >= today - timedelta(days=today.day - 1))) or 0,
    }
    return render_page(
        "console/dashboard.html",
        by_source=_bars([(s or "—", n) for s, n in by_source]),
        by_team=_bars([(teams.get(t, "—") if t else "—", n) for t, n in by_team]),
        unowned=unowned,
        funnel=_bars([(s, funnel.get(s, 0)) for s in STAGES]),
        mine=mine,
        flows=_flows(c, today) if "pool" in c.tenant.enabled and console().at_least("manager") else None,
    )
