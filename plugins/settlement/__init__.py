"""Plugin `settlement`: branches, fair division of leads, attribution and commission.

Branches (with their timezone and currency) group the tenant's teams; new
leads are divided between branches by weighted, versioned policies (a
deterministic smooth weighted round robin, see :mod:`.division`). See
docs/plugins/settlement.md.
"""

from pathlib import Path

from pelago.plugin import ConsolePages, MenuEntry, PluginSpec

from . import api, cli, console, hooks, schemas

plugin = PluginSpec(
    name="settlement",
    title="Branches and settlement",
    description="Branches, fair division of leads, attribution and commission.",
    version="0.1.0",
    core=">=0.1,<0.2",
    settings=schemas.Settings,
    blueprint=api.blp,
    commands=cli.commands,
    migrations=Path(__file__).parent / "migrations",
    hooks=hooks,
    default_enabled=False,
    console=ConsolePages(
        console.pages,
        menu=(MenuEntry("Branches", "branch_list"),
              MenuEntry("Distribution policy", "policy_list", role="manager"),
              MenuEntry("Statements", "statement", role="manager")),
        messages=console.MESSAGES,
        panels=console.PANELS,
    ),
)
