"""The scheduling plugin's hook implementations: deals open accounts; privacy requests.

``deal_won`` and ``privacy_export`` are called only for tenants that have the
plugin on: a deal won while it is off opens no account. ``person_erased``
reaches the plugin on or off (its data stays when it is switched off), see
:mod:`.privacy`. ``lead_timeline``: a lead's trials and roll-calls on its console
page (:mod:`.timeline`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pelago.plugin import Event, HookContext, TimelineEntry, erased_lead_ids, hookimpl

from . import privacy, sales, timeline


@hookimpl
def deal_won(ctx: HookContext, event: Event) -> None:
    sales.open_for_deals(ctx, event.items)


@hookimpl
def privacy_export(ctx: HookContext, lead_ids: Sequence[int]) -> Mapping[str, object] | None:
    return privacy.export(ctx, lead_ids)


@hookimpl
def person_erased(ctx: HookContext, event: Event) -> None:
    privacy.erase(ctx, erased_lead_ids(event.items))


@hookimpl
def lead_timeline(ctx: HookContext, lead_id: int) -> Sequence[TimelineEntry] | None:
    return timeline.entries(ctx, lead_id)
