"""Enrolment and exit: by trigger, by hand; one enrolment per (lead, sequence, pass), by the database.

``INSERT … ON CONFLICT DO NOTHING`` against two unique indexes decides who is
enrolled: ``(lead, sequence, pass)`` (a pass is enrolled once, ever) and one
*active* enrolment per (lead, sequence). Nothing is checked first and written
after. Exits are conditional updates, and skip the exited enrolments' queued
messages in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, literal, select, update

from pelago.plugin import HookContext, Lead, UtcDateTime, dialect_name

from .models import Enrolment, Message, SmsSequence, Step

PLUGIN = "sms_nurture"
E = Enrolment.__table__
M = Message.__table__
#: exits that also end a completed enrolment (they count in the stats); the others only end active ones
FINAL_EXITS = ("replied", "opted_out", "converted")
LOOKBACK = timedelta(days=7)
SCAN_BATCH = 10_000


@dataclass
class Enrolled:
    enrolled: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)


def _insert(session: Any) -> Any:
    if dialect_name(session) == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    return insert


def first_delay(ctx: HookContext, sequence_id: int) -> int | None:
    return ctx.session.scalar(select(Step.delay_minutes).where(Step.sequence_id == sequence_id, Step.position == 1))


def enrol(ctx: HookContext, sequence: SmsSequence, lead_ids: Iterable[int], pass_key: str, source: str) -> Enrolled:
    """Enrol ``lead_ids`` for ``pass_key``; the refused ones with the reason (unknown, no phone, already in)."""
    wanted = sorted(set(lead_ids))
    out = Enrolled()
    if not wanted:
        return out
    if sequence.status != "active":
        return Enrolled([], {i: "the sequence is paused" for i in wanted})
    delay = first_delay(ctx, sequence.id)
    if delay is None:
        return Enrolled([], {i: "the sequence has no steps" for i in wanted})
    leads = dict(ctx.session.execute(select(Lead.id, Lead.phone).where(Lead.id.in_(wanted))).all())
    for i in wanted:
        if i not in leads:
            out.refused[i] = "no such lead"
        elif not leads[i]:
            out.refused[i] = "the lead has no phone"
    ok = [i for i in wanted if leads.get(i)]
    if not ok:
        return out
    now = ctx.now()
    insert = _insert(ctx.session)
    done = set(ctx.session.connection().scalars(
        insert(E).values([{
            "tenant_id": ctx.tenant.id, "lead_id": i, "sequence_id": sequence.id, "pass_key": pass_key,
            "status": "active", "source": source, "enrolled_at": now, "next_position": 1,
            "next_due_at": now + timedelta(minutes=delay),
        } for i in ok]).on_conflict_do_nothing().returning(E.c.lead_id)))
    for i in ok:
        if i in done:
            out.enrolled.append(i)
        else:
            out.refused[i] = f"already enrolled in pass {pass_key!r}, or active in this sequence"
    return out


def enrol_by_trigger(ctx: HookContext, trigger: str, items: Sequence[tuple[int, str]],
                     match: Any = None) -> int:
    """Enrol ``(lead_id, pass_key)`` pairs in every active sequence with ``trigger`` (``match(seq)`` filters)."""
    if not items:
        return 0
    sequences = ctx.session.scalars(select(SmsSequence).where(
        SmsSequence.status == "active", SmsSequence.trigger == trigger)).all()
    total = 0
    for seq in sequences:
        if match is not None and not match(seq):
            continue
        by_pass: dict[str, list[int]] = {}
        for lead_id, pass_key in items:
            by_pass.setdefault(pass_key, []).append(lead_id)
        for pass_key, ids in by_pass.items():
            total += len(enrol(ctx, seq, ids, pass_key, trigger).enrolled)
    return total


def scan_not_contacted(ctx: HookContext, batch: int = SCAN_BATCH, progress: Any = None) -> int:
    """Enrol leads created more than N hours ago (and less than N hours + 7 days) that no rep has touched.

    Set-based: per sequence, windows of ``batch`` lead ids, each one
    ``INSERT … SELECT … ON CONFLICT DO NOTHING`` in its own transaction.
    """
    now = ctx.now()
    s = ctx.session
    sequences = s.scalars(select(SmsSequence).where(
        SmsSequence.status == "active", SmsSequence.trigger == "not_contacted")).all()
    total = 0
    insert = _insert(s)
    t = ctx.tenant.id
    for seq in sequences:
        delay = first_delay(ctx, seq.id)
        if delay is None or not seq.trigger_hours:
            continue
        cut = now - timedelta(hours=seq.trigger_hours)
        since = cut - LOOKBACK
        lead = Lead.__table__
        where = and_(lead.c.tenant_id == t, lead.c.created_at <= cut, lead.c.created_at > since,
                     lead.c.last_activity_at.is_(None), lead.c.phone.is_not(None),
                     lead.c.stage.not_in(("won", "lost")), lead.c.is_customer.is_(False))
        after = 0
        while True:
            window = select(lead.c.id).where(where, lead.c.id > after).order_by(lead.c.id).limit(batch).subquery()
            upto = s.connection().scalar(select(func.max(window.c.id)))
            if upto is None:
                break
            chosen = select(
                literal(t), lead.c.id, literal(seq.id), literal("created"), literal("active"), literal("not_contacted"),
                literal(now, UtcDateTime()), literal(1), literal(now + timedelta(minutes=delay), UtcDateTime()),
            ).where(where, lead.c.id > after, lead.c.id <= upto)
            result = s.connection().execute(insert(E).from_select(
                ["tenant_id", "lead_id", "sequence_id", "pass_key", "status", "source", "enrolled_at",
                 "next_position", "next_due_at"], chosen).on_conflict_do_nothing().returning(E.c.id))
            total += len(result.all())
            s.commit()
            if progress is not None:
                progress(upto - after)
            after = upto
    return total


def exit_leads(ctx: HookContext, lead_ids: Iterable[int], reason: str, *, before: datetime | None = None) -> int:
    """End the enrolments of ``lead_ids`` with ``reason``; their queued messages are skipped. Returns how many.

    ``before``: only enrolments that began before it (an event's time, so an
    event older than the enrolment does not end it).
    """
    ids = sorted(set(lead_ids))
    if not ids:
        return 0
    statuses = ("active", "completed") if reason in FINAL_EXITS else ("active",)
    return _exit(ctx, [E.c.lead_id.in_(ids), E.c.status.in_(statuses)], reason, before)


def exit_enrolment(ctx: HookContext, enrolment_id: int, reason: str) -> int:
    return _exit(ctx, [E.c.id == enrolment_id, E.c.status.in_(("active", "completed"))], reason, None)


def _exit(ctx: HookContext, where: list[Any], reason: str, before: datetime | None) -> int:
    now = ctx.now()
    if before is not None:
        where.append(E.c.enrolled_at <= before)
    conn = ctx.session.connection()
    ended = list(conn.scalars(update(E).where(E.c.tenant_id == ctx.tenant.id, *where).values(
        status="exited", reason=reason, ended_at=now, next_due_at=None).returning(E.c.id)))
    if ended:
        conn.execute(update(M).where(M.c.tenant_id == ctx.tenant.id, M.c.enrolment_id.in_(ended),
                                     M.c.status == "queued")
                     .values(status="skipped", rank=3, reason=f"enrolment exited: {reason}", final_at=now))
    return len(ended)


def leads_with_phone(ctx: HookContext, phone: str) -> list[int]:
    return list(ctx.session.scalars(select(Lead.id).where(Lead.phone == phone)))


def item_ids(items: Iterable[Mapping[str, Any]], key: str = "lead_id") -> list[int]:
    return [int(i[key]) for i in items if i.get(key) is not None]
