"""sms_enrol: the not-contacted trigger scan over 1,000,000 leads versus one hand-written ``INSERT … SELECT``.

Two tenants, loaded alike with ``INSERT … SELECT generate_series``: ``--rows``
leads created 30 hours ago, 10% of them called an hour ago by a rep (so not
enrolled), 90% untouched; each tenant has sms_nurture on and a one-step
sequence with trigger ``not_contacted`` after 24 hours.

Scan: :func:`pelago.plugins.sms_nurture.enrolling.scan_not_contacted` on the
first tenant, as the periodic job runs it: windows of 10,000 lead ids, each one
``INSERT … SELECT … ON CONFLICT DO NOTHING`` in its own transaction (bounded
transactions; a second run finds nothing new).

Baseline, on the second tenant: the same enrolment as one ``INSERT … SELECT``
in one unbounded transaction, the fastest the database can do it.

    python -m bench.sms_enrol [--rows 1000000]
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import arguments, bench_database, log, make_runtime, make_tenant, peak_rss_mb, result

GOAL = "<=2"
HOURS = 24

LOAD = """
INSERT INTO core_lead (tenant_id, name, phone, source, stage, is_customer, owner_id, team_id, locked, attributes,
                       created_at, updated_at, assigned_at, stage_changed_at, last_activity_at, version)
SELECT :t, 'lead ' || g, '+86' || (13800000000 + g + :off)::text,
       (ARRAY['douyin','baidu','wechat','website','referral'])[1 + g % 5], 'new', false, NULL, :team, false, '{}',
       now() - interval '30 hours', now() - interval '30 hours', NULL, now() - interval '30 hours',
       CASE WHEN g % 10 = 0 THEN now() - interval '1 hour' ELSE NULL END, 1
FROM generate_series(1, :n) g
"""

BASELINE = """
INSERT INTO sms_nurture_enrolment (tenant_id, lead_id, sequence_id, pass_key, status, source, enrolled_at,
                                   next_position, next_due_at)
SELECT :t, id, :seq, 'created', 'active', 'not_contacted', :now, 1, :now FROM core_lead
WHERE tenant_id = :t AND created_at <= :cut AND created_at > :since AND last_activity_at IS NULL
  AND phone IS NOT NULL AND stage NOT IN ('won', 'lost') AND NOT is_customer
ON CONFLICT DO NOTHING
"""


def setup(runtime: Any, n: int, offset: int) -> tuple[Any, int]:
    from sqlalchemy import text

    from pelago.plugins.sms_nurture import sequences

    tenant = make_tenant(runtime, reps=1, auto_routing=False, plugins=("sms_nurture",))
    with runtime.tenant_context(tenant.id) as ctx:
        tpl = sequences.create_template(ctx, {"name": "t", "body": "{name}您好"})
        seq = sequences.create_sequence(ctx, {"name": "not reached", "trigger": "not_contacted",
                                              "trigger_hours": HOURS,
                                              "steps": [{"template_id": tpl.id, "delay_minutes": 0}]})
        seq_id = seq.id
    with runtime.engine.begin() as conn:
        conn.execute(text(LOAD), {"t": tenant.id, "n": n, "off": offset, "team": tenant.team_id})
    return tenant, seq_id


def measure(n: int) -> dict[str, Any]:
    from datetime import timedelta

    from sqlalchemy import text

    from pelago.plugins.sms_nurture import enrolling

    with bench_database("postgresql") as url:
        runtime = make_runtime(url, plugins=("sms_nurture",))
        log(f"loading 2 × {n:,} leads (90% not contacted)")
        started = time.perf_counter()
        scanned, _ = setup(runtime, n, 0)
        based, based_seq = setup(runtime, n, n)
        with runtime.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        log(f"loaded in {time.perf_counter() - started:.0f} s")
        now = runtime.clock()
        cut = now - timedelta(hours=HOURS)
        log("baseline: one INSERT … SELECT")
        with runtime.engine.connect() as conn:
            started = time.perf_counter()
            with conn.begin():
                baseline_rows = conn.execute(text(BASELINE), {"t": based.id, "seq": based_seq, "now": now, "cut": cut,
                                                              "since": cut - enrolling.LOOKBACK}).rowcount
            baseline_s = time.perf_counter() - started
        log("scan")
        windows: list[float] = []
        last = [time.perf_counter()]

        def tick(_n: int) -> None:
            at = time.perf_counter()
            windows.append(at - last[0])
            last[0] = at

        with runtime.tenant_context(scanned.id) as ctx:
            started = time.perf_counter()
            last[0] = started
            enrolled = enrolling.scan_not_contacted(ctx, progress=tick)
            scan_s = time.perf_counter() - started
        with runtime.tenant_context(scanned.id) as ctx:
            started = time.perf_counter()
            again = enrolling.scan_not_contacted(ctx)
            rescan_s = time.perf_counter() - started
        with runtime.engine.connect() as conn:
            rows = conn.execute(text("SELECT count(*) FROM sms_nurture_enrolment WHERE tenant_id = :t"),
                                {"t": scanned.id}).scalar()
        expected = n - n // 10
        if enrolled != expected or rows != expected or baseline_rows != expected or again != 0:
            raise AssertionError(f"scan enrolled {enrolled} (again {again}), baseline {baseline_rows}, "
                                 f"expected {expected}")
        runtime.engine.dispose()
    return result(
        "sms_enrol", scan_s / baseline_s,
        leads=n, enrolled=enrolled, scan_s=round(scan_s, 2), baseline_s=round(baseline_s, 2),
        rescan_s=round(rescan_s, 2), windows=len(windows), longest_txn_ms=round(max(windows) * 1000),
        enrolled_per_s=round(enrolled / scan_s), peak_rss_mb=round(peak_rss_mb(), 1), goal=GOAL,
    )


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__.split("\n", 1)[0], 1_000_000)
    args = parser.parse_args(argv)
    if args.db != "postgresql":
        parser.error("sms_enrol runs on PostgreSQL")
    measure(args.rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
