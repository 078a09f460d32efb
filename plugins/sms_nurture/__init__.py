"""Plugin ``sms_nurture``: automatic SMS nurturing of leads telesales could not convert.

Sequences of templated steps; enrolment by trigger or by hand, one per (lead,
sequence, pass); quiet hours, validity, caps, suppression and consent checked
at the moment of sending; exactly-once dispatch through an outbox with leases
and reconciliation; providers are plugins (``log`` and ``http`` built in).
See docs/plugins/sms_nurture.md.
"""

from datetime import timedelta
from pathlib import Path

from pelago.plugin import ConsolePages, Job, MenuEntry, Periodic, PluginSpec

from . import api, cli, console, hooks, hookspecs, jobs, schemas

plugin = PluginSpec(
    name="sms_nurture",
    title="SMS nurturing",
    description="Automatic SMS sequences for unconverted leads, with quiet hours and opt-out.",
    version="0.1.0",
    core=">=0.1,<0.2",
    settings=schemas.Settings,
    blueprint=api.blp,
    commands=cli.commands,
    periodic=(
        Periodic("dispatch", jobs.dispatch, timedelta(minutes=1)),
        Periodic("scan", jobs.scan, timedelta(minutes=10)),
    ),
    jobs=(Job("dispatch", jobs.dispatch, timeout=600),),
    migrations=Path(__file__).parent / "migrations",
    hooks=hooks,
    hookspecs=hookspecs,
    default_enabled=False,
    console=ConsolePages(
        console.pages,
        menu=(MenuEntry("SMS sequences", "sequence_list"), MenuEntry("SMS templates", "template_list"),
              MenuEntry("SMS messages", "message_list")),
        messages=console.MESSAGES,
        panels=console.PANELS,
    ),
)
