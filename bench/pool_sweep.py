"""pool_sweep: the pool's sweep over 1,000,000 held leads versus one set-based SQL statement.

Three fresh tenants, loaded alike with ``INSERT … SELECT generate_series``
before anything is timed (so every side sees the same table): 1,000 reps each,
``--rows`` leads held round-robin by them, 10% of them stale (last activity 45
days ago, claimed 60 days ago) and the rest worked two days ago; the default
pool recycles after 30 days without follow-up.

Sweep: :func:`pelago.plugins.pool.sweep.run` on the first tenant, as the
periodic job runs it: windows of 10,000 leads, at most 1,000 released per
transaction, each batch one ``SELECT … FOR UPDATE SKIP LOCKED`` with the
rules in SQL, ``check_assign`` asked for the batch, the owners cleared, the
ledger rows, the pool entries and one ``lead_released`` event, then commit.
Event delivery is not timed (it runs after commit in workers; here the queue
only records it).

Baseline, on the second tenant: the same release as one statement — the
``UPDATE`` of every stale lead, with the ledger rows and pool entries inserted
from its ``RETURNING`` (data-modifying CTEs) — the fastest the database can do
it. ``bare_update_s``, on the third tenant: the ``UPDATE`` alone, committed.

The three sides alternate, so load that comes and goes on a shared machine
falls on all of them: each tenant's leads are cut by id into ``--chunks``
chunks (10: 100,000 leads each at full size); once the sweep has scanned a
chunk's worth (its progress callback, not timed as the sweep's), the baseline
and the bare ``UPDATE`` each run their next chunk, in one transaction each,
taking turns going first. The ratio is the sweep's time over the baseline's.

Checked: the sweep and the baseline each release every due lead exactly once
(leads without owner, ledger rows, distinct leads in the ledger and pool
entries all equal the stale count). Also: the longest single sweep
transaction against its 250 ms goal (``txn_goal_met``; the run exits non-zero
when it is missed), and memory: the resident set after each batch
(``rss_growth_mb``: highest after 10% of the batches minus the value at 10%;
flat means near zero whatever ``--rows``).

    python -m bench.pool_sweep [--rows 1000000] [--chunks 10]
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

from bench.common import (
    RecordingQueue,
    Stopwatch,
    arguments,
    bench_database,
    log,
    make_runtime,
    make_tenant,
    peak_rss_mb,
    result,
    rss_mb,
)

REPS = 1000
DAYS = 30
GOAL = "<=2"
TXN_GOAL_MS = 250
CHUNKS = 10

LOAD = """
INSERT INTO core_lead (tenant_id, name, phone, source, stage, is_customer, owner_id, team_id, locked, attributes,
                       created_at, updated_at, assigned_at, stage_changed_at, last_activity_at, version)
SELECT :t, 'lead ' || g, '+86' || (13800000000 + g + :off)::text,
       (ARRAY['douyin','baidu','wechat','website','referral'])[1 + g % 5], 'new', false,
       (CAST(:reps AS bigint[]))[1 + g % :nreps], :team, false, '{}',
       now() - interval '90 days', now() - interval '2 days', now() - interval '60 days', now() - interval '90 days',
       CASE WHEN g % 10 = 0 THEN now() - interval '45 days' ELSE now() - interval '2 days' END, 1
FROM generate_series(1, :n) g
"""

STALE = """
tenant_id = :t AND owner_id IS NOT NULL AND NOT locked AND NOT is_customer AND stage <> 'won'
AND (last_activity_at IS NULL OR last_activity_at < :cut) AND coalesce(assigned_at, created_at) < :cut
"""

BASELINE = f"""
WITH old AS (
    SELECT id, owner_id, team_id FROM core_lead WHERE {STALE} AND id > :lo AND id <= :hi FOR UPDATE
), released AS (
    UPDATE core_lead l SET owner_id = NULL, assigned_at = NULL, updated_at = :now, version = l.version + 1
    FROM old WHERE l.id = old.id
    RETURNING l.id, old.owner_id, old.team_id
), ledger AS (
    INSERT INTO core_ownership_change (tenant_id, lead_id, from_user_id, to_user_id, from_team_id, to_team_id,
                                       reason, rule, note, detail, actor_id, at)
    SELECT :t, id, owner_id, NULL, team_id, team_id, 'recycled', 'no_followup', '',
           jsonb_build_object('pool_id', CAST(:pool AS bigint)), NULL, :now
    FROM released
), entries AS (
    INSERT INTO pool_entry (tenant_id, lead_id, pool_id, entered_at, reason, rule, from_user_id, released_at, note)
    SELECT :t, id, :pool, :now, 'recycled', 'no_followup', owner_id, :now, '' FROM released
)
SELECT count(*) FROM released
"""

BARE = f"""
UPDATE core_lead SET owner_id = NULL, assigned_at = NULL, updated_at = :now, version = version + 1
WHERE {STALE} AND id > :lo AND id <= :hi
"""


def setup(runtime: Any, n: int, offset: int, reps: int = REPS) -> tuple[Any, int]:
    """A tenant with the pool on, its default pool recycling after ``DAYS``, and ``n`` leads held by ``reps``."""
    from sqlalchemy import text

    from pelago.plugins.pool import pools
    from pelago.plugins.pool.models import Pool

    tenant = make_tenant(runtime, reps=reps, auto_routing=False, plugins=("pool",))
    with runtime.tenant_context(tenant.id) as ctx:
        pool_id = pools.ensure_default(ctx)
        pools.update(ctx, ctx.session.get(Pool, pool_id), {"settings": {"recycle": {"no_followup": {"days": DAYS}}}})
    with runtime.engine.begin() as conn:
        conn.execute(text(LOAD), {"t": tenant.id, "n": n, "off": offset, "reps": tenant.rep_ids, "nreps": reps,
                                  "team": tenant.team_id})
    return tenant, pool_id


def counts(runtime: Any, tenant_id: int) -> tuple[int, int, int, int]:
    """Released leads, their ledger rows, distinct leads in the ledger, pool entries."""
    from sqlalchemy import text

    with runtime.engine.connect() as conn:
        return tuple(conn.execute(text(  # type: ignore[return-value]
            "SELECT (SELECT count(*) FROM core_lead WHERE tenant_id = :t AND owner_id IS NULL), "
            "(SELECT count(*) FROM core_ownership_change WHERE tenant_id = :t AND reason = 'recycled'), "
            "(SELECT count(DISTINCT lead_id) FROM core_ownership_change WHERE tenant_id = :t AND reason = 'recycled'), "
            "(SELECT count(*) FROM pool_entry WHERE tenant_id = :t)"), {"t": tenant_id}).one())


def bounds(runtime: Any, tenant_id: int, n: int, chunks: int) -> list[tuple[int, int]]:
    """The tenant's leads cut by id into ``chunks`` runs of about ``n / chunks`` leads: ``(lo, hi]`` each."""
    from sqlalchemy import text

    edges = [0]
    with runtime.engine.connect() as conn:
        for k in range(1, chunks):
            edges.append(conn.execute(text(
                "SELECT id FROM core_lead WHERE tenant_id = :t ORDER BY id OFFSET :o LIMIT 1"),
                {"t": tenant_id, "o": n * k // chunks - 1}).scalar_one())
        edges.append(conn.execute(text("SELECT max(id) FROM core_lead WHERE tenant_id = :t"),
                                  {"t": tenant_id}).scalar_one())
    return list(zip(edges, edges[1:], strict=False))


def measure(n: int, batch: int | None = None, reps: int = REPS, chunks: int = CHUNKS) -> dict[str, Any]:
    from sqlalchemy import text

    from pelago.plugins.pool import rules
    from pelago.plugins.pool import sweep as sweeping

    with bench_database("postgresql") as url:
        runtime = make_runtime(url, plugins=("pool",))
        queue = RecordingQueue()
        runtime.queue = queue  # type: ignore[assignment]
        log(f"loading 3 × {n:,} held leads ({reps:,} reps, 10% stale)")
        started = time.perf_counter()
        swept, _ = setup(runtime, n, 0, reps)
        based, based_pool = setup(runtime, n, n, reps)
        bared, _ = setup(runtime, n, 2 * n, reps)
        with runtime.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        based_chunks, bare_chunks = bounds(runtime, based.id, n, chunks), bounds(runtime, bared.id, n, chunks)
        log(f"loaded in {time.perf_counter() - started:.0f} s")

        now = runtime.clock()
        with runtime.tenant_context(based.id) as ctx:
            cut = rules.cutoff(ctx.tenant.tz, now, DAYS)
        sweep_watch, baseline, bare, between = Stopwatch(), Stopwatch(), Stopwatch(), Stopwatch()
        released = {"baseline": 0, "bare": 0}
        done = 0  # baseline chunks run so far

        def baseline_chunk(k: int) -> None:
            lo, hi = based_chunks[k]
            with runtime.engine.connect() as conn, baseline, conn.begin():
                released["baseline"] += conn.execute(text(BASELINE), {
                    "t": based.id, "cut": cut, "now": now, "pool": based_pool, "lo": lo, "hi": hi}).scalar_one()

        def bare_chunk(k: int) -> None:
            lo, hi = bare_chunks[k]
            with runtime.engine.connect() as conn, bare, conn.begin():
                released["bare"] += conn.execute(text(BARE), {
                    "t": bared.id, "cut": cut, "now": now, "lo": lo, "hi": hi}).rowcount

        def chunk(k: int) -> None:
            # the two baselines take turns going first, so neither always follows the sweep
            for side in ((baseline_chunk, bare_chunk) if k % 2 == 0 else (bare_chunk, baseline_chunk)):
                side(k)

        samples: list[float] = []
        scanned = 0

        def progress(batch_scanned: int) -> None:
            nonlocal scanned, done
            with between:
                samples.append(rss_mb())
                scanned += batch_scanned
                while done < chunks and scanned >= n * (done + 1) // chunks:
                    chunk(done)
                    done += 1

        log(f"sweep, baseline and bare UPDATE alternating in {chunks} chunks of {n // chunks:,} leads")
        with runtime.tenant_context(swept.id) as ctx, sweep_watch:
            report = sweeping.run(ctx, trigger="bench", batch=batch, progress=progress)
        while done < chunks:
            chunk(done)
            done += 1
        sweep_s = sweep_watch.seconds - between.seconds

        swept_counts, based_counts = counts(runtime, swept.id), counts(runtime, based.id)
        expected = n // 10
        if report.released != expected or swept_counts != (expected,) * 4 or based_counts != (expected,) * 4:
            raise AssertionError(f"released {report.released}; sweep {swept_counts}, baseline {based_counts}, "
                                 f"expected {expected} each")
        if released != {"baseline": expected, "bare": expected}:
            raise AssertionError(f"baselines released {released}, expected {expected} each")
        events = queue.events()
        runtime.engine.dispose()
    mark = max(len(samples) // 10, 1)
    growth = max(samples[mark:], default=samples[-1]) - samples[mark - 1] if samples else 0.0
    return result(
        "pool_sweep", sweep_s / baseline.seconds,
        leads=n, reps=reps, batch=batch or 1000, chunks=chunks, released=report.released, batches=report.batches,
        sweep_s=round(sweep_s, 2), baseline_s=round(baseline.seconds, 2), bare_update_s=round(bare.seconds, 2),
        ratio_vs_bare_update=round(sweep_s / bare.seconds, 2),
        longest_txn_ms=round(report.longest_batch * 1000), txn_goal_ms=TXN_GOAL_MS,
        txn_goal_met="yes" if report.longest_batch * 1000 <= TXN_GOAL_MS else "no",
        median_txn_ms=round(statistics.median(report.batch_seconds) * 1000),
        p95_txn_ms=round(sorted(report.batch_seconds)[int(len(report.batch_seconds) * 0.95)] * 1000),
        slowest_batch=report.batch_seconds.index(report.longest_batch) + 1,
        released_per_s=round(report.released / sweep_s), events=events,
        rss_at_10pct_mb=round(samples[mark - 1], 1) if samples else None, rss_growth_mb=round(max(growth, 0.0), 1),
        peak_rss_mb=round(peak_rss_mb(), 1), goal=GOAL,
    )


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__.split("\n", 1)[0], 1_000_000)
    parser.add_argument("--batch", type=int, help="leads released per transaction (default: the setting, 1000)")
    parser.add_argument("--chunks", type=int, default=CHUNKS, help=f"alternating chunks (default {CHUNKS})")
    args = parser.parse_args(argv)
    if args.db != "postgresql":
        parser.error("pool_sweep runs on PostgreSQL")
    record = measure(args.rows, args.batch, chunks=args.chunks)
    return 0 if record["figures"]["longest_txn_ms"] <= TXN_GOAL_MS else 1


if __name__ == "__main__":
    sys.exit(main())
