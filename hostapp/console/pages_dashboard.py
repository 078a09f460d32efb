"""The dashboard: today's intake by source and team, unowned leads, the stage funnel, a rep's own numbers.

Plugins on for the tenant add their panels (``ConsolePages.panels``): the
pool its inflow and outflow, settlement today's division by branch, SMS
nurturing its messages by status.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from pelago.core.models import STAGES, Activity, Deal, Lead, Team
from pelago.core.routing import day_start
from pelago.core.services import leads as lead_svc

from ..auth import ctx
from . import bp
from .kit import console_bars
from .web import console, render_page, runtime


@dataclass(frozen=True)
class ShownPanel:
    """A plugin's dashboard panel as the template draws it: its id, title, template and values."""

    id: str
    title: str
    template: str
    values: Mapping[str, Any]


def _panels(c: Any) -> list[ShownPanel]:
    """The panels of the plugins on for the tenant that this user's role sees, in the plugins' order."""
    me = console()
    shown = []
    for spec in runtime().host.specs.values():
        if spec.console is None or spec.name not in c.tenant.enabled:
            continue
        for panel in spec.console.panels:
            if not me.at_least(panel.role):
                continue
            values = panel.data(c)
            if values is not None:
                shown.append(ShownPanel(f"panel-{spec.name}-{panel.name}", panel.title, panel.template, values))
    return shown


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
        by_source=console_bars([(s or "—", n) for s, n in by_source]),
        by_team=console_bars([(teams.get(t, "—") if t else "—", n) for t, n in by_team]),
        unowned=unowned,
        funnel=console_bars([(s, funnel.get(s, 0)) for s in STAGES]),
        mine=mine,
        panels=_panels(c),
    )
