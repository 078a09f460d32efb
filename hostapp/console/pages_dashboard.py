"""The dashboard: today's intake by source and team, unowned leads, the stage funnel, a rep's own numbers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from pelago.core.models import STAGES, Activity, Deal, Lead, Team
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
    )
