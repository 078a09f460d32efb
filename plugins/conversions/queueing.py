"""From lifecycle moments to outbox rows: one (lead, rule) at most, whatever is delivered how often.

An event handler hands :func:`queue` the leads that reached a moment and
when. For each active rule of that moment, a lead's touches from the rule's
channel that carry a click id under the rule's ``click_key`` are its
candidates; the rule's ``touch`` picks the first or the last, so a lead
merged from several clicks reports once, for that click. A click older than
the rule's window when the moment happened gives an ``expired`` row (shown,
never sent). Rows are inserted with ``ON CONFLICT DO NOTHING`` on the
business key ``(tenant_id, rule_id, lead_id)``: a second delivery of the
event, a second event of the same moment (a lead's second deal) or two
handlers at once all find the row there and add nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from pelago.plugin import HookContext, Touch, upsert

from .models import Conversion, Rule

PLUGIN = "conversions"


@dataclass(frozen=True)
class Reached:
    """A lead that reached a moment: when, and for ``deal_won`` which deal."""

    lead_id: int
    at: datetime
    deal_id: int | None = None


def click_of(touch: Any, key: str) -> str | None:
    """The click id a touch carries under ``key``: the ``click_id`` column, or a dotted path into ``raw``."""
    if key == "click_id":
        value: Any = touch.click_id
    else:
        value = touch.raw
        for part in key.split("."):
            if isinstance(value, Mapping) and part in value:
                value = value[part]
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                return None
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    text = str(value).strip()
    return text[:500] or None


def queue(ctx: HookContext, moment: str, reached: Iterable[Reached]) -> int:
    """Write the outbox rows of ``reached`` for every active rule of ``moment``; the number of new due rows."""
    by_lead: dict[int, Reached] = {}
    for r in reached:
        if r.lead_id not in by_lead or r.at < by_lead[r.lead_id].at:
            by_lead[r.lead_id] = r  # a batch with two activities of one lead: the first is the contact
    if not by_lead:
        return 0
    rules = ctx.session.scalars(
        select(Rule).where(Rule.moment == moment, Rule.active.is_(True)).order_by(Rule.id)
    ).all()
    if not rules:
        return 0
    touches: dict[int, list[Any]] = defaultdict(list)
    for t in ctx.session.scalars(
        select(Touch).where(Touch.lead_id.in_(sorted(by_lead))).order_by(Touch.lead_id, Touch.received_at, Touch.id)
    ):
        touches[t.lead_id].append(t)
    now = ctx.now()
    rows: list[dict[str, Any]] = []
    for rule in rules:
        for lead_id, r in by_lead.items():
            candidates = [
                (t, click) for t in touches.get(lead_id, ())
                if (t.channel if rule.match == "channel" else t.source) == rule.channel
                and t.received_at <= r.at  # never a click that came after the moment
                and (click := click_of(t, rule.click_key))
            ]
            if not candidates:
                continue
            touch, click = candidates[0] if rule.touch == "first" else candidates[-1]
            expired = r.at - touch.received_at > timedelta(days=rule.window_days)
            rows.append({
                "rule_id": rule.id, "lead_id": lead_id, "touch_id": touch.id, "deal_id": r.deal_id,
                "channel": rule.channel, "moment": moment, "event_type": rule.event_type, "click_id": click,
                "clicked_at": touch.received_at, "occurred_at": r.at, "value": None,
                "currency": ctx.tenant.currency if moment == "deal_won" else None,
                "status": "expired" if expired else "queued", "attempts": 0, "next_attempt_at": now,
                "lease_token": None, "lease_until": None,
                "message": (f"the click was {(r.at - touch.received_at).days} days old, past the "
                            f"{rule.window_days}-day window") if expired else "",
                "answer_status": None, "sent_at": None, "created_at": now, "updated_at": now,
            })
    if not rows:
        return 0
    written = upsert(ctx.session, Conversion, rows, key=["tenant_id", "rule_id", "lead_id"], update=[])
    due = sum(1 for row in rows if row["status"] == "queued")
    if written and due:
        ctx.enqueue(f"{PLUGIN}.send")
    return due if written else 0
