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

from markupsafe import Markup
from sqlalchemy import func, select

from pelago.core.models import STAGES, Activity, Deal, Lead, Team
from pelago.core.routing import day_start
from pelago.core.services import leads as lead_svc
from pelago.core.spec import DashboardPanel

from ..auth import ctx
from . import bp
from .kit import console_bars
from .web import console, render_page, runtime


@dataclass(frozen=True)
class ShownPanel:
    """A plugin's dashboard panel as the dashboard shows it: its id, title and drawn body.

    ``html`` is ``None`` when the plugin's ``data`` or the rendering of its
    template failed: the panel is shown as unavailable (its title stays, so
    the user sees which one).
    """

    id: str
    title: str
    html: Markup | None


class _Failed(Exception):
    """A panel's ``data`` or template raised (logged already)."""


def _panels(c: Any) -> list[ShownPanel]:
    """The panels of the plugins on for the tenant that this user's role sees, in the plugins' order.

    One plugin's failing panel does not take the dashboard down: it is
    logged and shown as unavailable, and the others are drawn.
    """
    me = console()
    shown = []
    for spec in runtime().host.specs.values():
        if spec.console is None or spec.name not in c.tenant.enabled:
            continue
        for panel in spec.console.panels:
            if not me.at_least(panel.role):
                continue
            pid = f"panel-{spec.name}-{panel.name}"
            try:
                html = _draw(c, spec.name, panel)
            except _Failed:
                shown.append(ShownPanel(pid, panel.title, None))
                continue
            if html is not None:
                shown.append(ShownPanel(pid, panel.title, html))
    return shown


def _draw(c: Any, plugin: str, panel: DashboardPanel) -> Markup | None:
    """``panel.data(c)`` rendered with ``panel.template`` (``None``: no panel), in a savepoint.

    Both are the plugin's code: a template that raises (a missing attribute of
    a strict value, a filter given the wrong type, a lazy load) costs only its
    panel, like failing ``data``. Rendered here rather than included by the
    dashboard's template, where an exception could only be the page's 500.
    The savepoint: if either raises, the session is as before (on PostgreSQL
    a failed statement would otherwise leave the transaction aborted, and
    every later query of the page failing).
    """
    try:
        with c.session.begin_nested():
            values: Mapping[str, Any] | None = panel.data(c)
            if values is None:
                return None
            return Markup(render_page(panel.template, panel=values))
    except Exception as exc:  # noqa: BLE001 - a plugin's bug is logged, and costs only its panel
        runtime().log.exception("dashboard panel %r of plugin %s failed; shown as unavailable", panel.name, plugin)
        raise _Failed from exc


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
