"""conversions_funnel: the funnel report over 1,000,000 leads and their touches versus one hand-written GROUP BY.

One tenant, loaded with ``INSERT … SELECT generate_series``: ``--rows`` leads
created over the last 30 days from five channels (a campaign on half), each
with its creating touch, a merged duplicate touch for one in ten, the first
stage row, a rep's follow-up for 60% (1 to 600 minutes later), a
``qualified`` stage row for 20%, a won deal for 8% (a quarter of them partly
refunded), and a conversion for 5%.

Report: :func:`pelago.plugins.conversions.funnel.report` for the whole month,
grouped by channel, as ``GET /api/v1/conversions/funnel`` runs it (one grouped
statement with the medians and the total in ``GROUPING SETS``, then
duplicates and spend). Baseline: one hand-written ``GROUP BY channel`` over
the same touches, computing the same figures (leads, duplicates, contacted,
qualified, won, revenue, median time to first contact, conversions) the
simplest way: ``FILTER`` clauses and ``LEFT JOIN``s to per-lead aggregates.
The two run alternately, three times each; the medians are compared, and
the report's figures are checked against the baseline's.

    python -m bench.conversions_funnel [--rows 1000000]
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

from bench.common import arguments, bench_database, log, make_runtime, make_tenant, peak_rss_mb, result

GOAL = "<=1.5"
RUNS = 3

LOAD = [
    # leads, created over the last 30 days (minute by minute, cycling)
    """
    INSERT INTO core_lead (tenant_id, name, phone, source, stage, is_customer, owner_id, team_id, locked, attributes,
                           created_at, updated_at, assigned_at, stage_changed_at, last_activity_at, version)
    SELECT :t, 'lead ' || g, '+86' || (13800000000 + g)::text,
           (ARRAY['douyin','kuaishou','baidu','wechat','site'])[1 + g % 5], 'new', false, NULL, :team, false, '{}',
           :now - interval '1 minute' * (g % 43000), :now, NULL, :now, NULL, 1
    FROM generate_series(1, :n) g
    """,
    # each lead's creating touch, with its channel and (for half) a campaign
    """
    INSERT INTO core_touch (tenant_id, lead_id, channel, idempotency_key, source, utm_source, utm_medium,
                            utm_campaign, utm_term, utm_content, click_id, merged, raw, received_at)
    SELECT :t, id, source, NULL, source, source, 'cpc',
           CASE WHEN id % 2 = 0 THEN 'campaign-' || (id % 7) END, NULL, NULL, 'click-' || id, false, '{}', created_at
    FROM core_lead WHERE tenant_id = :t
    """,
    # a merged duplicate for one lead in ten, an hour later, from another channel
    """
    INSERT INTO core_touch (tenant_id, lead_id, channel, idempotency_key, source, utm_source, utm_medium,
                            utm_campaign, utm_term, utm_content, click_id, merged, raw, received_at)
    SELECT :t, id, (ARRAY['douyin','kuaishou','baidu','wechat','site'])[1 + (id + 1) % 5], NULL, NULL, NULL, NULL,
           NULL, NULL, NULL, NULL, true, '{}', created_at + interval '1 hour'
    FROM core_lead WHERE tenant_id = :t AND id % 10 = 3
    """,
    """
    INSERT INTO core_stage_change (tenant_id, lead_id, old, new, lost_reason, actor_id, at)
    SELECT :t, id, NULL, 'new', NULL, NULL, created_at FROM core_lead WHERE tenant_id = :t
    """,
    """
    INSERT INTO core_activity (tenant_id, lead_id, user_id, kind, note, occurred_at, created_at)
    SELECT :t, id, :rep, 'call', '', created_at + interval '1 minute' * (1 + id % 600),
           created_at + interval '1 minute' * (1 + id % 600)
    FROM core_lead WHERE tenant_id = :t AND id % 10 < 6
    """,
    # an automatic activity on some leads: it must not count as a contact
    """
    INSERT INTO core_activity (tenant_id, lead_id, user_id, kind, note, occurred_at, created_at)
    SELECT :t, id, NULL, 'sms', '', created_at, created_at FROM core_lead WHERE tenant_id = :t AND id % 10 = 7
    """,
    """
    INSERT INTO core_stage_change (tenant_id, lead_id, old, new, lost_reason, actor_id, at)
    SELECT :t, id, 'new', 'qualified', NULL, NULL, created_at + interval '1 day'
    FROM core_lead WHERE tenant_id = :t AND id % 5 = 0
    """,
    """
    INSERT INTO core_deal (tenant_id, lead_id, owner_id, team_id, amount, refunded, currency, product, kind, won_at,
                           created_by)
    SELECT :t, id, NULL, :team, 1000 + (id % 5000), CASE WHEN id % 4 = 0 THEN 99.50 ELSE 0 END, 'CNY', '',
           'first_purchase', created_at + interval '2 days', NULL
    FROM core_lead WHERE tenant_id = :t AND id % 25 IN (0, 5)
    """,
    """
    INSERT INTO conversions_conversion (tenant_id, rule_id, lead_id, touch_id, deal_id, channel, moment, event_type,
                                        click_id, clicked_at, occurred_at, value, currency, status, attempts,
                                        next_attempt_at, lease_token, lease_until, dispatched_at, message,
                                        answer_status, sent_at, created_at, updated_at)
    SELECT :t, :rule, id, NULL, NULL, source, 'valid_lead', 'form', 'click-' || id, created_at, created_at, NULL, NULL,
           CASE WHEN id % 3 = 0 THEN 'rejected' ELSE 'accepted' END, 1, created_at, NULL, NULL, created_at, '',
           200, created_at, created_at, created_at
    FROM core_lead WHERE tenant_id = :t AND id % 20 = 1
    """,
]

BASELINE = """
SELECT t.channel,
       count(*) FILTER (WHERE NOT t.merged) AS leads,
       count(*) FILTER (WHERE t.merged) AS duplicates,
       count(fc.at) FILTER (WHERE NOT t.merged) AS contacted,
       count(q.lead_id) FILTER (WHERE NOT t.merged) AS qualified,
       count(d.net) FILTER (WHERE NOT t.merged) AS won,
       coalesce(sum(d.net) FILTER (WHERE NOT t.merged), 0) AS revenue,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY fc.at - t.received_at) FILTER (WHERE NOT t.merged) AS median,
       coalesce(sum(cv.reported) FILTER (WHERE NOT t.merged), 0) AS reported,
       coalesce(sum(cv.accepted) FILTER (WHERE NOT t.merged), 0) AS accepted
FROM core_touch t
LEFT JOIN (SELECT lead_id, min(occurred_at) AS at FROM core_activity
           WHERE tenant_id = :t AND user_id IS NOT NULL GROUP BY lead_id) fc ON fc.lead_id = t.lead_id
LEFT JOIN (SELECT DISTINCT lead_id FROM core_stage_change
           WHERE tenant_id = :t AND new IN ('qualified', 'won')) q ON q.lead_id = t.lead_id
LEFT JOIN (SELECT lead_id, sum(amount - refunded) AS net FROM core_deal WHERE tenant_id = :t GROUP BY lead_id) d
       ON d.lead_id = t.lead_id
LEFT JOIN (SELECT lead_id, count(*) FILTER (WHERE status IN ('sent', 'accepted', 'rejected')) AS reported,
                  count(*) FILTER (WHERE status = 'accepted') AS accepted
           FROM conversions_conversion WHERE tenant_id = :t GROUP BY lead_id) cv ON cv.lead_id = t.lead_id
WHERE t.tenant_id = :t AND t.received_at >= :lo AND t.received_at < :hi
GROUP BY t.channel
"""


def setup(runtime: Any, n: int) -> tuple[Any, int]:
    from sqlalchemy import text

    from pelago.plugins.conversions.models import Account, Rule

    tenant = make_tenant(runtime, reps=2, auto_routing=False, plugins=("conversions",))
    with runtime.tenant_context(tenant.id) as ctx:
        account = Account(name="bench", adapter="generic", url="https://hooks.example.com/c", config={}, secret="",
                          in_doubt="hold", created_at=ctx.now())
        ctx.session.add(account)
        ctx.session.flush()
        rule = Rule(name="bench", account_id=account.id, match="channel", channel="douyin", moment="valid_lead",
                    event_type="form", window_days=30, click_key="click_id", touch="last", send_value=True,
                    active=False, created_at=ctx.now())
        ctx.session.add(rule)
        ctx.session.flush()
        rule_id = rule.id
    params = {"t": tenant.id, "n": n, "team": tenant.team_id, "rep": tenant.rep_ids[0], "rule": rule_id,
              "now": runtime.clock()}
    with runtime.engine.begin() as conn:
        for statement in LOAD:
            conn.execute(text(statement), params)
    with runtime.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    return tenant, rule_id


def measure(n: int) -> dict[str, Any]:
    from sqlalchemy import text

    from pelago.plugins.conversions import funnel

    with bench_database("postgresql") as url:
        runtime = make_runtime(url, plugins=("conversions",))
        log(f"loading {n:,} leads with their touches, contacts, stages, deals and conversions")
        started = time.perf_counter()
        tenant, _ = setup(runtime, n)
        log(f"loaded in {time.perf_counter() - started:.0f} s")
        with runtime.tenant_context(tenant.id) as ctx:
            end = (ctx.now().astimezone(ctx.tenant.tz)).date()
            start = end - timedelta(days=31)
            lo, hi = funnel.bounds(ctx, start, end)
        report_s: list[float] = []
        baseline_s: list[float] = []
        doc: dict[str, Any] = {}
        rows: list[Any] = []
        for i in range(RUNS):
            log(f"run {i + 1} of {RUNS}: report, then baseline")
            with runtime.tenant_context(tenant.id) as ctx:
                t0 = time.perf_counter()
                doc = funnel.report(ctx, start, end, ["channel"])
                report_s.append(time.perf_counter() - t0)
            with runtime.engine.connect() as conn:
                t0 = time.perf_counter()
                rows = conn.execute(text(BASELINE), {"t": tenant.id, "lo": lo, "hi": hi}).all()
                baseline_s.append(time.perf_counter() - t0)
        check(doc, rows, n)
        runtime.engine.dispose()
    report_m, baseline_m = statistics.median(report_s), statistics.median(baseline_s)
    return result(
        "conversions_funnel", report_m / baseline_m,
        leads=n, groups=len(doc["rows"]), report_s=round(report_m, 2), baseline_s=round(baseline_m, 2),
        report_runs_s=[round(x, 2) for x in report_s], baseline_runs_s=[round(x, 2) for x in baseline_s],
        peak_rss_mb=round(peak_rss_mb(), 1), goal=GOAL,
    )


def check(doc: dict[str, Any], rows: list[Any], n: int) -> None:
    """The report's figures are the baseline's, and the leads add up."""
    got = {r["group"]["channel"]: r for r in doc["rows"]}
    if sum(r["leads"] for r in got.values()) != n:
        raise AssertionError(f"the report counts {sum(r['leads'] for r in got.values())} leads, loaded {n}")
    for b in rows:
        r = got[b.channel]
        mine = (r["leads"], r["duplicates"], r["contacted"], r["qualified"], r["won"], Decimal(r["revenue"]),
                r["median_first_contact_seconds"], r["conversions_reported"], r["conversions_accepted"])
        theirs = (b.leads, b.duplicates, b.contacted, b.qualified, b.won, Decimal(b.revenue),
                  None if b.median is None else b.median // timedelta(seconds=1), b.reported, b.accepted)
        if mine != theirs:
            raise AssertionError(f"{b.channel}: report {mine} != baseline {theirs}")


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__.split("\n", 1)[0], 1_000_000)
    args = parser.parse_args(argv)
    if args.db != "postgresql":
        parser.error("conversions_funnel runs on PostgreSQL")
    measure(args.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
