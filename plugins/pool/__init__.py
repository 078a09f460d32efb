"""Plugin ``pool``: the public pool (公海) of unworked leads.

Held leads that a pool's rules call unworked go back to the pool (the sweep);
others claim them, one winner per lead, within daily limits and hold caps.
See docs/plugins/pool.md.
"""

from datetime import timedelta
from pathlib import Path

from pelago.plugin import ConsolePages, MenuEntry, Periodic, PluginSpec

from . import api, cli, console, hooks, hookspecs, jobs, schemas

plugin = PluginSpec(
    name="pool",
    title="Public pool (公海)",
    description="Unworked leads return to a pool by rule; others claim them, one winner per lead.",
    version="0.1.0",
    core=">=0.1,<0.2",
    settings=schemas.Settings,
    blueprint=api.blp,
    commands=cli.commands,
    periodic=(Periodic("sweep", jobs.sweep, timedelta(hours=1)),),
    migrations=Path(__file__).parent / "migrations",
    hooks=hooks,
    hookspecs=hookspecs,
    default_enabled=False,
    console=ConsolePages(
        console.pages,
        menu=(MenuEntry("Pool", "pool_list"), MenuEntry("Sweep preview", "sweep_preview", role="manager")),
        messages=console.MESSAGES,
        panels=console.PANELS,
    ),
)
