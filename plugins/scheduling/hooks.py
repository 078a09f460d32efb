"""The scheduling plugin's hook implementations: deals open accounts; nothing else listens.

Only called for tenants that have the plugin on: a deal won while it is off
opens no account.
"""

from __future__ import annotations

from pelago.plugin import Event, HookContext, hookimpl

from . import sales


@hookimpl
def deal_won(ctx: HookContext, event: Event) -> None:
    sales.open_for_deals(ctx, event.items)
