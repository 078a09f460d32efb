"""Plugin ``scheduling``: K12 course scheduling (排课), attendance and the class-hour ledger.

Campuses, rooms, teachers, courses and class-hour packages; classes with
weekly series expanded in the campus's time around Chinese holidays; lessons
that can never double-book a teacher, room or student; roll-call that drives
an append-only ledger of hours and recognised revenue; trials from CRM leads;
refunds of unused hours as core refunds; K12 policy as tenant settings.
See docs/plugins/scheduling.md.
"""

from datetime import timedelta
from pathlib import Path

from pelago.plugin import ConsolePages, MenuEntry, Periodic, PluginSpec

from . import api, cli, console, hooks, hookspecs, jobs, schemas

plugin = PluginSpec(
    name="scheduling",
    title="Course scheduling (排课)",
    description="Classes, recurring lessons, attendance and class-hour consumption.",
    version="0.2.0",
    core=">=0.1,<0.2",
    settings=schemas.Settings,
    blueprint=api.blp,
    commands=cli.commands,
    periodic=(
        Periodic("consume", jobs.consume, timedelta(minutes=15)),
        Periodic("expire", jobs.expire, timedelta(hours=6)),
    ),
    migrations=Path(__file__).parent / "migrations",
    hooks=hooks,
    hookspecs=hookspecs,
    default_enabled=False,
    console=ConsolePages(
        console.pages,
        menu=(MenuEntry("Timetable", "week"), MenuEntry("Student accounts", "account_list")),
        messages=console.MESSAGES,
    ),
)
