"""Hooks the pool adds for other plugins (registered through ``PluginSpec.hookspecs``).

Event-style, like the core's: written to the outbox with the change and
delivered after commit, once per plugin that implements them and is on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pelago.plugin import hookspec

if TYPE_CHECKING:  # pragma: no cover
    from pelago.plugin import Event, HookContext


@hookspec
def pool_recycle_due(ctx: HookContext, event: Event) -> None:
    """Held leads the sweep will recycle soon (once per holding and due date).

    Each item: ``{lead_id, owner_id, pool_id, rule, due_at, days_left}``;
    ``due_at`` is when the sweep may take the lead back (ISO 8601, UTC),
    ``days_left`` the calendar days until then in the tenant's timezone.
    Sent by the sweep ``remind_days_before`` days ahead (a pool setting), so an
    SMS or notifier plugin can nudge the owner.
    """
