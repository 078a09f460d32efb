"""The hook implementations of ``conversions``: lifecycle events in, outbox rows out.

Each handler turns an event's items into :class:`.queueing.Reached` and hands
them to :func:`.queueing.queue`, whose unique business key makes a second
delivery of the same event (delivery is at least once) add nothing. The
built-in ``generic`` adapter's hooks come from :mod:`.adapters`. ``lead_timeline``
shows a lead's conversions on its console page (:mod:`.timeline`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from pelago.plugin import Event, HookContext, TimelineEntry, erased_lead_ids, hookimpl

from . import privacy, timeline
from .adapters import conversions_adapters, conversions_build_request, conversions_parse_answer
from .queueing import Reached, queue

__all__ = [
    "activity_logged", "conversions_adapters", "conversions_build_request", "conversions_parse_answer",
    "deal_won", "lead_created", "lead_stage_changed", "lead_timeline", "person_erased", "privacy_export",
]


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@hookimpl
def lead_created(ctx: HookContext, event: Event) -> None:
    """A created lead is a valid lead; a submission merged into an existing one (``lead_merged``) is not."""
    queue(ctx, "valid_lead", [Reached(int(i["lead_id"]), _at(i["created_at"])) for i in event.items])


@hookimpl
def activity_logged(ctx: HookContext, event: Event) -> None:
    """A follow-up a user logged is a contact; the first one reports (automatic activities have no user)."""
    queue(ctx, "first_contact", [Reached(int(i["lead_id"]), _at(i["occurred_at"]))
                                 for i in event.items if i.get("user_id") is not None])


@hookimpl
def lead_stage_changed(ctx: HookContext, event: Event) -> None:
    queue(ctx, "qualified", [Reached(int(i["lead_id"]), event.created_at)
                             for i in event.items if i.get("new") == "qualified"])


@hookimpl
def deal_won(ctx: HookContext, event: Event) -> None:
    """A lead's first won deal reports, with its value (net of refunds when it is sent)."""
    queue(ctx, "deal_won", [Reached(int(i["lead_id"]), _at(i["won_at"]), int(i["deal_id"]))
                            for i in sorted(event.items, key=lambda i: (i["won_at"], i["deal_id"]))])


@hookimpl
def privacy_export(ctx: HookContext, lead_ids: Sequence[int]) -> Mapping[str, object] | None:
    """The leads' conversions (:mod:`.privacy`)."""
    return privacy.export(ctx, lead_ids)


@hookimpl
def person_erased(ctx: HookContext, event: Event) -> None:
    """On or off for the tenant: click ids blanked, nothing more sent about the person (:mod:`.privacy`)."""
    privacy.erase(ctx, erased_lead_ids(event.items))


@hookimpl
def lead_timeline(ctx: HookContext, lead_id: int) -> Sequence[TimelineEntry] | None:
    return timeline.entries(ctx, lead_id)
