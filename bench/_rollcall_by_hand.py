"""The same-writes baseline of bench/scheduling_rollcall.py: a roll-call's writes, by hand, in SQL.

For a batch of (lesson, student, account) marks, all present and charged
one lesson's hours, one PostgreSQL statement of data-modifying CTEs makes
what the roll-call makes:

1. ``rec``: the attendance records, ``INSERT … ON CONFLICT DO NOTHING RETURNING``.
2. ``lines``: each charge against its account in the batch's order (a
   running sum per account): gift hours first (or last: ``gift_first``),
   revenue recognised after the line ``paid × consumed_purchased /
   purchased_hours`` rounded half-up to the cent (``round(numeric, 2)``
   rounds half away from zero, which is half-up for these non-negative
   amounts), ``paid`` itself once everything is consumed; the line's amount
   is the difference from the one before.
3. ``upd``: one conditional UPDATE per account, compare-and-swap on the
   totals it read, and only if the account is open, not expired and holds
   the hours (the guarantee the roll-call keeps).
4. ``led``: one ``consume`` line per charge whose account was updated.

What it leaves out, being the minimal SQL and not a product: finding each
student's account (the benchmark's set-up hands it over), the lesson and
roll-call rules, the records' locks, the low-balance check and its event,
the one-by-one fallback when a count comes out short (here that raises).
This statement was the product's PostgreSQL roll-call for a while
(docs/benchmarks.md says why it was taken out again).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text

STATEMENT = text("""
WITH v AS (
    SELECT * FROM unnest(CAST(:lessons AS bigint[]), CAST(:leads AS bigint[]), CAST(:accounts AS bigint[]),
                         CAST(:hours AS numeric[]))
         WITH ORDINALITY AS v(l, p, acc, h, k)
), rec AS (
    INSERT INTO scheduling_attendance (tenant_id, lesson_id, lead_id, status, charged, generation, marked_at)
    SELECT :t, v.l, v.p, 'present', true, 0, :now FROM v ORDER BY v.k
    ON CONFLICT (tenant_id, lesson_id, lead_id) DO NOTHING
    RETURNING id, lesson_id, lead_id
), run AS (
    SELECT v.k, v.l, v.h, v.acc, rec.id AS rid, a.paid, a.purchased_hours AS ph, a.consumed_gift AS cg,
           a.consumed_purchased AS cp, a.refunded AS rf, a.recognised AS r0, a.gift_hours - a.consumed_gift AS gl,
           a.purchased_hours - a.consumed_purchased AS bl,
           sum(v.h) OVER (PARTITION BY v.acc ORDER BY v.k) AS cum
    FROM v
    JOIN rec ON rec.lesson_id = v.l AND rec.lead_id = v.p
    JOIN scheduling_account AS a ON a.tenant_id = :t AND a.id = v.acc
), split AS (
    SELECT run.*,
           CASE WHEN :gift_first THEN LEAST(cum, gl) ELSE cum - LEAST(cum, bl) END AS gcum,
           CASE WHEN :gift_first THEN LEAST(cum - h, gl) ELSE cum - h - LEAST(cum - h, bl) END AS gprev
    FROM run
), recog AS (
    SELECT split.*, gcum - gprev AS gift, h - (gcum - gprev) AS bought,
           CASE WHEN cp + cum - gcum >= ph THEN paid ELSE round(paid * (cp + cum - gcum) / ph, 2) END AS rec_after
    FROM split
), lines AS (
    SELECT recog.*, rec_after - COALESCE(lag(rec_after) OVER (PARTITION BY acc ORDER BY k), r0) AS amount
    FROM recog
), agg AS (
    SELECT acc, min(cg) AS cg, min(cp) AS cp, min(rf) AS rf, sum(h) AS total, sum(gift) AS gift, sum(bought) AS bought,
           max(rec_after) AS rec_after
    FROM lines GROUP BY acc
), upd AS (
    UPDATE scheduling_account AS a
    SET consumed_gift = agg.cg + agg.gift, consumed_purchased = agg.cp + agg.bought, recognised = agg.rec_after
    FROM agg
    WHERE a.tenant_id = :t AND a.id = agg.acc AND a.status = 'open' AND a.expires_at > :now
      AND a.consumed_gift = agg.cg AND a.consumed_purchased = agg.cp AND a.refunded = agg.rf
      AND agg.total <= a.gift_hours - a.consumed_gift + a.purchased_hours - a.consumed_purchased
    RETURNING a.id
), led AS (
    INSERT INTO scheduling_entry (tenant_id, kind, at, account_id, purchased_hours, gift_hours, amount,
                                  attendance_id, generation, lesson_id, note)
    SELECT :t, 'consume', :now, lines.acc, -lines.bought, -lines.gift, lines.amount, lines.rid, 0, lines.l, 'present'
    FROM lines JOIN upd ON upd.id = lines.acc ORDER BY lines.k
    RETURNING 1
)
SELECT (SELECT count(*) FROM rec) AS records, (SELECT count(*) FROM upd) AS accounts,
       (SELECT count(*) FROM led) AS lines
""")


def roll_call(conn: Any, tenant_id: int, marks: Sequence[tuple[int, int, int]], hours: Decimal, now: datetime,
              gift_first: bool = True) -> None:
    """Write one batch of ``(lesson, student, account)`` marks, all present; raise if any of it did not stand."""
    row = conn.execute(STATEMENT, {
        "t": tenant_id, "now": now, "gift_first": gift_first,
        "lessons": [m[0] for m in marks], "leads": [m[1] for m in marks], "accounts": [m[2] for m in marks],
        "hours": [hours] * len(marks),
    }).one()
    accounts = len({m[2] for m in marks})
    if (row.records, row.accounts, row.lines) != (len(marks), accounts, len(marks)):
        raise AssertionError(f"by hand: {row.records} records, {row.accounts} accounts, {row.lines} lines "
                             f"for {len(marks)} marks on {accounts} accounts")
