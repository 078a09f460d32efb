"""intake_import: 100,000 leads through the whole intake line versus a bare INSERT and the same writes by hand.

Pipeline: :func:`pelago.core.services.intake.ingest` in batches of 1,000,
each batch its own transaction (``Runtime.tenant_context``): phones
normalised from mixed formats, dedupe by the unique indexes, routing on (the
tenant's default team of 10 reps, round robin), touches, stage history,
ownership ledger and outbox events. Two baselines, each on a fresh tenant of
its own in the same database, with the same 100,000 rows already normalised
(E.164 phones, lowercased emails), 1,000 rows per transaction:

- ``ratio``, against the **bare** insert: SQLAlchemy Core ``executemany`` of
  ``insert(Lead.__table__)``, the lead rows alone.
- ``ratio_sql``, against the **same writes by hand**: the minimal SQL that
  stores what the pipeline stores for a batch, set-based. Each lead with its
  round-robin owner (chosen in Python, the pointer saved on the team), its
  touch (raw row, key, UTM), stage history, ledger row (with the same
  explanation) and the two outbox events (``lead_created``,
  ``lead_assigned``, their items built by the database). On PostgreSQL one
  statement of data-modifying CTEs over ``json_to_recordset`` (the batch as
  one JSON parameter); on SQLite one ``executemany`` per table, lead ids
  taken after the highest. No lookups, no dedupe, no hooks: the limit for the
  same result.

Their batches alternate, so every side sees the same table sizes and the
same machine. Only the database work is timed: building each batch from the
generator is not, on any side. On PostgreSQL the tables are analysed
(untimed) after the first round of batches, as autovacuum would do on a
live database: before any statistics, the cost of every index of
``core_lead`` ties for the foreign-key checks of touches, stage history and
ledger, the planner may pick one that scans the whole tenant, and each
connection keeps that plan until the next ``ANALYZE`` (which autovacuum
runs at a moment of its own choosing: the main source of spread between
runs before).

Memory: rows come from a generator, a batch at a time. The resident set is
sampled after every pipeline batch; ``rss_growth_mb`` is its highest value
after 10% of the rows minus its value at 10%, and should stay near zero
whatever ``--rows`` is. With ``--db both`` each database runs in its own
process, so ``peak_rss_mb`` is that run's own.

    python -m bench.intake_import [--rows 100000] [--db postgresql|sqlite|both]
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from itertools import islice
from typing import Any

from bench.common import (
    BenchTenant,
    Stopwatch,
    arguments,
    bench_database,
    cn_e164,
    goal_met,
    kinds,
    log,
    make_runtime,
    make_tenant,
    peak_rss_mb,
    raw_leads,
    result,
    rss_mb,
)

BATCH = 1000
GOALS = {"postgresql": "<=2", "sqlite": "<=3"}
GOAL_SQL = "<=1.3"  # against the same writes by hand
TOUCH_KEYS = ("utm_source", "utm_medium", "utm_campaign")
LEAD_KEYS = ("name", "phone", "email", "source")


def submissions(n: int) -> Iterator[Any]:
    """The leads as the CSV import job hands them to ``ingest``: raw fields, attribution, the
    raw row, and the row's idempotency key (``import:<file sha256>:<row>``)."""
    from pelago.core.services.intake import Submission

    sha = uuid.uuid4().hex * 2  # a file of its own per run
    for i, row in enumerate(raw_leads(n), start=1):
        touch = {"channel": "import", **{k: row[k] for k in TOUCH_KEYS if k in row}}
        yield Submission({k: row[k] for k in LEAD_KEYS if k in row}, touch, raw=row, key=f"import:{sha}:{i}", row=i)


def lead_rows(n: int, tenant_id: int, now: datetime) -> Iterator[dict[str, Any]]:
    """The same leads as finished ``core_lead`` rows (E.164 phones, lowercased emails)."""
    for i, row in enumerate(raw_leads(n)):
        yield {
            "tenant_id": tenant_id, "name": row["name"], "phone": cn_e164(i), "email": row.get("email"),
            "source": row["source"], "region": None, "product": None, "stage": "new", "is_customer": False,
            "owner_id": None, "team_id": None, "locked": False, "attributes": {}, "created_at": now,
            "updated_at": now, "assigned_at": None, "stage_changed_at": now, "version": 1,
        }


def batches(items: Iterator[Any], size: int = BATCH) -> Iterator[list[Any]]:
    while batch := list(islice(items, size)):
        yield batch


def ingest_batch(runtime: Any, tenant_id: int, batch: list[Any]) -> list[Any]:
    """One import batch as the import job runs it: its own transaction, events after commit."""
    from pelago.core.services.intake import ingest

    with runtime.tenant_context(tenant_id) as ctx:
        return ingest(ctx, batch)


class MemoryTrace:
    """Resident set after each batch: its value at 10% of the rows and its highest after."""

    def __init__(self, total_batches: int) -> None:
        self.mark = max(total_batches // 10, 1)
        self.at_mark = 0.0
        self.after = 0.0

    def sample(self, done_batches: int) -> None:
        now = rss_mb()
        if done_batches == self.mark:
            self.at_mark = now
        elif done_batches > self.mark:
            self.after = max(self.after, now)

    @property
    def growth(self) -> float:
        return max(self.after - self.at_mark, 0.0) if self.after else 0.0


def check_pipeline(runtime: Any, tenant: BenchTenant, n: int) -> dict[str, int]:
    """Prove the pipeline did all its work: leads, touches, ledger, stages, fair shares."""
    from sqlalchemy import func, select

    from pelago.core.models import Lead, OutboxEvent, OwnershipChange, StageChange, Touch

    with runtime.tenant_session(tenant.id) as session:
        counts = {
            "leads": session.scalar(select(func.count()).select_from(Lead)),
            "touches": session.scalar(select(func.count()).select_from(Touch)),
            "ledger": session.scalar(select(func.count()).select_from(OwnershipChange)),
            "stages": session.scalar(select(func.count()).select_from(StageChange)),
            "events": session.scalar(select(func.count()).select_from(OutboxEvent)),
        }
        shares = {o: c for o, c in session.execute(select(Lead.owner_id, func.count()).group_by(Lead.owner_id))}
    for what in ("leads", "touches", "ledger", "stages"):
        if counts[what] != n:
            raise AssertionError(f"pipeline wrote {counts[what]} {what}, expected {n}")
    if None in shares or max(shares.values()) - min(shares.values()) > 1:
        raise AssertionError(f"round robin is off: {shares}")
    return counts


def run_import(
    runtime: Any, tenant: BenchTenant, n: int, watch: Stopwatch,
    between: Callable[[int], None] | None = None, memory: MemoryTrace | None = None,
) -> None:
    """``n`` leads through ``ingest`` in batches; ``between(k)`` runs (untimed) before batch ``k``."""
    for k, batch in enumerate(batches(submissions(n)), start=1):
        if between is not None:
            between(k)
        with watch:
            outcomes = ingest_batch(runtime, tenant.id, batch)
        if any(o.status != "created" for o in outcomes):
            bad = next(o for o in outcomes if o.status != "created")
            raise AssertionError(f"batch {k}: a lead was not created: {bad}")
        if memory is not None:
            memory.sample(k)
        if k % 10 == 0:
            log(f"  {k * BATCH:,} / {n:,} rows")


def analyse(runtime: Any) -> None:
    """PostgreSQL: statistics for the tables the sides write, as autovacuum keeps them on a live database."""
    if runtime.engine.dialect.name != "postgresql":
        return
    from sqlalchemy import text

    with runtime.engine.begin() as conn:
        conn.execute(text("ANALYZE core_lead, core_touch, core_stage_change, core_ownership_change, core_event"))


def check_by_hand(runtime: Any, tenant: BenchTenant, n: int) -> None:
    """The hand-written side made the same rows as the pipeline: leads, touches, ledger, stages, two events a batch."""
    from sqlalchemy import func, select

    from pelago.core.models import Delivery, Lead, OutboxEvent, OwnershipChange, StageChange, Touch

    with runtime.tenant_session(tenant.id) as session:
        for model in (Lead, Touch, OwnershipChange, StageChange):
            count = session.scalar(select(func.count()).select_from(model))
            if count != n:
                raise AssertionError(f"the hand-written side wrote {count} {model.__tablename__} rows, expected {n}")
        events = session.scalar(select(func.count()).select_from(OutboxEvent))
        if events != 2 * ((n + BATCH - 1) // BATCH):
            raise AssertionError(f"the hand-written side wrote {events} events")
        if session.scalar(select(func.count()).select_from(Delivery)):  # pragma: no cover - no subscriber here
            raise AssertionError("deliveries were written: the hand-written side would have to write them too")


def measure(kind: str, n: int) -> dict[str, Any]:
    from sqlalchemy import insert

    from bench._import_by_hand import ByHand
    from pelago.core.models import Lead

    with bench_database(kind) as url:
        runtime = make_runtime(url)
        pipeline_tenant = make_tenant(runtime, reps=10)
        baseline_tenant = make_tenant(runtime, reps=10, auto_routing=False)
        by_hand_tenant = make_tenant(runtime, reps=10, auto_routing=False)
        now = runtime.clock()
        baseline_batches = batches(lead_rows(n, baseline_tenant.id, now))
        by_hand = ByHand(runtime, by_hand_tenant)
        by_hand_batches = batches(by_hand.rows(n))
        pipeline, baseline, same_writes = Stopwatch(), Stopwatch(), Stopwatch()
        memory = MemoryTrace((n + BATCH - 1) // BATCH)
        table = Lead.__table__

        def other_sides(k: int) -> None:
            if k == 2:  # every side has written one batch: statistics, as on a live database
                analyse(runtime)
            rows = next(baseline_batches)
            with baseline, runtime.engine.begin() as conn:
                conn.execute(insert(table), rows)
            written = next(by_hand_batches)
            with same_writes:
                by_hand.write(written, runtime.clock())

        log(f"{kind}: {n:,} leads, pipeline, bare baseline and same writes by hand batches alternating")
        run_import(runtime, pipeline_tenant, n, pipeline, between=other_sides, memory=memory)
        counts = check_pipeline(runtime, pipeline_tenant, n)
        check_by_hand(runtime, by_hand_tenant, n)
        runtime.engine.dispose()
    ratio = pipeline.seconds / baseline.seconds
    ratio_sql = pipeline.seconds / same_writes.seconds
    return result(
        f"intake_import_{kind}", ratio,
        ratio_sql=round(ratio_sql, 3), goal_sql=GOAL_SQL, met_sql="yes" if goal_met(ratio_sql, GOAL_SQL) else "no",
        rows=n, batch=BATCH, pipeline_s=round(pipeline.seconds, 2), baseline_s=round(baseline.seconds, 2),
        same_writes_s=round(same_writes.seconds, 2),
        pipeline_rows_per_s=round(n / pipeline.seconds), baseline_rows_per_s=round(n / baseline.seconds),
        same_writes_rows_per_s=round(n / same_writes.seconds),
        events=counts["events"], rss_at_10pct_mb=round(memory.at_mark, 1),
        rss_growth_mb=round(memory.growth, 1), peak_rss_mb=round(peak_rss_mb(), 1), goal=GOALS[kind],
    )


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__.split("\n", 1)[0], 100_000, db="both")
    args = parser.parse_args(argv)
    chosen = kinds(args.db)
    if len(chosen) == 1:
        measure(chosen[0], args.rows)
        return 0
    status = 0
    for kind in chosen:  # one process per database: each run's memory figures are its own
        status |= subprocess.call([sys.executable, "-m", "bench.intake_import", "--db", kind, "--rows", str(args.rows)])
    return status


if __name__ == "__main__":
    sys.exit(main())
