"""The scheduling plugin's hook implementations: deals open accounts; privacy requests.

``deal_won`` and ``privacy_export`` are called only for tenants that have the
plugin on: a deal won while it is off opens no account. ``person_erased``
reaches the plugin on or off (its data stays when it is switched off), see
:mod:`.privacy`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pelago.plugin import Event, HookContext, erased_lead_ids, hookimpl

from . import privacy, sales


@hookimpl
def deal_won(ctx: HookContext, event: Event) -> None:
    sales.open_for_deals(ctx, event.items)


@hookimpl
def privacy_export(ctx: HookContext, lead_ids: Sequence[int]) -> Mapping[str, object] | None:
    return privacy.export(ctx, lead_ids)


@hookimpl
def person_erased(ctx: HookContext, event: Event) -> None:
    privacy.erase(ctx, erased_lead_ids(event.items))
