"""Sending the outbox: claim with a lease, call the platform, record the answer only under that lease.

One round of :func:`send_due`:

1. **Claim** (one transaction, committed before any call): the due rows —
   ``queued`` with ``next_attempt_at`` reached, or ``sending`` whose lease ran
   out — are locked ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (other workers
   skip them rather than wait), then moved to ``sending`` with a fresh lease
   token by a conditional UPDATE that repeats the due condition. A row whose
   previous lease ran out belonged to a worker that died. If it had not
   dispatched the request yet (no ``dispatched_at``), it is simply claimed
   again. If it had, the platform may or may not have it, and the account's
   ``in_doubt`` decides: ``hold`` moves it to ``in_doubt`` for a user to
   check (never sent twice unchecked); ``resend`` sends it again with the
   same idempotency key, for platforms that deduplicate on it.
2. **Send**: the adapter (a hook) builds the request; ``dispatched_at`` is
   set under the lease and committed; :func:`pelago.plugin.post_json` sends
   it through the outbound guard, outside any transaction; the adapter reads
   the answer.
3. **Record**: ``UPDATE … WHERE id = :id AND status = 'sending' AND
   lease_token = :token``. A worker that lost its lease (it was too slow and
   another took over) records nothing.

Transient failures (no answer, 5xx, 429, an adapter's ``retry``) go back to
``queued`` with exponential backoff until ``max_attempts``, then ``failed``.
A rejection keeps the platform's message and is not retried unless a user
asks (``POST /conversions/{id}/decision``).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, or_, select, update

from pelago.plugin import (
    Deal,
    HookContext,
    Lead,
    OutboundRefused,
    dialect_name,
    post_json,
    to_money,
)

from .models import Account, Conversion, Rule

PLUGIN = "conversions"
BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_MAX = timedelta(hours=6)
OUTCOMES = ("accepted", "sent", "rejected", "retry")


@dataclass
class Round:
    """What one :func:`send_due` did, by outcome."""

    claimed: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, status: str) -> None:
        self.counts[status] = self.counts.get(status, 0) + 1


def backoff(attempts: int) -> timedelta:
    """1, 2, 4 … minutes after the ``attempts``-th try, at most six hours."""
    return min(BACKOFF_BASE * (2 ** max(attempts - 1, 0)), BACKOFF_MAX)


def _due(now: datetime) -> Any:
    return or_(
        and_(Conversion.status == "queued", Conversion.next_attempt_at <= now),
        and_(Conversion.status == "sending", Conversion.lease_until < now),
    )


def claim(ctx: HookContext, limit: int, lease: timedelta) -> tuple[list[tuple[int, str]], int]:
    """Claim up to ``limit`` due conversions for this worker; commits.

    Returns ``[(id, lease token)]`` to send, and how many were put ``in_doubt``.
    """
    session = ctx.session
    now = ctx.now()
    stmt = select(Conversion.id, Conversion.status, Conversion.dispatched_at, Account.in_doubt).join(
        Rule, and_(Rule.tenant_id == Conversion.tenant_id, Rule.id == Conversion.rule_id)
    ).join(Account, and_(Account.tenant_id == Rule.tenant_id, Account.id == Rule.account_id)).where(
        Conversion.tenant_id == ctx.tenant.id, _due(now)
    ).order_by(Conversion.id).limit(limit)
    if dialect_name(session) == "postgresql":
        stmt = stmt.with_for_update(of=Conversion.__table__, skip_locked=True)
    rows = session.execute(stmt).all()
    held = [r.id for r in rows
            if r.status == "sending" and r.dispatched_at is not None and r.in_doubt == "hold"]
    if held:
        session.execute(
            update(Conversion).where(Conversion.id.in_(held), Conversion.status == "sending",
                                     Conversion.lease_until < now)
            .values(status="in_doubt", lease_token=None, lease_until=None, updated_at=now,
                    message="the sender stopped while the platform had the request: check the platform, "
                            "then decide (resend or accepted)")
            .execution_options(synchronize_session=False)
        )
    claimed: list[tuple[int, str]] = []
    for r in rows:
        if r.id in held:
            continue
        token = uuid.uuid4().hex
        done = session.execute(
            update(Conversion).where(Conversion.id == r.id, _due(now))
            .values(status="sending", lease_token=token, lease_until=now + lease, dispatched_at=None,
                    attempts=Conversion.attempts + 1, updated_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if done:
            claimed.append((r.id, token))
    session.commit()
    return claimed, len(held)


def finish(ctx: HookContext, conversion_id: int, token: str, **values: Any) -> bool:
    """Record an answer, only if this worker still holds the lease; commits. Whether it was recorded."""
    now = ctx.now()
    done = ctx.session.execute(
        update(Conversion).where(Conversion.id == conversion_id, Conversion.status == "sending",
                                 Conversion.lease_token == token)
        .values(lease_token=None, lease_until=None, updated_at=now, **values)
        .execution_options(synchronize_session=False)
    ).rowcount
    ctx.session.commit()
    return bool(done)


def adapters(ctx: HookContext) -> dict[str, Mapping[str, Any]]:
    """``{name: info}`` of the adapters on for this tenant (``conversions_adapters``)."""
    found: dict[str, Mapping[str, Any]] = {}
    for answer in ctx.hooks.conversions_adapters(ctx=ctx):
        for info in answer or ():
            found.setdefault(str(info["name"]), info)
    return found


def snapshot(ctx: HookContext, c: Conversion, info: Mapping[str, Any]) -> dict[str, Any]:
    """The conversion as adapters see it: plain JSON-able values, no personal data unless declared."""
    value: Decimal | None = None
    rule = ctx.session.get(Rule, c.rule_id)
    if c.moment == "deal_won" and c.deal_id is not None and rule is not None and rule.send_value:
        deal = ctx.session.get(Deal, c.deal_id)
        if deal is not None:
            value = to_money(deal.amount - deal.refunded)
    out: dict[str, Any] = {
        "id": c.id, "key": f"pelago-{ctx.tenant.id}-{c.id}", "rule_id": c.rule_id, "lead_id": c.lead_id,
        "channel": c.channel, "moment": c.moment, "event_type": c.event_type, "click_id": c.click_id,
        "clicked_at": c.clicked_at.isoformat(), "occurred_at": c.occurred_at.isoformat(),
        "value": str(value) if value is not None else None, "currency": c.currency if value is not None else None,
        "attempt": c.attempts,
    }
    if "phone_sha256" in (info.get("personal") or ()):
        lead = ctx.session.get(Lead, c.lead_id)
        phone = lead.phone if lead is not None else None
        out["phone_sha256"] = hashlib.sha256(phone.encode()).hexdigest() if phone else None
    return out


def account_view(a: Account) -> dict[str, Any]:
    return {"id": a.id, "name": a.name, "url": a.url, "config": dict(a.config), "secret": a.secret}


def send_one(ctx: HookContext, conversion_id: int, token: str, timeout: int) -> str:
    """Send one claimed conversion and record what happened; the status it ends in (or ``lost``)."""
    c = ctx.session.get(Conversion, conversion_id)
    rule = ctx.session.get(Rule, c.rule_id) if c is not None else None
    account = ctx.session.get(Account, rule.account_id) if rule is not None else None
    if c is None or account is None:
        return "lost"
    info = adapters(ctx).get(account.adapter)
    if info is None:
        return _end(ctx, c.id, token, "failed", f"no adapter {account.adapter!r} is on for this tenant")
    view = snapshot(ctx, c, info)
    attempts = c.attempts
    request = ctx.hooks.conversions_build_request(ctx=ctx, adapter=account.adapter, conversion=view,
                                                   account=account_view(account))
    ctx.session.rollback()  # no transaction stays open while the platform answers
    if request is None:
        return _end(ctx, conversion_id, token, "failed", f"adapter {account.adapter!r} built no request")
    body = request["body"]
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    dispatched = ctx.session.execute(
        update(Conversion).where(Conversion.id == conversion_id, Conversion.status == "sending",
                                 Conversion.lease_token == token)
        .values(dispatched_at=ctx.now()).execution_options(synchronize_session=False)
    ).rowcount
    ctx.session.commit()
    if not dispatched:
        return "lost"  # another worker took it over: it sends, not us
    try:
        answer = post_json(str(request["url"]), raw, headers=dict(request.get("headers") or {}), timeout=timeout)
    except OutboundRefused as exc:
        return _end(ctx, conversion_id, token, "failed", f"refused target: {exc}")
    except OSError as exc:
        return _retry(ctx, conversion_id, token, attempts, f"no answer: {exc.__class__.__name__}: {exc}"[:1000], None)
    verdict = ctx.hooks.conversions_parse_answer(ctx=ctx, adapter=account.adapter, conversion=view,
                                                 status=answer.status, body=answer.body)
    if verdict is None or verdict.get("outcome") not in OUTCOMES:
        verdict = {"outcome": "retry" if answer.status >= 500 or answer.status == 429 else
                   ("accepted" if answer.ok else "rejected"),
                   "message": answer.body[:500].decode("utf-8", "replace")}
    message = str(verdict.get("message") or "")[:1000]
    if verdict["outcome"] == "retry":
        return _retry(ctx, conversion_id, token, attempts, message or f"HTTP {answer.status}", answer.status)
    return _end(ctx, conversion_id, token, str(verdict["outcome"]), message, answer.status, sent=True)


def _end(ctx: HookContext, cid: int, token: str, status: str, message: str, answer_status: int | None = None,
         sent: bool = False) -> str:
    values: dict[str, Any] = {"status": status, "message": message, "answer_status": answer_status}
    if sent:
        values["sent_at"] = ctx.now()
    return status if finish(ctx, cid, token, **values) else "lost"


def _retry(ctx: HookContext, cid: int, token: str, attempts: int, message: str, answer_status: int | None) -> str:
    limit = int(ctx.settings(PLUGIN)["max_attempts"])
    if attempts >= limit:
        return _end(ctx, cid, token, "failed", f"gave up after {attempts} attempts; last: {message}", answer_status)
    done = finish(ctx, cid, token, status="queued", message=message, answer_status=answer_status,
                  next_attempt_at=ctx.now() + backoff(attempts))
    return "queued" if done else "lost"


def send_due(ctx: HookContext, *, rounds: int | None = None) -> Round:
    """Claim and send due conversions until none is left (or ``rounds`` claims); commits as it goes."""
    s = ctx.settings(PLUGIN)
    lease = timedelta(seconds=int(s["lease_seconds"]))
    result = Round()
    n = 0
    while rounds is None or n < rounds:
        n += 1
        claimed, held = claim(ctx, int(s["batch"]), lease)
        if not claimed and not held:
            break
        result.claimed += len(claimed)
        for _ in range(held):
            result.add("in_doubt")
        for cid, token in claimed:
            result.add(send_one(ctx, cid, token, int(s["timeout_seconds"])))
    return result
