"""``sms_nurture``'s part of privacy requests: what it holds about a person, and erasing it.

The plugin holds, per lead, its enrolments and the outbox (the phone each
message went to and its text), and per *phone*: consent and suppression with
their evidence, the replies received from it and the ``log`` provider's sent
table. The core blanks the lead's phone before ``person_erased`` arrives, and
the event carries lead ids only, so the person's phones are found through the
outbox (a message records the phone it was sent to). A phone the plugin never
sent to is not linked to a lead in its tables, and is therefore neither
exported nor erased through the lead.

Erasure (idempotent, run whether or not the plugin is on for the tenant):
enrolments end (``erased``), queued messages are dropped, message bodies and
phones become NULL, replies, evidence and the log provider's rows lose their
phone and text, the phones' consent/suppression rows are deleted. A
suppressed phone stays suppressed: it is kept as a keyed hash
(HMAC-SHA256 with the tenant's salt, :class:`~.models.Salt`) in
:class:`~.models.ErasedSuppression`, which the dispatch checks at the moment
of sending.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, select, update

from pelago.plugin import HookContext, Lead, upsert

from .models import Enrolment, ErasedSuppression, Evidence, Inbound, LogSent, Message, Phone, Salt

ERASED = "erased"


# --- the keyed hash -------------------------------------------------------------------


def salt(ctx: HookContext) -> str:
    """The tenant's salt, made on first use (two makers race harmlessly: the first one written wins)."""
    found = ctx.session.scalar(select(Salt.salt))
    if found is None:
        upsert(ctx.session, Salt, [{"salt": secrets.token_hex(32), "created_at": ctx.now()}], key=["tenant_id"],
               update=[])
        found = ctx.session.scalars(select(Salt.salt)).one()
    return str(found)


def phone_hash(key: str, phone: str) -> str:
    """HMAC-SHA256 of the E.164 ``phone`` under the tenant's ``key``, in hex."""
    return hmac.new(key.encode(), phone.encode(), hashlib.sha256).hexdigest()


def erased_suppressed(ctx: HookContext, phones: Iterable[str]) -> set[str]:
    """Those of ``phones`` (E.164) suppressed when a person with them was erased."""
    phones = set(phones)
    if not phones or ctx.session.scalar(select(ErasedSuppression.id).limit(1)) is None:
        return set()
    key = salt(ctx)
    by_hash = {phone_hash(key, p): p for p in phones}
    found = ctx.session.scalars(select(ErasedSuppression.phone_hash).where(ErasedSuppression.phone_hash.in_(by_hash)))
    return {by_hash[h] for h in found}


def forget_suppression(ctx: HookContext, phone: str) -> bool:
    """Drop the hashed suppression of ``phone`` (the person opted in again); whether there was one."""
    if ctx.session.scalar(select(ErasedSuppression.id).limit(1)) is None:
        return False
    done = ctx.session.execute(delete(ErasedSuppression).where(
        ErasedSuppression.phone_hash == phone_hash(salt(ctx), phone)))
    return bool(getattr(done, "rowcount", 0))


# --- export ---------------------------------------------------------------------------


def phones_of(ctx: HookContext, lead_ids: Sequence[int]) -> list[str]:
    """The phones the outbox sent (or tried to send) to for ``lead_ids``."""
    return sorted(set(ctx.session.scalars(select(Message.phone).where(
        Message.lead_id.in_(lead_ids), Message.phone.is_not(None)).distinct())))


def export(ctx: HookContext, lead_ids: Sequence[int]) -> dict[str, Any] | None:
    """Enrolments, messages (bodies and statuses), and per phone its consent, suppression, evidence, replies.

    The phones are the leads' own and those the outbox sent to; ``None`` when the plugin holds nothing.
    """
    if not lead_ids:
        return None
    s = ctx.session
    enrolments = s.scalars(select(Enrolment).where(Enrolment.lead_id.in_(lead_ids)).order_by(Enrolment.id)).all()
    messages = s.scalars(select(Message).where(Message.lead_id.in_(lead_ids)).order_by(Message.id)).all()
    phones = sorted(set(phones_of(ctx, lead_ids)) | set(
        s.scalars(select(Lead.phone).where(Lead.id.in_(lead_ids), Lead.phone.is_not(None)))))
    if not enrolments and not messages and not _held(ctx, phones):
        return None
    return {
        "enrolments": [
            {"id": e.id, "lead_id": e.lead_id, "sequence_id": e.sequence_id, "pass": e.pass_key, "status": e.status,
             "reason": e.reason, "source": e.source, "enrolled_at": e.enrolled_at, "ended_at": e.ended_at}
            for e in enrolments
        ],
        "messages": [
            {"id": m.id, "our_id": m.our_id, "lead_id": m.lead_id, "enrolment_id": m.enrolment_id,
             "sequence_id": m.sequence_id, "step_id": m.step_id, "phone": m.phone, "status": m.status,
             "reason": m.reason, "body": m.body, "segments": m.segments, "provider": m.provider,
             "provider_id": m.provider_id, "planned_at": m.planned_at, "due_at": m.due_at, "sent_at": m.sent_at,
             "final_at": m.final_at}
            for m in messages
        ],
        "phones": [_phone_part(ctx, p) for p in phones],
    }


def _held(ctx: HookContext, phones: Sequence[str]) -> bool:
    s = ctx.session
    return bool(phones) and any(
        s.scalar(select(model.id).where(model.phone.in_(phones)).limit(1)) is not None
        for model in (Phone, Evidence, Inbound, LogSent))


def _phone_part(ctx: HookContext, phone: str) -> dict[str, Any]:
    s = ctx.session
    row = s.scalars(select(Phone).where(Phone.phone == phone)).one_or_none()
    return {
        "phone": phone,
        "consent": None if row is None or row.consent_at is None else {
            "at": row.consent_at, "source": row.consent_source, "text": row.consent_text},
        "suppression": None if row is None or row.suppressed_at is None else {
            "at": row.suppressed_at, "source": row.suppressed_source, "text": row.suppressed_text},
        "evidence": [
            {"kind": e.kind, "source": e.source, "text": e.text, "at": e.at, "user_id": e.user_id}
            for e in s.scalars(select(Evidence).where(Evidence.phone == phone).order_by(Evidence.id))
        ],
        "replies": [
            {"provider": i.provider, "text": i.text, "received_at": i.received_at, "opt_out": i.opt_out}
            for i in s.scalars(select(Inbound).where(Inbound.phone == phone).order_by(Inbound.id))
        ],
        "log_sent": [
            {"our_id": x.our_id, "body": x.body, "sent_at": x.sent_at}
            for x in s.scalars(select(LogSent).where(LogSent.phone == phone).order_by(LogSent.id))
        ],
    }


# --- erasure --------------------------------------------------------------------------


def erase(ctx: HookContext, lead_ids: Sequence[int]) -> None:
    """Forget ``lead_ids`` and their phones (see the module's docstring). A second delivery finds nothing left."""
    if not lead_ids:
        return
    s = ctx.session
    now = ctx.now()
    phones = phones_of(ctx, lead_ids)
    our_ids = list(s.scalars(select(Message.our_id).where(Message.lead_id.in_(lead_ids))))
    bulk = {"synchronize_session": False}
    s.execute(update(Enrolment).where(Enrolment.lead_id.in_(lead_ids), Enrolment.status != "exited")
              .values(status="exited", reason=ERASED, ended_at=now, next_due_at=None).execution_options(**bulk))
    s.execute(update(Message).where(Message.lead_id.in_(lead_ids), Message.status == "queued")
              .values(status="dropped", rank=3, reason="the person was erased", final_at=now)
              .execution_options(**bulk))
    s.execute(update(Message).where(Message.lead_id.in_(lead_ids))
              .where((Message.phone.is_not(None)) | (Message.body.is_not(None)))
              .values(phone=None, body=None).execution_options(**bulk))
    if our_ids:
        s.execute(update(LogSent).where(LogSent.our_id.in_(our_ids), LogSent.phone != "")
                  .values(phone="", body="").execution_options(**bulk))
    if not phones:
        s.flush()
        return
    suppressed = s.execute(select(Phone.phone, Phone.suppressed_at).where(
        Phone.phone.in_(phones), Phone.suppressed_at.is_not(None))).all()
    if suppressed:
        key = salt(ctx)
        upsert(s, ErasedSuppression, [
            {"phone_hash": phone_hash(key, p), "suppressed_at": at, "erased_at": now} for p, at in suppressed
        ], key=["tenant_id", "phone_hash"], update=[])
    s.execute(delete(Phone).where(Phone.phone.in_(phones)).execution_options(**bulk))
    for model in (Evidence, Inbound):
        s.execute(update(model).where(model.phone.in_(phones)).values(phone="", text="").execution_options(**bulk))
    s.execute(update(LogSent).where(LogSent.phone.in_(phones)).values(phone="", body="").execution_options(**bulk))
    s.flush()
