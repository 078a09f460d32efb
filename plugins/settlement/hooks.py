"""The settlement plugin's hook implementations.

Division (this section): ``choose_team`` divides new leads between branches
by the tenant's distribution policies (:mod:`.division`), once per batch, and
``lead_created`` links each allocation to the lead it made (routing runs
before the lead is written, so the allocation is recorded by the lead's key).
"""

from __future__ import annotations

from collections.abc import Sequence

from pelago.plugin import Event, HookContext, LeadInfo, TeamChoice, hookimpl

from . import division

# --- division ----------------------------------------------------------------------


@hookimpl
def choose_team(ctx: HookContext, leads: Sequence[LeadInfo]) -> Sequence[TeamChoice | None] | None:
    """Leads a distribution policy covers go to a branch's intake team; others: no opinion."""
    if not ctx.settings(division.PLUGIN)["division"]:
        return None
    return division.divide(ctx, leads)


@hookimpl
def lead_created(ctx: HookContext, event: Event) -> None:
    division.link_leads(ctx, event.items)
