"""``sms_nurture``'s hook implementations: enrolment triggers and exits from the core's events.

Triggers: a lead released (``lead_released``, the pool's releases and
recycles included), about to be recycled (the pool's ``pool_recycle_due``,
optional: the pool may not be deployed), lost with a given reason
(``lead_stage_changed``). Exits: a rep's activity (``activity_logged`` with a
user; this plugin's own ``sms`` activities are automatic and do not count), a
deal won, an assignment or claim (``lead_assigned``) — each only for
enrolments that began before the event. Replies and opt-outs come through the
webhooks (:mod:`.phones`). The two built-in providers are in :mod:`.providers`.
Privacy: ``privacy_export`` and ``person_erased`` (:mod:`.privacy`). The console's
lead timeline: ``lead_timeline`` (:mod:`.timeline`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import select

from pelago.plugin import Event, HookContext, TimelineEntry, erased_lead_ids, hookimpl

from . import enrolling, privacy, timeline
from .models import SmsSequence
from .providers import (  # noqa: F401 - registered with this module
    sms_nurture_parse_inbound,
    sms_nurture_parse_receipt,
    sms_nurture_query,
    sms_nurture_send,
)


@hookimpl
def lead_released(ctx: HookContext, event: Event) -> None:
    items = [(int(i["lead_id"]), f"released:{event.id}") for i in event.items]
    enrolling.enrol_by_trigger(ctx, "pool_released", items)


@hookimpl(optionalhook=True)
def pool_recycle_due(ctx: HookContext, event: Event) -> None:
    items = [(int(i["lead_id"]), f"due:{str(i.get('due_at'))[:30]}") for i in event.items]
    enrolling.enrol_by_trigger(ctx, "pool_recycle_due", items)


@hookimpl
def lead_stage_changed(ctx: HookContext, event: Event) -> None:
    lost = [i for i in event.items if i.get("new") == "lost"]
    if lost:
        reasons = {int(i["lead_id"]): (i.get("lost_reason") or "") for i in lost}
        _enrol_lost(ctx, event, reasons)
    won = [int(i["lead_id"]) for i in event.items if i.get("new") == "won"]
    enrolling.exit_leads(ctx, won, "converted", before=event.created_at)


def _enrol_lost(ctx: HookContext, event: Event, reasons: dict[int, str]) -> None:
    for seq in ctx.session.scalars(select(SmsSequence).where(
            SmsSequence.status == "active", SmsSequence.trigger == "lost")):
        wanted = set(seq.trigger_reasons or [])
        ids = [lead for lead, why in reasons.items() if not wanted or why in wanted]
        enrolling.enrol(ctx, seq, ids, f"lost:{event.id}", "lost")


@hookimpl
def activity_logged(ctx: HookContext, event: Event) -> None:
    by_reps = [int(i["lead_id"]) for i in event.items if i.get("user_id") is not None]
    enrolling.exit_leads(ctx, by_reps, "activity", before=event.created_at)


@hookimpl
def deal_won(ctx: HookContext, event: Event) -> None:
    enrolling.exit_leads(ctx, enrolling.item_ids(event.items), "converted", before=event.created_at)


@hookimpl
def lead_assigned(ctx: HookContext, event: Event) -> None:
    enrolling.exit_leads(ctx, enrolling.item_ids(event.items), "assigned", before=event.created_at)


@hookimpl
def privacy_export(ctx: HookContext, lead_ids: Sequence[int]) -> Mapping[str, object] | None:
    return privacy.export(ctx, lead_ids)


@hookimpl
def person_erased(ctx: HookContext, event: Event) -> None:
    privacy.erase(ctx, erased_lead_ids(event.items))


@hookimpl
def lead_timeline(ctx: HookContext, lead_id: int) -> Sequence[TimelineEntry] | None:
    return timeline.entries(ctx, lead_id)
