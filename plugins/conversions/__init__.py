"""Plugin ``conversions``: report lifecycle moments back to ad platforms (数据回传), and each channel's funnel.

Rules say which moment of which channel's leads counts and what the platform
calls it; each (lead, rule) becomes one outbox row, sent once by leased
workers through an adapter (a hook; ``generic`` is built in). The funnel
report shows what each channel's leads became against what was spent.
See docs/plugins/conversions.md.
"""

from datetime import timedelta
from pathlib import Path

from pelago.plugin import ConsolePages, Job, MenuEntry, Periodic, PluginSpec

from . import api, cli, console, hooks, hookspecs, jobs, models, schemas

plugin = PluginSpec(
    name="conversions",
    title="Conversions back to ad platforms (数据回传)",
    description="Lifecycle moments reported once per lead and rule to ad platforms; each channel's funnel.",
    version="0.1.0",
    core=">=0.1,<0.2",
    settings=schemas.Settings,
    blueprint=api.blp,
    commands=cli.commands,
    periodic=(Periodic("send", jobs.send, timedelta(minutes=1)),),
    jobs=(Job("send", jobs.send),),
    migrations=Path(__file__).parent / "migrations",
    hooks=hooks,
    hookspecs=hookspecs,
    default_enabled=False,
    console=ConsolePages(
        console.pages,
        menu=(MenuEntry("Conversions", "rule_list", role="manager"),
              MenuEntry("Channel funnel", "funnel_page", role="manager")),
        messages=console.MESSAGES,
    ),
)

__all__ = ["models", "plugin"]
