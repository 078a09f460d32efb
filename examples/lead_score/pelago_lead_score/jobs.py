"""Scoring, and the periodic job that keeps scores current.

Everything here is set-based: a batch of up to :data:`BATCH` leads is scored
by one ``INSERT … SELECT … ON CONFLICT DO UPDATE`` statement, and a score is
always recomputed from the lead's current state (its source and the
activities inside the window), never incremented. Running any of it twice, or
out of order, gives the same scores, which is what makes the event handlers
idempotent under at-least-once delivery.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from sqlalchemy import case, func, literal, or_, select

from pelago.plugin import (
    Activity,
    BigId,
    HookContext,
    JobContext,
    Lead,
    UtcDateTime,
    conflict_key,
    dialect_name,
)

from .models import LeadScore

PLUGIN = "lead_score"
BATCH = 500


def _insert(ctx: HookContext) -> Any:
    dialect = dialect_name(ctx.session)
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    else:  # pragma: no cover
        raise NotImplementedError(f"lead_score does not support {dialect}")
    return insert


def _upsert(ctx: HookContext, lead_ids: list[int], *, lock: bool = True) -> None:
    """Score ``lead_ids`` (one batch) in one statement.

    With ``lock``, the leads' rows are locked first (``FOR NO KEY UPDATE`` on
    PostgreSQL; SQLite has one writer at a time anyway). Two deliveries for the
    same lead then run one after the other, and the second one's statement
    reads the activities the first one could not see yet: the last writer is
    never stale.
    """
    if lock:
        ctx.session.execute(
            select(Lead.id).where(Lead.id.in_(lead_ids)).order_by(Lead.id).with_for_update(key_share=True)
        )
    settings = ctx.settings(PLUGIN)
    now = ctx.now()
    tenant_id = ctx.tenant.id
    since = now - timedelta(days=settings["window_days"])

    per_activity: Any = literal(settings["activity_points"])
    if settings["kind_points"]:
        per_activity = case(settings["kind_points"], value=Activity.kind, else_=settings["activity_points"])
    source: Any = literal(0)
    if settings["source_points"]:
        source = case(settings["source_points"], value=Lead.source, else_=0)

    # INSERT … SELECT is not an ORM query: the session's tenant filter does
    # not apply to it, so every table is filtered on tenant_id explicitly.
    counted = (
        select(
            Activity.lead_id,
            func.sum(per_activity).label("points"),
            func.count().label("n"),
            func.min(Activity.occurred_at).label("oldest"),
        )
        .where(
            Activity.tenant_id == tenant_id,
            Activity.lead_id.in_(lead_ids),
            Activity.occurred_at >= since,
        )
        .group_by(Activity.lead_id)
        .subquery()
    )
    rows = (
        select(
            literal(tenant_id, BigId),
            Lead.id,
            source + func.coalesce(counted.c.points, 0),
            func.coalesce(counted.c.n, 0),
            counted.c.oldest,
            literal(now, UtcDateTime()),
        )
        .select_from(Lead)
        .outerjoin(counted, counted.c.lead_id == Lead.id)
        .where(Lead.tenant_id == tenant_id, Lead.id.in_(lead_ids))
    )
    table = LeadScore.__table__
    stmt = _insert(ctx)(table).from_select(
        ["tenant_id", "lead_id", "score", "activities", "oldest_activity_at", "updated_at"], rows
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=conflict_key(ctx.session, table, ["tenant_id", "lead_id"]),
        set_={
            "score": stmt.excluded.score,
            "activities": stmt.excluded.activities,
            "oldest_activity_at": stmt.excluded.oldest_activity_at,
            "updated_at": stmt.excluded.updated_at,
        },
        # Unchanged rows are not rewritten: updated_at is when the score moved.
        where=or_(
            table.c.score != stmt.excluded.score,
            table.c.activities != stmt.excluded.activities,
            table.c.oldest_activity_at.is_distinct_from(stmt.excluded.oldest_activity_at),
        ),
    )
    ctx.session.execute(stmt)


def rescore(ctx: HookContext, lead_ids: Iterable[int]) -> int:
    """Recompute the scores of ``lead_ids`` (of ``ctx.tenant``); returns how many leads."""
    ids = sorted({int(i) for i in lead_ids})
    for start in range(0, len(ids), BATCH):
        _upsert(ctx, ids[start:start + BATCH])
    return len(ids)


def rescore_all(ctx: HookContext) -> int:
    """Score every lead of the tenant, in batches walked by id (keyset, no OFFSET).

    Without row locks: holding a lock on every lead of a big tenant until the
    end of the transaction would stall its users. A lead that changes while
    this runs is rescored by its own event, or at the latest by :func:`decay`.
    """
    done, last = 0, 0
    while True:
        # An ORM query: the session adds the tenant filter itself.
        ids = list(ctx.session.scalars(
            select(Lead.id).where(Lead.id > last).order_by(Lead.id).limit(BATCH)
        ))
        if not ids:
            return done
        _upsert(ctx, ids, lock=False)
        done += len(ids)
        last = ids[-1]


def decay(ctx: JobContext) -> int:
    """The daily job (``lead_score.decay``), run once per tenant that has the plugin on.

    Rescores the leads whose oldest counted activity has left the window (their
    score must drop), plus, as a safety net for a delivery that failed for good,
    every lead with an activity in the last day. Idempotent: a second run in
    the same period finds nothing left to change.
    """
    now = ctx.now()
    window = timedelta(days=ctx.settings(PLUGIN)["window_days"])
    stale = select(LeadScore.lead_id).where(LeadScore.oldest_activity_at < now - window)
    active = select(Lead.id).where(Lead.last_activity_at >= now - timedelta(days=1))
    ids = set(ctx.session.scalars(stale)) | set(ctx.session.scalars(active))
    return rescore(ctx, ids)
