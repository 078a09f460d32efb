"""Test plugin: records every hook call it receives, and can be told to decide.

Its settings drive its decisions so tests can switch behaviour per tenant:
``owner_user_id`` makes ``choose_owner`` pick that user, ``veto_user_id`` makes
``check_assign`` refuse that user, ``exclude_user_id`` excludes a candidate,
``veto_stage`` refuses moves to that stage, ``only_source`` limits ``choose_team``
to leads of that source.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click
import flask
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy import func, select, text

from pelago.core import OwnerChoice, Periodic, PluginSpec, TeamChoice, hookimpl
from pelago.core.hookspecs import EVENTS
from pelago.core.spec import Job
from pelago.hostapp.cli import pass_runtime
from pelago.plugin import (
    ConsolePages,
    DashboardPanel,
    Lead,
    MenuEntry,
    TimelineEntry,
    console_redirect,
    console_requires,
    console_text,
    current_context,
    render_page,
)

CALLS: list[tuple[str, int, Any]] = []
#: how the "Broken" dashboard panel fails: "sql" (a failed statement: PostgreSQL aborts the transaction),
#: "raise" (a plain exception); unset, it shows nothing (tests/test_console.py sets it)
PANEL_FAULT: list[str] = []


def calls(name: str, tenant_id: int | None = None) -> list[Any]:
    return [c[2] for c in CALLS if c[0] == name and (tenant_id is None or c[1] == tenant_id)]


class Settings(Schema):
    threshold = fields.Integer(load_default=10, validate=validate.Range(min=0, max=100))
    token = fields.String(load_default="", metadata={"secret": True})
    team_id = fields.Integer(load_default=None, allow_none=True)
    owner_user_id = fields.Integer(load_default=None, allow_none=True)
    veto_user_id = fields.Integer(load_default=None, allow_none=True)
    exclude_user_id = fields.Integer(load_default=None, allow_none=True)
    veto_stage = fields.String(load_default=None, allow_none=True)
    only_source = fields.String(load_default=None, allow_none=True)


class Hooks:
    @hookimpl
    def choose_team(self, ctx: Any, leads: Any) -> Any:
        CALLS.append(("choose_team", ctx.tenant.id, [lead.phone for lead in leads]))
        CALLS.append(("choose_team_ids", ctx.tenant.id, [(lead.id, lead.new_id) for lead in leads]))
        settings = ctx.settings("recorder")
        if not settings["team_id"]:
            return None
        choice = TeamChoice(settings["team_id"], "recorder says so", rule="recorder")
        only = settings["only_source"]
        return [choice if only is None or lead.source == only else None for lead in leads]

    @hookimpl
    def exclude_candidates(self, ctx: Any, team: Any, candidates: Any, leads: Any) -> Any:
        CALLS.append(("exclude_candidates", ctx.tenant.id, [c.id for c in candidates]))
        uid = ctx.settings("recorder")["exclude_user_id"]
        return {uid: "excluded by recorder"} if uid else None

    @hookimpl
    def choose_owner(self, ctx: Any, team: Any, candidates: Any, leads: Any) -> Any:
        CALLS.append(("choose_owner", ctx.tenant.id, [c.id for c in candidates]))
        uid = ctx.settings("recorder")["owner_user_id"]
        if uid and uid in {c.id for c in candidates}:
            return [OwnerChoice(uid, "recorder picked", rule="recorder")] * len(leads)
        return None

    @hookimpl
    def check_assign(self, ctx: Any, assignments: Any) -> Any:
        uid = ctx.settings("recorder")["veto_user_id"]
        out = {}
        for k, a in enumerate(assignments):
            CALLS.append(("check_assign", ctx.tenant.id, a.user.id if a.user else None))
            if a.user is not None and a.user.id == uid:
                out[k] = "recorder vetoes this user"
        return out

    @hookimpl
    def check_stage_change(self, ctx: Any, lead: Any, old: str, new: str) -> Any:
        CALLS.append(("check_stage_change", ctx.tenant.id, (old, new)))
        return "recorder vetoes this stage" if new == ctx.settings("recorder")["veto_stage"] else None

    @hookimpl
    def lead_timeline(self, ctx: Any, lead_id: int) -> Any:
        CALLS.append(("lead_timeline", ctx.tenant.id, lead_id))
        first = ctx.session.scalar(select(Lead.created_at).where(Lead.id == lead_id))
        return [TimelineEntry(first + timedelta(seconds=1), "recorder", "Recorded lead {lead}", "a detail",
                              {"lead": lead_id})]

    @hookimpl
    def privacy_export(self, ctx: Any, lead_ids: Any) -> Any:
        CALLS.append(("privacy_export", ctx.tenant.id, list(lead_ids)))
        return {"seen_leads": list(lead_ids)}


def _event_impl(name: str) -> Any:
    def impl(ctx: Any, event: Any) -> None:
        CALLS.append((name, ctx.tenant.id, {"event_id": ctx.event_id, "items": [dict(i) for i in event.items]}))

    impl.__name__ = name
    return hookimpl(impl)


for _name in EVENTS:
    setattr(Hooks, _name, staticmethod(_event_impl(_name)))


def tick(ctx: Any) -> None:
    CALLS.append(("periodic.tick", ctx.tenant.id, ctx.now()))


blp = Blueprint("recorder", __name__, description="Test plugin routes")


class Ping(Schema):
    tenant = fields.String(required=True)
    threshold = fields.Integer(required=True)


@blp.route("/ping", methods=["GET"])
@blp.response(200, Ping)
def ping() -> Any:
    from pelago.hostapp.auth import ctx

    c = ctx()
    return {"tenant": c.tenant.slug, "threshold": c.settings("recorder")["threshold"]}


@click.group("recorder")
def commands() -> None:
    """The recorder test plugin's commands."""


@commands.command()
@click.argument("name")
def hello(name: str) -> None:
    click.echo(f"recorder says hello to {name}")


@commands.command("tenants")
@pass_runtime
def count_tenants(runtime: Any) -> None:
    """Say how many tenants have the recorder on (a command that needs the runtime)."""
    from pelago.core.scheduler import tenants_with

    click.echo(f"recorder is on for {len(tenants_with(runtime, 'recorder'))} tenants")


def echo(ctx: Any, value: int) -> int:
    CALLS.append(("job.echo", ctx.tenant.id, value))
    return value


# Its console page (the plugin page contract's test): the hook calls this tenant recorded.
pages = flask.Blueprint("recorder_pages", __name__, template_folder="templates")


@pages.get("/")
def recorded() -> Any:
    ctx = current_context()
    return render_page("recorder/recorded.html", count=len([c for c in CALLS if c[1] == ctx.tenant.id]))


@pages.post("/forget")
@console_requires("admin")
def forget() -> Any:
    ctx = current_context()
    CALLS[:] = [c for c in CALLS if c[1] != ctx.tenant.id]
    return console_redirect(".recorded", console_text("Forgotten."))


def lead_count(ctx: Any) -> Any:
    """The recorder's dashboard panel: this tenant's leads, counted in SQL (the panel contract's test)."""
    return {"leads": ctx.session.scalar(select(func.count()).select_from(Lead))}


def broken_panel(ctx: Any) -> Any:
    """A dashboard panel that fails as :data:`PANEL_FAULT` says (the dashboard must survive it)."""
    if not PANEL_FAULT:
        return None
    if PANEL_FAULT[0] == "sql":
        ctx.session.execute(text("SELECT no_such_column FROM recorder_no_such_table"))
    if PANEL_FAULT[0] == "template":  # the data is fine; drawing it fails
        return {"leads": _Undrawable()}
    raise RuntimeError("recorder: broken panel")


class _Undrawable:
    """A value whose rendering raises (a template's failure, not the data's)."""

    def __str__(self) -> str:
        raise RuntimeError("recorder: this value cannot be drawn")


plugin = PluginSpec(
    name="recorder",
    title="Recorder (test)",
    description="Records hook calls for the tests.",
    settings=Settings,
    blueprint=blp,
    commands=commands,
    hooks=Hooks(),
    periodic=(Periodic("tick", tick, timedelta(minutes=5)),),
    jobs=(Job("echo", echo),),
    console=ConsolePages(pages, menu=(MenuEntry("Recorded calls", "recorded"),),
                         messages={"zh-CN": {"Recorded calls": "已记录的调用", "Forgotten.": "已清除。",
                                             "Recorded lead {lead}": "已记录线索 {lead}",
                                             "Leads recorded": "记录的线索", "recorder": "记录器",
                                             "Broken panel": "坏面板"}},
                         panels=(DashboardPanel("broken", "Broken panel", "recorder/_panel.html", broken_panel,
                                                "manager"),
                                 DashboardPanel("leads", "Leads recorded", "recorder/_panel.html", lead_count,
                                                "manager"))),
)
