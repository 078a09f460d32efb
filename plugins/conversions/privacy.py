"""``conversions``' part of privacy requests: the conversions reported (or to report) about a person.

Per lead the plugin holds its outbox rows (:class:`~.models.Conversion`):
the rule, the ad channel's click id the platform attributes the conversion
to, the times, the value and the sending state. It holds no name or phone
(a hashed phone, when an adapter sends one, is computed at sending time from
the core's lead, which the core anonymises before ``person_erased`` arrives).

Erasure (idempotent, run whether or not the plugin is on for the tenant):
every row of the leads loses its click id, and a row not yet reported for
good (``queued``, ``sending``, ``in_doubt``, ``rejected``, ``failed``)
becomes ``expired``, its lease dropped, so nothing about the person is sent
afterwards, by a worker or by a user's ``resend`` (allowed only from
``rejected``, ``failed`` and ``in_doubt``). A request already on its way
cannot be called back: its worker, having lost the lease, records nothing.
The rows stay, with status, times and value, for the funnel's counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update

from pelago.plugin import HookContext

from .models import Conversion

OPEN = ("queued", "sending", "in_doubt", "rejected", "failed")
ERASED = "the person was erased: never to be sent"


def export(ctx: HookContext, lead_ids: Sequence[int]) -> dict[str, Any] | None:
    """The leads' conversions as reported (or to report); ``None`` when there are none."""
    if not lead_ids:
        return None
    rows = ctx.session.scalars(select(Conversion).where(Conversion.lead_id.in_(list(lead_ids)))
                               .order_by(Conversion.id)).all()
    if not rows:
        return None
    return {"conversions": [
        {"id": x.id, "lead_id": x.lead_id, "rule_id": x.rule_id, "channel": x.channel, "moment": x.moment,
         "event_type": x.event_type, "click_id": x.click_id, "clicked_at": x.clicked_at,
         "occurred_at": x.occurred_at, "value": None if x.value is None else str(x.value), "currency": x.currency,
         "status": x.status, "message": x.message, "sent_at": x.sent_at, "deal_id": x.deal_id}
        for x in rows
    ]}


def erase(ctx: HookContext, lead_ids: Sequence[int]) -> None:
    """Blank the leads' click ids and expire what was not reported for good; a second run changes nothing."""
    if not lead_ids:
        return
    ids = list(lead_ids)
    now = ctx.now()
    bulk = {"synchronize_session": False}
    ctx.session.execute(update(Conversion).where(Conversion.lead_id.in_(ids), Conversion.status.in_(OPEN))
                        .values(status="expired", lease_token=None, lease_until=None, message=ERASED,
                                updated_at=now).execution_options(**bulk))
    ctx.session.execute(update(Conversion).where(Conversion.lead_id.in_(ids), Conversion.click_id != "")
                        .values(click_id="", updated_at=now).execution_options(**bulk))
    ctx.session.flush()
