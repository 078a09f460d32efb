"""Conversions' part of a lead's timeline (the ``lead_timeline`` hook): what was reported to ad platforms.

One query for the lead (``ix_conversions_conversion_lead``), joined to the
rules: each conversion is one entry at its latest moment (sent, or last
changed), titled by its status, with the platform's event type and answer.
"""

from __future__ import annotations

from sqlalchemy import select

from pelago.plugin import HookContext, TimelineEntry

from .models import Conversion, Rule

#: a conversion's status → the entry's title (English, translated by the console's catalogue)
TITLES = {
    "queued": "Conversion queued ({rule})",
    "sending": "Conversion being sent ({rule})",
    "sent": "Conversion sent ({rule})",
    "accepted": "Conversion accepted ({rule})",
    "rejected": "Conversion rejected ({rule})",
    "expired": "Conversion expired ({rule})",
    "in_doubt": "Conversion in doubt ({rule})",
    "failed": "Conversion failed ({rule})",
}


def entries(ctx: HookContext, lead_id: int) -> list[TimelineEntry]:
    rows = ctx.session.execute(
        select(Conversion.status, Conversion.channel, Conversion.event_type, Conversion.message,
               Conversion.sent_at, Conversion.updated_at, Rule.name)
        .join(Rule, Rule.id == Conversion.rule_id)
        .where(Conversion.lead_id == lead_id).order_by(Conversion.id)
    ).all()
    return [TimelineEntry(sent_at or updated_at, "conversion", TITLES.get(status, status),
                          " — ".join(x for x in (f"{channel} · {event_type}", message) if x), {"rule": rule})
            for status, channel, event_type, message, sent_at, updated_at, rule in rows]
