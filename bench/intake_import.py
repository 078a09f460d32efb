"""intake_import: 100,000 leads through the whole intake line versus a bare INSERT.

Pipeline: :func:`pelago.core.services.intake.ingest` in batches of 1,000,
each batch its own transaction (``Runtime.tenant_context``): phones
normalised from mixed formats, dedupe by the unique indexes, routing on (the
tenant's default team of 10 reps, round robin), touches, stage history,
ownership ledger and outbox events. Baseline: SQLAlchemy Core
``executemany`` of ``insert(Lead.__table__)`` with the same 100,000 rows
already normalised, 1,000 rows per transaction. Each side has its own fresh
tenant in the same database; their batches alternate, so both see the same
table sizes and the same machine. Only the database work is timed: building
each batch from the generator is not, on either side.

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


def measure(kind: str, n: int) -> dict[str, Any]:
    from sqlalchemy import insert

    from pelago.core.models import Lead

    with bench_database(kind) as url:
        runtime = make_runtime(url)
        pipeline_tenant = make_tenant(runtime, reps=10)
        baseline_tenant = make_tenant(runtime, reps=10, auto_routing=False)
        now = runtime.clock()
        baseline_batches = batches(lead_rows(n, baseline_tenant.id, now))
        pipeline, baseline = Stopwatch(), Stopwatch()
        memory = MemoryTrace((n + BATCH - 1) // BATCH)
        table = Lead.__table__

        def baseline_batch(_k: int) -> None:
            rows = next(baseline_batches)
            with baseline, runtime.engine.begin() as conn:
                conn.execute(insert(table), rows)

        log(f"{kind}: {n:,} leads, pipeline and baseline batches alternating")
        run_import(runtime, pipeline_tenant, n, pipeline, between=baseline_batch, memory=memory)
        counts = check_pipeline(runtime, pipeline_tenant, n)
        runtime.engine.dispose()
    ratio = pipeline.seconds / baseline.seconds
    return result(
        f"intake_import_{kind}", ratio,
        rows=n, batch=BATCH, pipeline_s=round(pipeline.seconds, 2), baseline_s=round(baseline.seconds, 2),
        pipeline_rows_per_s=round(n / pipeline.seconds), baseline_rows_per_s=round(n / baseline.seconds),
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
