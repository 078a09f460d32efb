"""Phones: consent and suppression with their evidence, and what a reply does.

Suppression is of the *phone number* for the tenant, not of a lead: every lead
with that number leaves every sequence, and the dispatch checks the phone at
the moment of sending. Each consent, suppression and removal appends an
:class:`~.models.Evidence` row (source, time, text, who).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import phonenumbers
from sqlalchemy import update

from pelago.plugin import HookContext, InvalidInput, upsert

from . import enrolling, privacy, text
from .models import Evidence, Inbound, Phone

P = Phone.__table__


def normalise(ctx: HookContext, raw: str, field: str = "phone") -> str:
    """``raw`` in E.164, read in the tenant's default region; 422 naming ``field`` if it is not a number."""
    try:
        number = phonenumbers.parse(str(raw), ctx.tenant.default_region or "CN")
        if phonenumbers.is_possible_number(number):
            return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    except phonenumbers.NumberParseException:
        pass
    raise InvalidInput("not a phone number", {field: [f"not a phone number: {str(raw)[:40]!r}"]})


def _evidence(ctx: HookContext, phone: str, kind: str, source: str, said: str, at: datetime) -> None:
    ctx.session.add(Evidence(phone=phone, kind=kind, source=source[:100], text=said[:1000], at=at,
                             user_id=ctx.actor.user_id if ctx.actor else None))


def consent(ctx: HookContext, phone: str, source: str, said: str, at: datetime | None = None) -> None:
    at = at or ctx.now()
    upsert(ctx.session, Phone, [{"phone": phone, "consent_at": at, "consent_source": source[:100],
                                 "consent_text": said[:1000]}], key=["tenant_id", "phone"])
    _evidence(ctx, phone, "consent", source, said, at)
    ctx.session.flush()


def suppress(ctx: HookContext, phone: str, source: str, said: str, at: datetime | None = None) -> int:
    """Suppress ``phone``; every lead with it exits every sequence (``opted_out``). Returns the enrolments ended."""
    at = at or ctx.now()
    upsert(ctx.session, Phone, [{"phone": phone, "suppressed_at": at, "suppressed_source": source[:100],
                                 "suppressed_text": said[:1000]}], key=["tenant_id", "phone"])
    _evidence(ctx, phone, "suppress", source, said, at)
    ctx.session.flush()
    return enrolling.exit_leads(ctx, enrolling.leads_with_phone(ctx, phone), "opted_out")


def unsuppress(ctx: HookContext, phone: str, source: str, said: str) -> bool:
    """Lift a suppression (with the evidence why), the hashed one of an erasure too; ``False`` if there was none."""
    at = ctx.now()
    done = ctx.session.connection().execute(
        update(P).where(P.c.tenant_id == ctx.tenant.id, P.c.phone == phone, P.c.suppressed_at.is_not(None))
        .values(suppressed_at=None, suppressed_source=None, suppressed_text=None).returning(P.c.id)).first()
    forgotten = privacy.forget_suppression(ctx, phone)  # suppressed before an erasure, by its hash
    if done is None and not forgotten:
        return False
    if done is None:  # only the hash was left: the phone has a row again, unsuppressed
        upsert(ctx.session, Phone, [{"phone": phone}], key=["tenant_id", "phone"], update=[])
    _evidence(ctx, phone, "unsuppress", source, said, at)
    ctx.session.flush()
    return True


def receive(ctx: HookContext, provider: str, replies: Sequence[Mapping[str, Any]]) -> int:
    """Store replies; an opt-out word suppresses the phone, any other reply ends its leads' sequences (``replied``)."""
    now = ctx.now()
    handled = 0
    for reply in replies:
        raw, said = reply.get("phone"), str(reply.get("text") or "")[:1000]
        if not raw:
            continue
        phone = normalise(ctx, str(raw))
        opt_out = text.is_opt_out(said)
        ctx.session.add(Inbound(provider=provider, phone=phone, text=said, received_at=now, opt_out=opt_out))
        ctx.session.flush()
        if opt_out:
            suppress(ctx, phone, f"reply:{provider}", said, now)
        else:
            enrolling.exit_leads(ctx, enrolling.leads_with_phone(ctx, phone), "replied")
        handled += 1
    return handled
