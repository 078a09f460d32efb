"""Dispatch: plan the steps that came due, claim due messages under a lease, check, send, record; reconcile.

Exactly once, by the database:

- **plan**: an active enrolment whose next step is due gets that step's outbox
  row (``INSERT … ON CONFLICT DO NOTHING`` on the unique (enrolment, step)), and
  the enrolment moves to its next step;
- **claim**: due ``queued`` rows are taken ``FOR UPDATE SKIP LOCKED`` (on
  PostgreSQL) in batches; the rules are checked *now* (validity, window,
  suppression, consent, caps, the enrolment still active); the ones to send move
  to ``sending`` with a lease by one conditional ``UPDATE … WHERE status =
  'queued'``, and the claim commits before anything is sent;
- **send**: in chunks; a chunk is sent only under a lease that outlasts it (renewed
  when needed by a conditional ``UPDATE … WHERE lease_owner = me``, which
  also says which rows are still ours), with our id, through the provider hook; the answers are recorded by
  ``UPDATE … WHERE status = 'sending' AND lease_owner = me``, with the ``sms``
  activity, and committed;
- **reconcile**: a ``sending`` row whose lease ran out (a crash, a timeout) is
  taken over and the provider is *asked* about our id: accepted → sent;
  never received → queued again (and checked again like any due message);
  no answer → asked again after another lease. It is never sent blindly.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import JSON, SmallInteger, String, Text, bindparam, case, cast, func, select, update
from sqlalchemy import text as sql

from pelago.plugin import HookContext, Lead, NewActivity, User, dialect_name, log_activities, upsert

from . import privacy, rules, text
from .hookspecs import OutgoingSms
from .models import Enrolment, Message, Phone, SmsSequence, Step, Template

PLUGIN = "sms_nurture"
CHUNK = 50
#: the time a provider may take per message (its timeout); a chunk is sent only under a lease that outlasts it
SEND_SECONDS = 5
log = logging.getLogger("pelago.sms_nurture")
M = Message.__table__
E = Enrolment.__table__


@dataclass
class Report:
    planned: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    dropped: int = 0
    deferred: int = 0
    reconciled: int = 0
    requeued: int = 0
    batches: int = 0
    unanswered: int = 0

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("sent", "failed", "skipped", "dropped", "deferred", "reconciled",
                                               "requeued", "planned")}


@dataclass
class _Claimed:
    messages: list[OutgoingSms] = field(default_factory=list)
    provider: str = "log"
    taken: int = 0  # rows looked at: sent, skipped, dropped or deferred
    lease_until: datetime = datetime.min.replace(tzinfo=timezone.utc)


def worker_name() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def due_count(ctx: HookContext) -> int:
    """Messages due now (for a progress bar), and enrolments whose next step is due."""
    now = ctx.now()
    messages = ctx.session.scalar(select(func.count()).select_from(Message).where(
        Message.status == "queued", Message.due_at <= now)) or 0
    steps = ctx.session.scalar(select(func.count()).select_from(Enrolment).where(
        Enrolment.status == "active", Enrolment.next_due_at <= now)) or 0
    return int(messages + steps)


def run(
    ctx: HookContext, *, worker: str | None = None, batch: int | None = None,
    progress: Callable[[int], Any] | None = None, max_batches: int | None = None,
) -> Report:
    """Dispatch everything due for the tenant, batch after batch, committing each; returns what happened."""
    worker = worker or worker_name()
    settings = ctx.settings(PLUGIN)
    size = batch or int(settings.get("batch", 500))
    report = Report()
    while max_batches is None or report.batches < max_batches:
        report.batches += 1
        planned = plan(ctx, size)
        report.planned += planned
        reconciled = reconcile(ctx, worker, report, size)
        claimed = claim(ctx, worker, report, size)
        ctx.session.commit()
        if progress is not None and planned:
            progress(planned)
        if claimed.messages:
            send(ctx, worker, claimed, report, progress)
        if not planned and not reconciled and not claimed.taken:
            break
    ctx.session.commit()
    return report


# --- plan -----------------------------------------------------------------------------------


def plan(ctx: HookContext, limit: int) -> int:
    """Outbox rows for the steps that came due (at most ``limit`` enrolments); returns how many were planned."""
    now = ctx.now()
    s = ctx.session
    validity = timedelta(minutes=int(ctx.settings(PLUGIN).get("validity_minutes", 240)))
    q = (select(Enrolment.id, Enrolment.sequence_id, Enrolment.lead_id, Enrolment.next_position,
                Enrolment.next_due_at, Enrolment.enrolled_at)
         .join(SmsSequence, SmsSequence.id == Enrolment.sequence_id)
         .where(Enrolment.status == "active", Enrolment.next_due_at <= now, SmsSequence.status == "active")
         .order_by(Enrolment.next_due_at, Enrolment.id).limit(limit))
    if dialect_name(s) == "postgresql":
        q = q.with_for_update(of=Enrolment, skip_locked=True)
    due = s.execute(q).all()
    if not due:
        return 0
    steps = {(st.sequence_id, st.position): st for st in s.scalars(
        select(Step).where(Step.sequence_id.in_({d.sequence_id for d in due})))}
    rows, moves = [], []
    for d in due:
        step = steps.get((d.sequence_id, d.next_position))
        if step is None:
            moves.append({"t_": ctx.tenant.id, "id_": d.id, "np": d.next_position, "nd": None, "st": "completed",
                          "ended": now})
            continue
        rows.append({
            "our_id": f"{ctx.tenant.id}-{d.id}-{step.id}", "enrolment_id": d.id, "step_id": step.id,
            "sequence_id": d.sequence_id, "lead_id": d.lead_id, "status": "queued", "rank": 0,
            "planned_at": d.next_due_at, "due_at": d.next_due_at, "expires_at": d.next_due_at + validity,
            "attempts": 0,
        })
        after = steps.get((d.sequence_id, d.next_position + 1))
        if after is None:
            moves.append({"t_": ctx.tenant.id, "id_": d.id, "np": d.next_position + 1, "nd": None,
                          "st": "completed", "ended": now})
        else:
            base = d.enrolled_at if after.delay_from == "enrolment" else d.next_due_at
            moves.append({"t_": ctx.tenant.id, "id_": d.id, "np": d.next_position + 1,
                          "nd": base + timedelta(minutes=after.delay_minutes), "st": "active", "ended": None})
    upsert(s, Message, rows, key=["tenant_id", "enrolment_id", "step_id"], update=[])
    s.connection().execute(
        update(E).where(E.c.tenant_id == bindparam("t_"), E.c.id == bindparam("id_"), E.c.status == "active")
        .values(next_position=bindparam("np"), next_due_at=bindparam("nd"), status=bindparam("st"),
                ended_at=bindparam("ended")),
        moves,
    )
    return len(rows)


# --- claim ----------------------------------------------------------------------------------


def claim(ctx: HookContext, worker: str, report: Report, limit: int) -> _Claimed:
    """Take due messages, check the rules now, lease the ones to send (see the module's docstring)."""
    s = ctx.session
    settings = ctx.settings(PLUGIN)
    now = ctx.now()
    q = (select(Message.id).join(SmsSequence, SmsSequence.id == Message.sequence_id)
         .where(Message.status == "queued", Message.due_at <= now, SmsSequence.status == "active")
         .order_by(Message.due_at, Message.id).limit(limit))
    if dialect_name(s) == "postgresql":
        q = q.with_for_update(of=Message, skip_locked=True)
    ids = list(s.scalars(q))
    if not ids:
        return _Claimed()
    rows = s.execute(
        select(Message.id, Message.our_id, Message.lead_id, Message.planned_at, Message.expires_at,
               Enrolment.status.label("e_status"), Enrolment.reason.label("e_reason"),
               Lead.name, Lead.phone, Lead.source, Lead.region, Lead.product, Lead.stage, Lead.attributes,
               Lead.owner_id, Step.window_start, Step.window_end, Template.body.label("template"),
               Template.provider_template_id)
        .join(Enrolment, Enrolment.id == Message.enrolment_id).join(Lead, Lead.id == Message.lead_id)
        .join(Step, Step.id == Message.step_id).join(Template, Template.id == Step.template_id)
        .where(Message.id.in_(ids)).order_by(Message.due_at, Message.id)
    ).all()
    tenant_tz = ctx.tenant.tz
    default_window = (rules.hhmm(settings.get("window_start", "09:00")), rules.hhmm(settings.get("window_end", "20:00")))
    finals: list[dict[str, Any]] = []
    deferred: list[dict[str, Any]] = []
    candidates = []
    for r in rows:
        if r.e_status == "exited":
            finals.append(_final(ctx, r.id, "skipped", f"enrolment exited: {r.e_reason}", now))
        elif now > r.expires_at:
            finals.append(_final(ctx, r.id, "dropped", f"past its validity ({_local(r.expires_at, tenant_tz)})", now))
        elif not r.phone:
            finals.append(_final(ctx, r.id, "skipped", "the lead has no phone", now))
        else:
            tz = rules.timezone_of(settings, tenant_tz, r.region)
            start, end = ((rules.hhmm(r.window_start), rules.hhmm(r.window_end)) if r.window_start and r.window_end
                          else default_window)
            opening = rules.next_opening(now, tz, start, end)
            if opening == now:
                candidates.append(r)
            elif opening > r.expires_at:
                finals.append(_final(ctx, r.id, "dropped",
                                     f"quiet hours until {_local(opening, tz)}, past its validity", now))
            else:
                deferred.append({"t_": ctx.tenant.id, "id_": r.id, "due": opening,
                                 "why": f"quiet hours: waits for {_local(opening, tz)}"})
    send_rows = _phone_rules(ctx, candidates, finals, now)
    wanted = {r.owner_id for r in send_rows if r.owner_id and "owner_name" in r.template}
    owners = dict(s.execute(select(User.id, User.name).where(User.id.in_(wanted))).all()) if wanted else {}
    provider = str(settings.get("provider", "log"))
    signature = str(settings.get("signature", ""))
    lease_until = now + timedelta(seconds=int(settings.get("lease_seconds", 300)))
    conn = s.connection()
    if finals:
        conn.execute(update(M).where(M.c.tenant_id == bindparam("t_"), M.c.id == bindparam("id_"),
                                     M.c.status == "queued")
                     .values(status=bindparam("st"), rank=3, reason=bindparam("why"), final_at=bindparam("at")), finals)
        for f in finals:
            setattr(report, f["st"], getattr(report, f["st"]) + 1)
    if deferred:
        conn.execute(update(M).where(M.c.tenant_id == bindparam("t_"), M.c.id == bindparam("id_"),
                                     M.c.status == "queued")
                     .values(due_at=bindparam("due"), reason=bindparam("why")), deferred)
        report.deferred += len(deferred)
    claimed = _Claimed(provider=provider, taken=len(rows), lease_until=lease_until)
    if not send_rows:
        return claimed
    today = rules.local_day(now, tenant_tz)
    outgoing: dict[int, OutgoingSms] = {}
    texts: dict[int, str] = {}
    for r in send_rows:
        values = text.lead_values(r._mapping, owners.get(r.owner_id))
        texts[r.id] = text.render(r.template, values, signature)
        used = {v: values.get(v, "") for v in text.variables_of(r.template)}
        outgoing[r.id] = OutgoingSms(
            our_id=r.our_id, phone=r.phone, text=texts[r.id], lead_id=r.lead_id, planned_at=r.planned_at,
            claimed_at=now, template_id=r.provider_template_id, variables=used, signature=signature)
    held = set(conn.scalars(
        update(M).where(M.c.tenant_id == ctx.tenant.id, M.c.id.in_(list(outgoing)), M.c.status == "queued")
        .values(status="sending", rank=1, lease_owner=worker, lease_until=lease_until, claimed_at=now,
                attempts=M.c.attempts + 1, provider=provider, reason=None, capped_on=today,
                phone=_by_id(s, "phones", {i: m.phone for i, m in outgoing.items()}),
                body=_by_id(s, "bodies", texts),
                segments=cast(_by_id(s, "segments", {i: str(text.count(t).segments) for i, t in texts.items()}),
                              SmallInteger))
        .returning(M.c.id)))
    claimed.messages = [outgoing[r.id] for r in send_rows if r.id in held]
    return claimed


def _by_id(session: Any, name: str, values: Mapping[int, str]) -> Any:
    """The value for each row's id from one JSON parameter (``{id: text}``): one bind, whatever the batch size.

    A ``CASE`` with a branch per row would be compiled anew for every batch size.
    """
    doc = bindparam(name, {str(k): v for k, v in values.items()}, type_=JSON)
    if dialect_name(session) == "postgresql":
        from sqlalchemy.dialects.postgresql import JSONB

        return func.jsonb_extract_path_text(cast(doc, JSONB), cast(M.c.id, Text))
    return cast(func.json_extract(doc, '$."' + cast(M.c.id, String) + '"'), Text)


def _phone_rules(ctx: HookContext, rows: list[Any], finals: list[dict[str, Any]], now: datetime) -> list[Any]:
    """Suppression, consent and the caps, each phone locked so concurrent claims of one phone count right.

    On PostgreSQL the lock is a transaction-scoped advisory lock per phone
    (the tenant and the number hashed to one 64-bit key, taken in key order
    in one statement, released at commit): claims of the same phone take
    turns from the lock to the commit that records their ``capped_on``, and
    no row is written per phone (a phone the tenant knows nothing about has
    no ``sms_nurture_phone`` row: no consent, not suppressed). A hash shared
    by two phones only makes their claims wait for each other. On SQLite the
    claim's transaction holds the database's one write lock. A phone
    suppressed when its person was erased is known only by its keyed hash
    (:mod:`.privacy`).
    """
    if not rows:
        return []
    s = ctx.session
    settings = ctx.settings(PLUGIN)
    phones = sorted({r.phone for r in rows})
    if dialect_name(s) == "postgresql":
        s.execute(sql(
            "SELECT count(pg_advisory_xact_lock(x.k)) FROM (SELECT DISTINCT hashtextextended("
            "'sms_nurture:' || CAST(:t AS text) || ':' || p, 0) AS k FROM unnest(CAST(:phones AS text[])) AS p"
            " ORDER BY 1) AS x"), {"t": ctx.tenant.id, "phones": phones})
    known = {p.phone: p for p in s.execute(
        select(Phone.phone, Phone.consent_at, Phone.suppressed_at, Phone.suppressed_source)
        .where(Phone.phone.in_(phones)))}
    tz = ctx.tenant.tz
    today = rules.local_day(now, tz)
    week_start = today - timedelta(days=6)
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for phone, day, n in s.execute(
        select(Message.phone, Message.capped_on, func.count()).where(
            Message.phone.in_(phones), Message.capped_on >= week_start).group_by(Message.phone, Message.capped_on)
    ):
        counts[phone][1] += n
        if day == today:
            counts[phone][0] += n
    daily, weekly = int(settings.get("daily_cap", 1)), int(settings.get("weekly_cap", 3))
    consent = bool(settings.get("require_consent", True))
    erased = privacy.erased_suppressed(ctx, phones)
    out = []
    for r in rows:
        p = known.get(r.phone)
        if p is not None and p.suppressed_at is not None:
            finals.append(_final(ctx, r.id, "skipped", f"phone opted out ({p.suppressed_source})", now))
            continue
        if r.phone in erased:
            finals.append(_final(ctx, r.id, "skipped", "phone opted out (before an erasure)", now))
            continue
        if consent and (p is None or p.consent_at is None):
            finals.append(_final(ctx, r.id, "skipped", "no consent on record for this phone", now))
            continue
        c = counts[r.phone]
        why = rules.cap_reason(c[0], c[1], daily, weekly)
        if why:
            finals.append(_final(ctx, r.id, "skipped", why, now))
            continue
        c[0] += 1
        c[1] += 1
        out.append(r)
    return out


def _final(ctx: HookContext, message_id: int, status: str, why: str, now: datetime) -> dict[str, Any]:
    return {"t_": ctx.tenant.id, "id_": message_id, "st": status, "why": why[:200], "at": now}


def _local(at: datetime, tz: Any) -> str:
    return at.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")


# --- send and record ------------------------------------------------------------------------


def send(ctx: HookContext, worker: str, claimed: _Claimed, report: Report,
         progress: Callable[[int], Any] | None = None) -> None:
    """Send what was claimed, chunk by chunk, each under a lease that outlasts it, each recorded and committed.

    The lease was set by the claim; before a chunk it is renewed (by a
    conditional update, which also tells which rows are still ours) only when
    what is left of it is shorter than the chunk may take (``SEND_SECONDS`` a
    message): nobody else can take a row before its lease runs out.
    """
    lease = timedelta(seconds=int(ctx.settings(PLUGIN).get("lease_seconds", 300)))
    held_until = claimed.lease_until
    pending = claimed.messages
    for start in range(0, len(pending), CHUNK):
        chunk = pending[start:start + CHUNK]
        if held_until - ctx.now() < timedelta(seconds=SEND_SECONDS * len(chunk) + 1):
            held_until = ctx.now() + lease
            still = renew(ctx, worker, [m.our_id for m in chunk], held_until)
            chunk = [m for m in chunk if m.our_id in still]
            ctx.session.commit()
        if chunk:
            answers = ask_send(ctx, claimed.provider, chunk)
            record(ctx, worker, chunk, answers, report)
            ctx.session.commit()
        if progress is not None:
            progress(len(pending[start:start + CHUNK]))


def renew(ctx: HookContext, worker: str, our_ids: Sequence[str], until: datetime) -> set[str]:
    """Extend our lease on ``our_ids`` to ``until``; returns those we still hold (a reconciler may have the others)."""
    return set(ctx.session.connection().scalars(
        update(M).where(M.c.tenant_id == ctx.tenant.id, M.c.our_id.in_(list(our_ids)), M.c.status == "sending",
                        M.c.lease_owner == worker)
        .values(lease_until=until).returning(M.c.our_id)))


def ask_send(ctx: HookContext, provider: str, messages: Sequence[OutgoingSms]) -> dict[str, Mapping[str, Any]]:
    """The provider's answer per our id; a provider that raised, or none named ``provider``, answers for none."""
    try:
        answers = ctx.hooks.sms_nurture_send(ctx=ctx, provider=provider, messages=list(messages))
    except Exception:  # noqa: BLE001 - whatever it did, the leases expire and the rows are reconciled
        log.exception("provider %s failed to send; the messages will be reconciled", provider)
        return {}
    if not answers:
        return {m.our_id: {"status": "rejected", "error": f"no provider {provider!r} is on for this tenant"}
                for m in messages}
    return {str(a.get("our_id")): a for a in answers[0] if isinstance(a, Mapping)}


def record(ctx: HookContext, worker: str, messages: Sequence[OutgoingSms],
           answers: Mapping[str, Mapping[str, Any]], report: Report, *, reconciling: bool = False) -> None:
    """Write the answers: accepted → sent (with the ``sms`` activity), rejected → failed, else left to reconcile."""
    accepted = {m.our_id: answers[m.our_id] for m in messages
                if answers.get(m.our_id, {}).get("status") in ("accepted", "sent", "delivered")}
    rejected = {m.our_id: answers[m.our_id] for m in messages
                if answers.get(m.our_id, {}).get("status") in ("rejected", "failed")}
    missing = {m.our_id for m in messages} - accepted.keys() - rejected.keys()
    if reconciling:
        gone = {i for i in missing if answers.get(i, {}).get("status") == "not_found"}
        missing -= gone
        report.requeued += _requeue(ctx, worker, gone)
    mark_sent(ctx, accepted, worker=worker, report=report)
    mark_failed(ctx, rejected, worker=worker, report=report)
    if missing:
        report.unanswered += len(missing)
        ctx.session.connection().execute(
            update(M).where(M.c.tenant_id == ctx.tenant.id, M.c.our_id.in_(list(missing)), M.c.status == "sending",
                            M.c.lease_owner == worker)
            .values(reason="no answer from the provider: it will be asked about this id"))


def mark_sent(ctx: HookContext, accepted: Mapping[str, Mapping[str, Any]], *, worker: str | None,
              report: Report | None = None) -> list[int]:
    """``sending`` → ``sent`` (or ``delivered``) for ``accepted``; logs one ``sms`` activity per row moved."""
    if not accepted:
        return []
    now = ctx.now()
    conn = ctx.session.connection()
    cond = [M.c.tenant_id == ctx.tenant.id, M.c.our_id.in_(list(accepted)), M.c.status == "sending"]
    if worker is not None:
        cond.append(M.c.lease_owner == worker)
    ids = {k: _pid(v) for k, v in accepted.items() if _pid(v)}
    moved = conn.execute(update(M).where(*cond).values(
        status="sent", rank=2, sent_at=now, lease_owner=None, lease_until=None, reason=None,
        provider_id=case(ids, value=M.c.our_id, else_=M.c.provider_id) if ids else M.c.provider_id,
    ).returning(M.c.id, M.c.our_id, M.c.lead_id, M.c.body)).all()
    if not moved:
        return []
    # Our own sms activities: our activity_logged handler ignores them (no rep), so no delivery to us.
    log_activities(ctx, [NewActivity(r.lead_id, "sms", (r.body or "")[:1000]) for r in moved], skip=(PLUGIN,))
    delivered = [r.our_id for r in moved if accepted[r.our_id].get("status") == "delivered"]
    if delivered:
        advance(ctx, [{"our_id": i, "status": "delivered"} for i in delivered])
    if report is not None:
        report.sent += len(moved)
    return [r.id for r in moved]


def mark_failed(ctx: HookContext, rejected: Mapping[str, Mapping[str, Any]], *, worker: str | None,
                report: Report | None = None) -> None:
    if not rejected:
        return
    now = ctx.now()
    params = [{"t_": ctx.tenant.id, "oid": k, "why": str(v.get("error") or "rejected by the provider")[:200],
               "at": now, "w": worker} for k, v in rejected.items()]
    cond = [M.c.tenant_id == bindparam("t_"), M.c.our_id == bindparam("oid"), M.c.status == "sending"]
    if worker is not None:
        cond.append(M.c.lease_owner == bindparam("w"))
    ctx.session.connection().execute(update(M).where(*cond).values(
        status="failed", rank=3, reason=bindparam("why"), final_at=bindparam("at"), capped_on=None,
        lease_owner=None, lease_until=None), params)
    if report is not None:
        report.failed += len(rejected)


def _pid(answer: Mapping[str, Any]) -> str | None:
    value = answer.get("provider_id")
    return str(value)[:100] if value else None


def _requeue(ctx: HookContext, worker: str, our_ids: Iterable[str]) -> int:
    ids = list(our_ids)
    if not ids:
        return 0
    return len(ctx.session.connection().execute(
        update(M).where(M.c.tenant_id == ctx.tenant.id, M.c.our_id.in_(ids), M.c.status == "sending",
                        M.c.lease_owner == worker)
        .values(status="queued", rank=0, lease_owner=None, lease_until=None, capped_on=None,
                reason="the provider never received it: queued again")
        .returning(M.c.id)).all())


# --- reconcile ------------------------------------------------------------------------------


def reconcile(ctx: HookContext, worker: str, report: Report, limit: int) -> int:
    """Take over ``sending`` rows whose lease ran out and ask their provider about each; returns how many."""
    s = ctx.session
    now = ctx.now()
    lease = timedelta(seconds=int(ctx.settings(PLUGIN).get("lease_seconds", 300)))
    q = (select(Message.id).where(Message.status == "sending", Message.lease_until < now)
         .order_by(Message.lease_until).limit(limit))
    if dialect_name(s) == "postgresql":
        q = q.with_for_update(skip_locked=True)
    ids = list(s.scalars(q))
    if not ids:
        return 0
    taken = s.connection().execute(
        update(M).where(M.c.tenant_id == ctx.tenant.id, M.c.id.in_(ids), M.c.status == "sending",
                        M.c.lease_until < now)
        .values(lease_owner=worker, lease_until=now + lease)
        .returning(M.c.our_id, M.c.phone, M.c.body, M.c.lead_id, M.c.planned_at, M.c.claimed_at, M.c.provider)
    ).all()
    s.commit()
    by_provider: dict[str, list[OutgoingSms]] = defaultdict(list)
    for r in taken:
        by_provider[r.provider or "log"].append(OutgoingSms(
            our_id=r.our_id, phone=r.phone or "", text=r.body or "", lead_id=r.lead_id, planned_at=r.planned_at,
            claimed_at=r.claimed_at or r.planned_at))
    for provider, messages in by_provider.items():
        try:
            answers = ctx.hooks.sms_nurture_query(ctx=ctx, provider=provider, messages=messages)
            found: Mapping[str, Mapping[str, Any]] = answers[0] if answers else {}
        except Exception:  # noqa: BLE001 - asked again after the next lease
            log.exception("provider %s could not be asked about %d messages", provider, len(messages))
            found = {}
        record(ctx, worker, messages, found, report, reconciling=True)
        s.commit()
    report.reconciled += len(taken)
    return len(taken)


# --- receipts -------------------------------------------------------------------------------


def advance(ctx: HookContext, receipts: Sequence[Mapping[str, Any]]) -> int:
    """Move messages forward to ``delivered``/``failed`` by our id or the provider's; never backward.

    A receipt for a row still ``sending`` (its sender crashed before recording)
    proves the provider accepted it: it is recorded as sent first, with its
    activity. Rows already final (delivered, failed, skipped, dropped) do not move.
    """
    now = ctx.now()
    moved = 0
    for status in ("delivered", "failed"):
        mine = [r for r in receipts if r.get("status") == status]
        ours = [str(r["our_id"]) for r in mine if r.get("our_id")]
        theirs = [str(r["provider_id"]) for r in mine if r.get("provider_id") and not r.get("our_id")]
        if theirs:
            ours += list(ctx.session.scalars(select(Message.our_id).where(Message.provider_id.in_(theirs))))
        if not ours:
            continue
        sending = list(ctx.session.scalars(select(Message.our_id).where(
            Message.our_id.in_(ours), Message.status == "sending")))
        if sending:
            mark_sent(ctx, {i: {"status": "accepted"} for i in sending}, worker=None)
        errors = {str(r.get("our_id")): r.get("error") for r in mine if r.get("our_id")}
        rows = ctx.session.connection().execute(
            update(M).where(M.c.tenant_id == ctx.tenant.id, M.c.our_id.in_(ours), M.c.rank < 3, M.c.rank >= 1)
            .values(status=status, rank=3, final_at=now)
            .returning(M.c.our_id)).all()
        moved += len(rows)
        failed = [{"t_": ctx.tenant.id, "oid": r.our_id, "why": str(errors.get(r.our_id) or "not delivered")[:200]}
                  for r in rows if status == "failed"]
        if failed:
            ctx.session.connection().execute(
                update(M).where(M.c.tenant_id == bindparam("t_"), M.c.our_id == bindparam("oid"))
                .values(reason=bindparam("why")), failed)
    return moved
