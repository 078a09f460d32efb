"""Hooks the scheduling plugin adds for other plugins (registered through ``PluginSpec.hookspecs``).

Event-style, like the core's: written to the outbox with the change and
delivered after commit, once per plugin that implements them and is on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pelago.plugin import hookspec

if TYPE_CHECKING:  # pragma: no cover
    from pelago.plugin import Event, HookContext


@hookspec
def scheduling_low_balance(ctx: HookContext, event: Event) -> None:
    """A student account fell under the low-balance threshold (``low_balance_hours``, default 5).

    Each item: ``{account_id, lead_id, remaining_hours, threshold_hours, expires_at}``;
    hours are decimal strings, ``expires_at`` ISO 8601 (UTC). Sent by the
    consumption that crosses the threshold, so an SMS or notifier plugin can
    remind the family to renew.
    """
