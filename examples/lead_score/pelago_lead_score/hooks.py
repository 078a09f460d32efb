"""What the plugin does when something happens: it rescores the leads concerned.

These are *event* hooks: delivered after the change committed, once per
(event, plugin), at least once, in a transaction of their own (``ctx.session``;
the delivery commits it, never the handler). ``event.items`` is a tuple of
read-only snapshots, one per lead for an API call, a batch for bulk work, so
each handler scores the whole batch at once. Rescoring recomputes from the
database, so a repeated or late delivery changes nothing: idempotent without
having to remember ``ctx.event_id``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select

from pelago.plugin import Event, HookContext, hookimpl

from .jobs import PLUGIN, rescore, rescore_all
from .models import LeadScore


@hookimpl
def lead_created(ctx: HookContext, event: Event) -> None:
    rescore(ctx, (item["lead_id"] for item in event.items))


@hookimpl
def lead_merged(ctx: HookContext, event: Event) -> None:
    # A merge may fill in the lead's source, which changes its score.
    rescore(ctx, (item["lead_id"] for item in event.items))


@hookimpl
def activity_logged(ctx: HookContext, event: Event) -> None:
    rescore(ctx, (item["lead_id"] for item in event.items))


@hookimpl
def plugin_enabled(ctx: HookContext, event: Event) -> None:
    # Sent to a plugin when it is itself switched on (and when others are, if
    # it is on): score the leads that arrived while it was off.
    if any(item.get("plugin") == PLUGIN for item in event.items):
        rescore_all(ctx)


@hookimpl
def plugin_settings_changed(ctx: HookContext, event: Event) -> None:
    # New point rules apply to every lead at once, not only to leads that change.
    if any(item.get("plugin") == PLUGIN for item in event.items):
        rescore_all(ctx)


@hookimpl
def privacy_export(ctx: HookContext, lead_ids: Sequence[int]) -> Mapping[str, Any] | None:
    """A privacy export (a query hook): the person's scores, since a score profiles them.

    No ``person_erased`` handler: a score is a number computed from what the
    core keeps after an erasure (the lead's source and its activities'
    kinds and times), so erasing it would change nothing that rescoring
    would not put back.
    """
    rows = ctx.session.scalars(select(LeadScore).where(LeadScore.lead_id.in_(lead_ids)).order_by(LeadScore.lead_id))
    scores = [{"lead_id": r.lead_id, "score": r.score, "activities": r.activities, "updated_at": r.updated_at}
              for r in rows]
    return {"scores": scores} if scores else None
