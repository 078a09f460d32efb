"""The roll-call's new records and their charges in one PostgreSQL statement.

A batch of roll-call marks (50 lessons × 20 students, say) used to take
three statements and the ledger arithmetic in Python: the records' INSERT,
a read of the accounts, one conditional UPDATE of them and the INSERT of the
ledger lines. Here the same work is one statement of data-modifying CTEs:

1. ``rec``: the records, ``INSERT … ON CONFLICT DO NOTHING RETURNING``.
2. ``lines``: each charge against the account as the statement's snapshot
   sees it, in the batch's order (a running sum per account, so an account
   charged twice in one batch is charged one hour after the other): gift
   hours first (or last, the ``gift_first`` setting), revenue recognised
   after the line ``paid × consumed_purchased / purchased_hours`` rounded
   half-up to the cent (``paid`` itself once everything is consumed, so the
   rounding residue lands on the last hour), the line's amount the
   difference from the one before — the rules of :func:`.ledger.recognised_for`.
3. ``upd``: one conditional UPDATE per account, compare-and-swap on the
   totals it read (as :func:`.ledger.consume_many`), and only if the
   account is open, not expired and has the hours: a balance never goes
   negative, whatever runs beside it.
4. ``led``: one ``consume`` line per charge whose account was updated
   (generation 0: the records are new), unique per record in the database.

The caller compares the counts: a record someone else made meanwhile, or an
account not updated (changed meanwhile, closed, expired or short of hours)
means nothing of the batch may stand; it rolls its savepoint back and takes
the marks one by one (:func:`.attendance.settle`), which waits for the other
writer and gives the precise 409.

Rounding: ``round(numeric, 2)`` rounds half away from zero, which for these
non-negative amounts is ``ROUND_HALF_UP``; the quotient is computed to at
least 16 significant digits, and a quotient of amounts and hours to the cent
is either exactly a half-cent or further from one than that, so the result is
the exact half-up rounding, as ``Decimal`` gives in Python (a test compares them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import bindparam, text

from pelago.plugin import HookContext

from . import arrays
from .models import Attendance

STATEMENT = text("""
WITH v AS (
    SELECT * FROM unnest(CAST(:lessons AS bigint[]), CAST(:leads AS bigint[]), CAST(:statuses AS text[]),
                         CAST(:charged AS boolean[]), CAST(:accounts AS bigint[]), CAST(:hours AS numeric[]))
         WITH ORDINALITY AS v(l, p, s, c, acc, h, k)
), rec AS (
    INSERT INTO scheduling_attendance (tenant_id, lesson_id, lead_id, status, charged, generation,
                                       leave_asked_at, marked_by, marked_at)
    SELECT :t, v.l, v.p, v.s, v.c, 0, NULL, :by, :now FROM v ORDER BY v.k
    ON CONFLICT (tenant_id, lesson_id, lead_id) DO NOTHING
    RETURNING id, lesson_id, lead_id
), run AS (
    SELECT v.k, v.l, v.s, v.h, v.acc, rec.id AS rid, a.lead_id AS owner, a.expires_at, a.paid,
           a.purchased_hours AS ph, a.consumed_gift AS cg, a.consumed_purchased AS cp, a.refunded AS rf,
           a.recognised AS r0, a.gift_hours - a.consumed_gift AS gl, a.purchased_hours - a.consumed_purchased AS bl,
           sum(v.h) OVER (PARTITION BY v.acc ORDER BY v.k) AS cum
    FROM v
    JOIN rec ON rec.lesson_id = v.l AND rec.lead_id = v.p
    JOIN scheduling_account AS a ON a.tenant_id = :t AND a.id = v.acc
    WHERE v.c
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
    SELECT recog.*, rec_after - COALESCE(lag(rec_after) OVER (PARTITION BY acc ORDER BY k), r0) AS amount,
           gl + bl - cum + h AS before, gl + bl - cum AS after
    FROM recog
), agg AS (
    SELECT acc, min(cg) AS cg, min(cp) AS cp, min(rf) AS rf, sum(h) AS total, sum(gift) AS gift,
           sum(bought) AS bought, max(rec_after) AS rec_after
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
    SELECT :t, 'consume', :now, lines.acc, -lines.bought, -lines.gift, lines.amount, lines.rid, 0, lines.l,
           COALESCE(lines.s, '')
    FROM lines JOIN upd ON upd.id = lines.acc ORDER BY lines.k
    RETURNING 1
)
SELECT rec.id, rec.lesson_id, rec.lead_id, lines.acc, lines.before, lines.after, lines.owner, lines.expires_at,
       (SELECT count(*) FROM upd) AS accounts, (SELECT count(*) FROM led) AS written
FROM rec LEFT JOIN lines ON lines.rid = rec.id
""").bindparams(bindparam("now", type_=Attendance.__table__.c.marked_at.type))


@dataclass(frozen=True)
class Made:
    """A record the statement made, and its charge (``account_id`` ``None``: not charged)."""

    id: int
    account_id: int | None
    before: Decimal | None
    after: Decimal | None
    owner: int | None
    expires_at: datetime | None


@dataclass(frozen=True)
class Mark:
    """One new record to make: its status, whether it is charged, and from which account."""

    lesson_id: int
    lead_id: int
    status: str | None
    charged: bool
    account_id: int | None
    hours: Decimal


def record_and_charge(ctx: HookContext, marks: Sequence[Mark], by: int | None, now: datetime,
                      gift_first: bool) -> dict[tuple[int, int], Made] | None:
    """Make the records and charge them, one statement; ``None`` if anything of it may not stand.

    ``None`` (a record existed or an account was not updated) leaves rows the
    caller's savepoint must roll back.
    """
    rows = ctx.session.execute(STATEMENT, {
        "t": ctx.tenant.id, "by": by, "now": now, "gift_first": gift_first,
        "lessons": arrays.plain(m.lesson_id for m in marks), "leads": arrays.plain(m.lead_id for m in marks),
        "statuses": arrays.texts(m.status for m in marks), "charged": arrays.plain(m.charged for m in marks),
        "accounts": arrays.plain(m.account_id for m in marks), "hours": arrays.plain(m.hours for m in marks),
    }).all()
    charges = sum(1 for m in marks if m.charged)
    accounts = len({m.account_id for m in marks if m.charged})
    if len(rows) != len(marks) or (charges and (rows[0].accounts != accounts or rows[0].written != charges)):
        return None
    return {(r.lesson_id, r.lead_id): Made(r.id, r.acc, r.before, r.after, r.owner, r.expires_at) for r in rows}
