"""Retention: webhook submissions and outbound posts that are done are deleted after a while.

``core_submission`` keeps each webhook submission as received (its raw
payload, personal data) and ``core_outbound_post`` each POST to a tenant's
URL; both are only needed while the row is being worked on, and for a
while after to answer "what became of it". The ``retention`` job, started
by the scheduler's tick at most once per :attr:`Retention.every`, deletes:

* submissions ``processed`` longer than ``done_days`` ago (by
  ``received_at``), ``failed`` ones after ``failed_days``;
* posts ``sent`` longer than ``done_days`` ago (by ``created_at``),
  ``failed`` ones after ``failed_days``.

``accepted`` submissions and ``queued``/``sending`` posts are never
deleted: they are work still to do. Rows go in batches of ``batch`` ids
(one short transaction each, oldest ids first), at most ``rounds`` batches
per kind and run: a backlog is worked off over several runs, never in one
long transaction. A day count of 0 keeps that kind forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select

from .models import OutboundPost, StoredSubmission

if TYPE_CHECKING:  # pragma: no cover
    from .runtime import Runtime


@dataclass(frozen=True)
class Retention:
    """How long done rows are kept (``PELAGO_RETENTION_DAYS``, ``PELAGO_RETENTION_FAILED_DAYS``)."""

    #: days a processed submission or a sent post is kept (0: forever)
    done_days: int = 30
    #: days a failed submission or post is kept (longer: someone may still look into it; 0: forever)
    failed_days: int = 90
    #: ids deleted per statement (and transaction)
    batch: int = 1000
    #: batches per kind and run
    rounds: int = 20
    #: how often the scheduler's tick starts the job
    every: timedelta = timedelta(hours=1)


def _kinds(policy: Retention) -> list[tuple[str, Any, str, Any, int]]:
    """``(name, model, status, age column, days)`` of each kind of row the job deletes."""
    return [
        ("submissions_processed", StoredSubmission, "processed", StoredSubmission.received_at, policy.done_days),
        ("submissions_failed", StoredSubmission, "failed", StoredSubmission.received_at, policy.failed_days),
        ("posts_sent", OutboundPost, "sent", OutboundPost.created_at, policy.done_days),
        ("posts_failed", OutboundPost, "failed", OutboundPost.created_at, policy.failed_days),
    ]


def sweep(runtime: Runtime, policy: Retention | None = None, now: datetime | None = None) -> dict[str, int]:
    """The ``retention`` job: delete the done rows past their days, every tenant's; counts by kind.

    ``policy`` defaults to the runtime's; a runtime without one deletes nothing.
    """
    policy = policy or runtime.retention
    now = now or runtime.clock()
    counts: dict[str, int] = {}
    for name, model, status, age, days in _kinds(policy or Retention()):
        counts[name] = 0
        if policy is None or days <= 0:
            continue
        cutoff = now - timedelta(days=days)
        for _ in range(policy.rounds):
            # the (status, age) index serves this; ids in order, so each batch starts where the last ended
            ids = select(model.id).where(model.status == status, age < cutoff).order_by(model.id).limit(policy.batch)
            with runtime.sessions() as session:
                found = list(session.scalars(ids.execution_options(all_tenants=True)))
                if not found:
                    break
                # the status and age again: a row that changed since it was read stays
                gone = session.execute(  # type: ignore[attr-defined]  # a CursorResult
                    delete(model).where(model.id.in_(found), model.status == status, age < cutoff)
                    .execution_options(all_tenants=True, synchronize_session=False)
                ).rowcount
                session.commit()
            counts[name] += gone
            if len(found) < policy.batch:
                break
    if any(counts.values()):
        runtime.log.info("retention: deleted %s", counts)
    return counts
