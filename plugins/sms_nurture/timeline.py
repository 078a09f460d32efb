"""SMS nurturing's part of a lead's timeline (the ``lead_timeline`` hook): its messages, replies and opt-outs.

One query per table for the lead (its messages by ``ix_sms_nurture_message_lead``,
its phone's replies and consent evidence by their phone indexes), never one
per row. A message is one entry at its latest moment: planned, sent, or
its final status (delivered, failed, skipped, dropped, with the reason).
"""

from __future__ import annotations

from sqlalchemy import select

from pelago.plugin import HookContext, Lead, TimelineEntry

from .models import Evidence, Inbound, Message, SmsSequence

#: a message's status → the entry's title (English, translated by the console's catalogue)
TITLES = {
    "queued": "SMS planned ({sequence})",
    "sending": "SMS being sent ({sequence})",
    "sent": "SMS sent ({sequence})",
    "delivered": "SMS delivered ({sequence})",
    "failed": "SMS failed ({sequence})",
    "skipped": "SMS not sent ({sequence})",
    "dropped": "SMS not sent ({sequence})",
}
EVIDENCE = {"suppress": "Opted out of SMS", "unsuppress": "SMS opt-out removed", "consent": "SMS consent recorded"}


def entries(ctx: HookContext, lead_id: int) -> list[TimelineEntry]:
    s = ctx.session
    out: list[TimelineEntry] = []
    rows = s.execute(
        select(Message.status, Message.reason, Message.body, Message.due_at, Message.sent_at, Message.final_at,
               SmsSequence.name)
        .join(SmsSequence, SmsSequence.id == Message.sequence_id)
        .where(Message.lead_id == lead_id).order_by(Message.id)
    ).all()
    for status, reason, body, due_at, sent_at, final_at, sequence in rows:
        detail = " — ".join(x for x in (body, reason) if x)
        out.append(TimelineEntry(final_at or sent_at or due_at, "sms", TITLES.get(status, "SMS"), detail,
                                 {"sequence": sequence}))
    phone = s.scalar(select(Lead.phone).where(Lead.id == lead_id))
    if phone:
        for kind, source, said, at in s.execute(
                select(Evidence.kind, Evidence.source, Evidence.text, Evidence.at)
                .where(Evidence.phone == phone).order_by(Evidence.id)):
            out.append(TimelineEntry(at, "sms", EVIDENCE.get(kind, kind), " — ".join(x for x in (source, said) if x)))
        for said, at, opt_out in s.execute(
                select(Inbound.text, Inbound.received_at, Inbound.opt_out)
                .where(Inbound.phone == phone).order_by(Inbound.id)):
            out.append(TimelineEntry(at, "sms", "SMS reply (opt-out)" if opt_out else "SMS reply", said))
    return out
