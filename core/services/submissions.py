"""Webhook submissions: accepted at the cost of one INSERT, routed afterwards in micro-batches.

A signed webhook is verified, mapped and checked in Python, then stored as a
``core_submission`` row (:func:`accept`) in one short transaction, and the
sender hears ``202`` with the submission's id. A retried idempotency key
(the external id, else the body's hash) finds the first submission instead:
``INSERT … ON CONFLICT DO NOTHING`` on ``(tenant_id, key)`` decides.

A **router** (:func:`route_pending`, the ``route_submissions`` job: on rq
workers with Redis, on the embedded server's job thread without) then takes
``accepted`` rows in micro-batches of :data:`BATCH` through the same intake
line as imports (:func:`~pelago.core.services.intake.ingest`: dedupe,
routing, touch, ledger, events) and records each outcome on its row, in the
same transaction as the leads it made. So a submission becomes exactly one
lead or touch:

- **Lease.** A router first *claims* a batch in a short transaction of its
  own (``lease_token``, ``lease_until`` = now + :data:`LEASE`,
  ``attempts`` + 1). On PostgreSQL the claim takes the oldest rows
  ``FOR UPDATE SKIP LOCKED``, so two routers never take the same row; on
  SQLite every transaction holds the write lock, which serialises them.
- **Fence.** The batch's transaction locks its rows again and keeps only
  those still carrying its token: a router that stalled past its lease and
  lost the rows to another writes nothing for them.
- **Resume.** A router that dies (SIGKILL, a deploy) leaves its rows leased
  and ``accepted``; its transaction never committed, so nothing of the batch
  is stored. Once the lease expires the next router (the scheduler's tick
  starts one) takes them again. After :data:`MAX_ATTEMPTS` claims a row is
  ``failed``, so one poisonous payload cannot stop the queue.
- **Order per phone.** Rows are claimed oldest first, and a row is skipped
  while an earlier ``accepted`` row with the same phone (or email, when there
  is no phone) is leased by another router; claims take a transaction
  advisory lock on PostgreSQL so that check cannot race. So a phone's
  submissions are routed in the order they were accepted. A claim reads only
  the :data:`WINDOW` oldest ``accepted`` rows, which hold every row older
  than any of them, so the check is exact and costs the same at any backlog.
"""

from __future__ import annotations

import time
import uuid
import zlib
from collections.abc import Sequence
from datetime import timedelta
from itertools import groupby
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import (
    JSON,
    ColumnElement,
    Connection,
    Row,
    Table,
    bindparam,
    exists,
    func,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from .. import jsontext
from ..context import HookContext
from ..errors import NotFound
from ..models import StoredSubmission
from .intake import Outcome, Submission, clean_fields, clean_touch, ingest

if TYPE_CHECKING:  # pragma: no cover
    from ..runtime import Runtime

#: submissions per router transaction (and per call of the decision hooks)
BATCH = 200
#: the oldest ``accepted`` rows a claim reads (its cost is this, not the backlog's size)
WINDOW = 1000
#: how long a router holds a claimed batch; a router that died is replaced after it
LEASE = timedelta(seconds=60)
#: claims of one submission before it is ``failed`` instead of tried again
MAX_ATTEMPTS = 5
#: how long one job drains before it hands over to a fresh one (rq's job timeout is 180 s)
JOB_SECONDS = 60.0
#: how often a lingering router (``Queue.LINGER`` seconds, rq's) looks for new submissions
LINGER_POLL = 0.02
#: a claim of at least this many rows (a backlog) starts a second router beside this one (rq only)
HELPER_ROWS = 50
#: the job that drains the queue (``core.jobs``)
ROUTE_JOB = "route_submissions"
#: ``session.info`` flag: this transaction accepted a submission, start a router after commit
KICK = "pelago_route_submissions"

SUBMISSIONS = cast(Table, StoredSubmission.__table__)
_ACCEPTED: ColumnElement[str] = literal_column("'accepted'")
_NO_BOUND = 2**63 - 1
_CLAIM_LOCK = zlib.crc32(b"pelago.submissions.claim") & 0x7FFFFFFF
_CLAIM_START = text("SELECT set_config('synchronous_commit', 'off', true), pg_advisory_xact_lock(:k)")
#: the batch's outcomes in one statement (PostgreSQL), the rows as one JSON parameter
_FINISH_PG = text(
    "UPDATE core_submission SET status = u.status, outcome = u.outcome, lead_id = u.lead_id, "
    "touch_id = u.touch_id, errors = u.errors, processed_at = CAST(:now AS timestamptz), lease_until = NULL, "
    "lease_token = NULL FROM json_to_recordset(CAST(:rows AS json)) "
    "AS u(id bigint, status text, outcome text, lead_id bigint, touch_id bigint, errors jsonb) "
    "WHERE core_submission.id = u.id"
)


# --- accepting ---------------------------------------------------------------------------


def check(sub: Submission, region: str) -> tuple[str | None, dict[str, list[str]]]:
    """The submission's dedupe key (E.164 phone, else email) and its field errors, as intake would
    find them: an invalid lead is refused (422) before anything is stored."""
    values, errors = clean_fields(sub.data, region)
    errors.update(clean_touch(sub.touch)[1])
    return (values.get("phone") or values.get("email")), errors


def accept(
    conn: Session | Connection, *, tenant_id: int, channel_id: int | None, sub: Submission, dedupe: str | None,
    now: Any,
) -> tuple[int, bool]:
    """Store ``sub`` (one INSERT); ``(id, True)``, or ``(id of the first, False)`` for a retried key.

    On a session, the router starts after the session's commit; on a
    connection, the caller starts it (``runtime.queue.kick(ROUTE_JOB)``).
    """
    assert sub.key is not None, "a webhook submission always has its idempotency key"
    values = {
        "tenant_id": tenant_id, "channel_id": channel_id, "key": sub.key, "dedupe": dedupe,
        "data": dict(sub.data), "touch": dict(sub.touch), "raw": dict(sub.raw or {}), "status": "accepted",
        "attempts": 0, "received_at": now,
    }
    insert = _insert(conn)(SUBMISSIONS).values(**values)
    stmt = insert.on_conflict_do_nothing(index_elements=["tenant_id", "key"]).returning(SUBMISSIONS.c.id)
    new_id = conn.execute(stmt).scalar()
    if new_id is not None:
        if isinstance(conn, Session):
            conn.info[KICK] = True
        return int(new_id), True
    first = conn.execute(
        select(SUBMISSIONS.c.id).where(SUBMISSIONS.c.tenant_id == tenant_id, SUBMISSIONS.c.key == sub.key)
    ).scalar_one()
    return int(first), False


def _insert(conn: Session | Connection) -> Any:
    dialect = conn.get_bind().dialect if isinstance(conn, Session) else conn.dialect
    if dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def get_submission(ctx: HookContext, submission_id: int) -> StoredSubmission:
    """One of the tenant's submissions; ``NotFound`` for another tenant's or none."""
    found = ctx.session.scalars(select(StoredSubmission).where(StoredSubmission.id == submission_id)).first()
    if found is None:
        raise NotFound(f"submission {submission_id} not found")
    return found


def state(conn: Session | Connection, submission_id: int) -> dict[str, Any]:
    """What the webhook answers for a submission: its id, status and, once routed, its outcome."""
    row = conn.execute(
        select(SUBMISSIONS.c.id, SUBMISSIONS.c.status, SUBMISSIONS.c.outcome, SUBMISSIONS.c.lead_id,
               SUBMISSIONS.c.touch_id).where(SUBMISSIONS.c.id == submission_id)
    ).one()
    return dict(row._mapping)


# --- routing -----------------------------------------------------------------------------


def route_job(runtime: Runtime, helper: bool = False) -> dict[str, int]:
    """The ``route_submissions`` job: drain the queue, let the next accept start a router again,
    and drain once more (a submission accepted while the flag was still up is seen then).

    A drain stops after :data:`JOB_SECONDS` (rq kills a job at its timeout);
    under sustained load the job then hands over to a fresh one. On rq the
    job lingers a second once the queue is empty (a new job costs rq's
    bookkeeping and a worker's wake-up). ``pelago worker`` runs it in its own
    process, not a forked work horse (:mod:`pelago.core.worker`): a router
    starts with the connections and caches of the last one.

    A router that claims a backlog (:data:`HELPER_ROWS` or more) starts a
    ``helper`` beside it (its own flag, so at most one): the second rq worker
    then claims the next batch while the first is still routing its own, so a
    submission does not wait for a whole batch before a router takes it.
    A helper drains and lingers alike, but does not hand over when it times
    out: the first router does.
    """
    slot = 1 if helper else 0
    helper_at = None if helper else HELPER_ROWS
    began = time.monotonic()
    counts = route_pending(runtime, max_seconds=JOB_SECONDS, helper_at=helper_at)
    runtime.queue.settle(ROUTE_JOB, slot)
    if counts["timed_out"]:
        if not helper:
            runtime.queue.kick(ROUTE_JOB)
        return counts
    more = route_pending(runtime, max_seconds=JOB_SECONDS, helper_at=helper_at)
    linger = float(getattr(runtime.queue, "LINGER", 0.0))
    idle_since = time.monotonic()
    while not more["timed_out"] and linger and time.monotonic() - idle_since < linger:
        # At a steady trickle, wait a little for the next submissions rather than end and have the
        # next accept pay for a new job.
        time.sleep(LINGER_POLL)
        got = route_pending(runtime, max_seconds=JOB_SECONDS, helper_at=helper_at)
        more = {k: more[k] + got[k] for k in more}
        more["timed_out"] = got["timed_out"]
        if got["batches"]:
            idle_since = time.monotonic()
        if time.monotonic() - began > JOB_SECONDS:
            more["timed_out"] = 1
    if more["timed_out"] and not helper:
        runtime.queue.kick(ROUTE_JOB)
    return {k: counts[k] + more[k] for k in counts}


def route_pending(
    runtime: Runtime, *, batch: int = BATCH, max_batches: int | None = None, max_seconds: float | None = None,
    helper_at: int | None = None, window: int = WINDOW,
) -> dict[str, int]:
    """Claim and route micro-batches until none is left (or ``max_batches``, or ``max_seconds``:
    ``timed_out`` is then 1); counts by result. ``helper_at``: a claim of that many rows or more
    starts a helper router (:func:`route_job`); ``window``: the rows a claim reads (:func:`claim`)."""
    counts = {"batches": 0, "processed": 0, "failed": 0, "timed_out": 0}
    began = time.monotonic()
    while max_batches is None or counts["batches"] < max_batches:
        if max_seconds is not None and time.monotonic() - began > max_seconds:
            counts["timed_out"] = 1
            break
        token = uuid.uuid4().hex
        claimed = claim(runtime, token, batch, window)
        if not claimed:
            break
        counts["batches"] += 1
        if helper_at is not None and len(claimed) >= helper_at:
            _start_helper(runtime)
        for tenant_id, rows in groupby(sorted(claimed, key=lambda r: (r.tenant_id, r.id)), key=lambda r: r.tenant_id):
            process(runtime, tenant_id, list(rows), token, counts)
    return counts


def _start_helper(runtime: Runtime) -> None:
    try:
        runtime.queue.kick(ROUTE_JOB, 1)
    except Exception:  # noqa: BLE001 - a helper is for speed; this router goes on alone
        runtime.log.exception("could not start a helper router")


def claim(runtime: Runtime, token: str, limit: int, window: int = WINDOW) -> list[Row[Any]]:
    """Lease up to ``limit`` of the oldest claimable submissions to ``token``; committed at once.

    Claimable: ``accepted``, not leased (or the lease expired), and no earlier
    ``accepted`` submission of the same phone held by another router.

    Only the ``window`` oldest claimable rows (by id: ``accepted`` and not
    leased) are read, so a claim costs the same whatever the backlog behind
    them, and leased rows (a batch under way, or rows that failed alone and
    wait out their lease) never fill the window and stall other tenants. The
    check per phone stays exact: it looks at every earlier row of the phone,
    in the window or not. (Should the whole window wait on phones another
    router holds, the claim finds nothing until those batches finish.)
    """
    now = runtime.clock()
    s, e, w = SUBMISSIONS.alias("s"), SUBMISSIONS.alias("e"), SUBMISSIONS.alias("w")
    with runtime.sessions() as session:
        postgres = _postgres(session)
        # The window's newest id (no bound with fewer rows waiting), then the oldest rows up to it, both
        # along ix_core_submission_pending in id order; a phone's earlier rows along ix_core_submission_dedupe.
        last = (
            select(w.c.id).where(_waiting(w, postgres), or_(w.c.lease_until.is_(None), w.c.lease_until < now))
            .order_by(w.c.id)
            .offset(max(window, limit) - 1).limit(1).scalar_subquery()
        )
        held_earlier = exists().where(
            e.c.tenant_id == s.c.tenant_id, e.c.dedupe == s.c.dedupe, e.c.status == _ACCEPTED, e.c.id < s.c.id,
            e.c.lease_until >= now,
        )
        picked = (
            select(s.c.id)
            .where(_waiting(s, postgres), s.c.id <= func.coalesce(last, _NO_BOUND),
                   or_(s.c.lease_until.is_(None), s.c.lease_until < now), ~held_earlier)
            .order_by(s.c.id).limit(limit)
        )
        if postgres:
            # One claim at a time (a statement's worth), so the check on earlier rows cannot race;
            # SKIP LOCKED passes over rows a finishing batch still holds. The lease commits without
            # waiting for the WAL flush (one round trip with the lock): should the database crash
            # and lose it, the rows are simply unleased, as if never claimed (the batch's own
            # transaction, which writes the leads and outcomes, commits durably as ever).
            session.execute(_CLAIM_START, {"k": _CLAIM_LOCK})
            picked = picked.with_for_update(skip_locked=True, of=s)
        rows = session.execute(
            update(SUBMISSIONS).where(SUBMISSIONS.c.id.in_(picked.scalar_subquery()))
            .values(lease_token=token, lease_until=now + LEASE, attempts=SUBMISSIONS.c.attempts + 1)
            .returning(SUBMISSIONS.c.id, SUBMISSIONS.c.tenant_id, SUBMISSIONS.c.key, SUBMISSIONS.c.data,
                       SUBMISSIONS.c.touch, SUBMISSIONS.c.raw, SUBMISSIONS.c.attempts)
        ).all()
        session.commit()
    return sorted(rows, key=lambda r: r.id)


def _waiting(t: Any, postgres: bool) -> ColumnElement[bool]:
    """``status = 'accepted'`` for a claim. SQLite's planner, which keeps no statistics, would find
    the rows through ``ix_core_submission_age`` (``status`` first) and sort every one of them by id;
    ``likely()`` (a hint, the same condition) sends it along ``ix_core_submission_pending`` instead."""
    waiting = t.c.status == _ACCEPTED
    return waiting if postgres else func.likely(waiting)


def process(runtime: Runtime, tenant_id: int, rows: Sequence[Row[Any]], token: str, counts: dict[str, int]) -> None:
    """Route one tenant's claimed rows in one transaction with their outcomes; on an error, one by one.

    A row that fails alone keeps its lease: it is tried again once the lease
    expires, and failed after :data:`MAX_ATTEMPTS` claims.
    """
    try:
        with runtime.tenant_context(tenant_id) as ctx:
            mine = _hold(ctx.session, [r.id for r in rows], token)
            rows = [r for r in rows if r.id in mine]
            todo = [r for r in rows if r.attempts <= MAX_ATTEMPTS]
            spent = [r for r in rows if r.attempts > MAX_ATTEMPTS]
            outcomes = ingest(ctx, [_submission(r) for r in todo], routing=True) if todo else []
            _finish(ctx, list(zip(todo, outcomes, strict=True)), spent, counts)
    except Exception:  # noqa: BLE001 - one bad submission must not hold the others
        if len(rows) > 1:
            for r in rows:
                process(runtime, tenant_id, [r], token, counts)
            return
        runtime.log.exception("submission %s could not be routed (attempt %s of %s)", rows[0].id,
                              rows[0].attempts, MAX_ATTEMPTS)


def _hold(session: Session, ids: list[int], token: str) -> set[int]:
    """Lock the batch's rows for this transaction; those another router took meanwhile are dropped.

    In id order, as an erasure locks the person's pending rows (``privacy``), so the two cannot deadlock.
    """
    stmt = select(SUBMISSIONS.c.id).where(
        SUBMISSIONS.c.id.in_(ids), SUBMISSIONS.c.lease_token == token, SUBMISSIONS.c.status == "accepted"
    )
    if _postgres(session):
        stmt = stmt.order_by(SUBMISSIONS.c.id).with_for_update()
    return set(session.execute(stmt).scalars())


def _submission(row: Row[Any]) -> Submission:
    return Submission(data=row.data, touch=row.touch, raw=row.raw, key=row.key)


def _finish(
    ctx: HookContext, done: list[tuple[Row[Any], Outcome]], spent: list[Row[Any]], counts: dict[str, int]
) -> None:
    """Each row's outcome, in the transaction of the leads it made (one statement for the batch)."""
    now = ctx.now()
    values: list[dict[str, Any]] = []
    for r, o in done:
        ok = o.status != "invalid"
        values.append({
            "sid": r.id, "s_status": "processed" if ok else "failed", "s_outcome": o.status if ok else None,
            "s_lead": o.lead_id, "s_touch": o.touch_id, "s_errors": None if ok else o.errors,
        })
        counts["processed" if ok else "failed"] += 1
    for r in spent:
        values.append({
            "sid": r.id, "s_status": "failed", "s_outcome": None, "s_lead": None, "s_touch": None,
            "s_errors": {"submission": [f"routing failed {MAX_ATTEMPTS} times; the server's log has why"]},
        })
        counts["failed"] += 1
    if not values:
        return
    if _postgres(ctx.session):
        rows = [{"id": v["sid"], "status": v["s_status"], "outcome": v["s_outcome"], "lead_id": v["s_lead"],
                 "touch_id": v["s_touch"], "errors": v["s_errors"]} for v in values]
        ctx.session.execute(_FINISH_PG, {"now": now, "rows": jsontext.dumps(rows)})
        return
    c = SUBMISSIONS.c
    ctx.session.execute(
        update(SUBMISSIONS).where(c.id == bindparam("sid")).values(
            status=bindparam("s_status"), outcome=bindparam("s_outcome"), lead_id=bindparam("s_lead"),
            touch_id=bindparam("s_touch"), errors=bindparam("s_errors", type_=_ERRORS), processed_at=now,
            lease_until=None, lease_token=None,
        ).execution_options(synchronize_session=False),
        values,
    )


#: ``errors`` of a processed row as SQL NULL, as the PostgreSQL statement writes it (a JSON column
#: would store ``None`` as JSON ``null``, which ``errors IS NULL`` does not find)
_ERRORS = JSON(none_as_null=True)


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"

