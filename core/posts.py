"""POSTs to tenants' URLs queued with the change, sent after the commit under a lease.

An event handler runs inside its delivery's transaction, so that its
writes and the ``delivered`` mark commit together. An HTTP call made
there holds that transaction open for as long as the receiver takes: on
SQLite (the embedded mode) the one write lock, and every API caller with
it; on PostgreSQL the delivery's row locks. So a handler does not call
out: it queues the POST (:func:`queue_post`, ``pelago.plugin.queue_post``),
a row of ``core_outbound_post`` in its own transaction, and the
``send_posts`` job sends it after the commit:

1. **Claim** (one short transaction, committed before any call): due rows,
   ``queued`` with ``next_attempt_at`` reached or ``sending`` whose lease
   ran out (the sender died), move to ``sending`` with a fresh lease token
   by a conditional UPDATE that repeats the due condition (one sender wins).
2. **Send** with :func:`~pelago.core.outbound.post_json` (the outbound
   guard, a deadline for the whole call), outside any transaction.
3. **Record** under the lease only (``… WHERE lease_token = :token``):
   ``sent`` on a 2xx; otherwise ``queued`` again with backoff, ``failed``
   after :data:`MAX_ATTEMPTS` or for a refused target.

Delivery is at least once (a sender that dies after the receiver answered
sends again when its lease runs out): receivers dedupe, as on the pool's
``event_id``. The body is signed when queued; the secret is never stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, insert, or_, select, update

from .events import backoff, short_error
from .models import OutboundPost
from .outbound import SIGNATURE_HEADER, OutboundRefused, check_url, post_json, sign

if TYPE_CHECKING:  # pragma: no cover
    from .context import HookContext
    from .runtime import Runtime

PENDING_KEY = "pelago_posts"
#: tries before a post is ``failed`` (backoff 30 s, 1, 2, 4 … min, as deliveries)
MAX_ATTEMPTS = 8
#: the longest a receiver may take (``post_json``'s deadline for the whole call)
MAX_TIMEOUT = 30
#: rows one claim takes
BATCH = 50


def queue_post(
    ctx: HookContext, url: str, body: bytes, *, headers: Mapping[str, str] | None = None,
    secret: str | None = None, timeout: int = 10, plugin: str = "core",
) -> int:
    """Queue a POST of ``body`` (JSON bytes) to ``url``, sent after this transaction commits; its row id.

    Rolled back with the transaction (nothing is sent for a change that did
    not happen). ``secret`` signs the body now (``X-Pelago-Signature``, as
    :func:`~pelago.core.outbound.post_json` would) and is not stored. The
    URL is checked now and again, with DNS, when sent.
    """
    check_url(url)
    sent = dict(headers or {})
    if secret:
        sent[SIGNATURE_HEADER] = sign(secret, body)
    post_id = ctx.session.execute(insert(OutboundPost).values(
        tenant_id=ctx.tenant.id, plugin=plugin, url=url, body=body, headers=sent,
        timeout=max(1, min(int(timeout), MAX_TIMEOUT)), status="queued", attempts=0, next_attempt_at=None,
        event_id=ctx.event_id, created_at=ctx.now(),
    ).returning(OutboundPost.id)).scalar_one()
    ctx.session.info.setdefault(PENDING_KEY, []).append(post_id)
    return int(post_id)


def take_pending(session: Any) -> list[int]:
    """Posts queued in the transaction just committed (and forget them)."""
    return list(session.info.pop(PENDING_KEY, []))


def _due(now: Any) -> Any:
    return or_(
        and_(OutboundPost.status == "queued",
             or_(OutboundPost.next_attempt_at.is_(None), OutboundPost.next_attempt_at <= now)),
        and_(OutboundPost.status == "sending", OutboundPost.lease_until < now),
    )


def send_posts(runtime: Runtime, ids: Sequence[int] | None = None, *, rounds: int = 20) -> dict[str, int]:
    """The ``send_posts`` job: claim due posts (only ``ids`` when given), send them, record; counts by outcome."""
    counts = {"sent": 0, "queued": 0, "failed": 0, "lost": 0}
    for _ in range(rounds):
        claimed = _claim(runtime, ids)
        if not claimed:
            break
        for row, token in claimed:
            counts[_send(runtime, row, token)] += 1
        if ids is not None:
            break
    return counts


def _claim(runtime: Runtime, ids: Sequence[int] | None) -> list[tuple[Any, str]]:
    now = runtime.clock()
    stmt = select(OutboundPost.id).where(_due(now)).order_by(OutboundPost.id).limit(BATCH)
    if ids is not None:
        stmt = stmt.where(OutboundPost.id.in_(list(ids)))
    claimed: list[tuple[Any, str]] = []
    with runtime.sessions() as session:
        for post_id in session.scalars(stmt.execution_options(all_tenants=True)).all():
            token = uuid.uuid4().hex
            won = session.execute(  # type: ignore[attr-defined]  # a CursorResult
                update(OutboundPost).where(OutboundPost.id == post_id, _due(now))
                .values(status="sending", lease_token=token, attempts=OutboundPost.attempts + 1,
                        lease_until=now + timedelta(seconds=2 * MAX_TIMEOUT))
                .execution_options(synchronize_session=False)
            ).rowcount
            if won:
                claimed.append((post_id, token))
        rows = {r.id: r for r in session.execute(
            select(OutboundPost.id, OutboundPost.url, OutboundPost.body, OutboundPost.headers, OutboundPost.timeout,
                   OutboundPost.attempts, OutboundPost.tenant_id, OutboundPost.plugin)
            .where(OutboundPost.id.in_([c[0] for c in claimed])).execution_options(all_tenants=True)
        )} if claimed else {}
        session.commit()  # the leases are taken before anything is sent
    return [(rows[post_id], token) for post_id, token in claimed]


def _send(runtime: Runtime, row: Any, token: str) -> str:
    try:
        answer = post_json(row.url, bytes(row.body), headers=dict(row.headers or {}), timeout=row.timeout)
    except OutboundRefused as exc:
        return _record(runtime, row, token, "failed", f"refused target: {exc}", None)
    except OSError as exc:
        return _retry(runtime, row, token, short_error(exc), None)
    if answer.ok:
        return _record(runtime, row, token, "sent", None, answer.status)
    return _retry(runtime, row, token, f"{row.url} answered {answer.status}", answer.status)


def _retry(runtime: Runtime, row: Any, token: str, error: str, status: int | None) -> str:
    if row.attempts >= MAX_ATTEMPTS:
        return _record(runtime, row, token, "failed", f"gave up after {row.attempts} attempts; last: {error}", status)
    return _record(runtime, row, token, "queued", error, status,
                   next_attempt_at=runtime.clock() + backoff(row.attempts))


def _record(runtime: Runtime, row: Any, token: str, status: str, error: str | None, answer_status: int | None,
            **values: Any) -> str:
    now = runtime.clock()
    if status == "sent":
        values.update(sent_at=now, body=b"")  # what left is the receiver's; keep no copy of it
        runtime.log.info("post %s of plugin %s sent to %s", row.id, row.plugin, row.url)
    else:
        runtime.log.warning("post %s of plugin %s to %s: %s", row.id, row.plugin, row.url, error)
    with runtime.sessions() as session:
        done = session.execute(  # type: ignore[attr-defined]  # a CursorResult
            update(OutboundPost).where(OutboundPost.id == row.id, OutboundPost.status == "sending",
                                       OutboundPost.lease_token == token)
            .values(status=status, last_error=error[:1000] if error else None, answer_status=answer_status,
                    lease_token=None, lease_until=None, **values)
            .execution_options(synchronize_session=False)
        ).rowcount
        session.commit()
    return status if done else "lost"
