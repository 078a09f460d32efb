"""The channel funnel: what each channel's (campaign's, UTM's) leads became, against what was spent.

A cohort report. The leads counted are those created in the date range (the
tenant's calendar days), grouped by the fields of the touch that created
them; what became of them is counted whenever it happened:

* ``leads``: leads created; ``duplicates``: submissions in the range merged
  into an existing lead, grouped by their own touch's fields;
* ``contacted``: leads with a follow-up a user logged (automatic activities
  do not count); ``median_first_contact_seconds``: the median (the lower of
  the two middle values for an even count) of the time from creation to the
  first such follow-up;
* ``qualified``: leads whose stage history reached ``qualified`` or ``won``;
* ``won``: leads with a won deal; ``revenue``: their deals' amounts net of
  refunds;
* ``conversions_reported``: conversions that reached their platform
  (``sent``, ``accepted``, ``rejected``), ``conversions_accepted`` those it
  accepted;
* ``spend`` (when grouping by ``channel`` and/or ``utm_campaign`` only): the
  uploaded spend of the range's days, matched on channel and campaign; with
  ``cost_per_lead``, ``cost_per_deal`` and ``return_on_spend`` (revenue /
  spend), all decimal strings.

The counts come from one grouped statement over the range's touches (a
lead's creating touch counts the lead, a merged one a duplicate) with the
per-lead facts joined in, and spend from one more; on PostgreSQL the medians
and the whole range's median come from the same statement (``GROUPING
SETS``), on SQLite, which has no ordered-set aggregate, from one more query.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import Select, case, func, literal_column, select, text, tuple_, type_coerce

from pelago.plugin import Activity, Deal, HookContext, Money, StageChange, Touch, dialect_name

from .models import Conversion, Spend

SPEND_DIMENSIONS = {"channel", "utm_campaign"}
ZERO = Decimal("0.00")
COLUMNS = ("leads", "duplicates", "contacted", "qualified", "won", "revenue", "median_first_contact_seconds",
           "conversions_reported", "conversions_accepted", "spend", "cost_per_lead", "cost_per_deal",
           "return_on_spend")


def bounds(ctx: HookContext, start: date, end: date) -> tuple[datetime, datetime]:
    """``[start 00:00, day after end 00:00)`` in the tenant's timezone, as aware datetimes."""
    tz = ctx.tenant.tz
    return datetime.combine(start, time(), tz), datetime.combine(end + timedelta(days=1), time(), tz)


def cohort_statement(tenant_id: int, group_by: Sequence[str], lo: datetime, hi: datetime,
                     with_median: bool) -> Select[Any]:
    """The grouped statement over the leads created in ``[lo, hi)`` (see the module's docstring)."""
    dims = [getattr(Touch, d).label(d) for d in group_by]
    first_contact = (
        select(Activity.lead_id, func.min(Activity.occurred_at).label("at"))
        .where(Activity.tenant_id == tenant_id, Activity.user_id.is_not(None))
        .group_by(Activity.lead_id).subquery("fc")
    )
    deals = (
        select(Deal.lead_id, type_coerce(func.sum(Deal.amount - Deal.refunded), Money()).label("net"))
        .where(Deal.tenant_id == tenant_id).group_by(Deal.lead_id).subquery("d")
    )
    conv = (
        select(
            Conversion.lead_id,
            func.sum(case((Conversion.status.in_(("sent", "accepted", "rejected")), 1), else_=0)).label("reported"),
            func.sum(case((Conversion.status == "accepted", 1), else_=0)).label("accepted"),
        ).where(Conversion.tenant_id == tenant_id).group_by(Conversion.lead_id).subquery("cv")
    )
    qualified = (
        select(StageChange.lead_id).where(StageChange.tenant_id == tenant_id, StageChange.new.in_(("qualified", "won")))
        .distinct().subquery("q")
    )
    # One scan of the range's touches: a lead's creating touch counts it, a merged one is a duplicate.
    created = Touch.merged.is_(False)

    def of_leads(value: Any) -> Any:
        return case((created, value))

    columns: list[Any] = [
        *dims,
        func.sum(case((created, 1), else_=0)).label("leads"),
        func.sum(case((created, 0), else_=1)).label("duplicates"),
        func.count(of_leads(first_contact.c.at)).label("contacted"),
        func.count(of_leads(qualified.c.lead_id)).label("qualified"),
        func.count(of_leads(deals.c.net)).label("won"),
        type_coerce(func.coalesce(func.sum(of_leads(deals.c.net)), 0), Money()).label("revenue"),
        func.coalesce(func.sum(of_leads(conv.c.reported)), 0).label("reported"),
        func.coalesce(func.sum(of_leads(conv.c.accepted)), 0).label("accepted"),
    ]
    keys: list[Any] = [getattr(Touch, d) for d in group_by]
    grouping: Any = keys
    if with_median:  # PostgreSQL: the medians, and the whole range's row (GROUPING SETS) in the same pass
        columns.append(func.percentile_disc(literal_column("0.5"))
                       .within_group(of_leads(first_contact.c.at - Touch.received_at)).label("median"))
        columns.append(func.grouping(*keys).label("is_total"))
        grouping = [func.grouping_sets(tuple_(*keys), text("()"))]
    return (
        select(*columns)
        .select_from(Touch)
        .outerjoin(first_contact, first_contact.c.lead_id == Touch.lead_id)
        .outerjoin(qualified, qualified.c.lead_id == Touch.lead_id)
        .outerjoin(deals, deals.c.lead_id == Touch.lead_id)
        .outerjoin(conv, conv.c.lead_id == Touch.lead_id)
        .where(Touch.tenant_id == tenant_id, Touch.received_at >= lo, Touch.received_at < hi)
        .group_by(*grouping)
    )


def _median(values: list[timedelta]) -> timedelta | None:
    if not values:
        return None
    values.sort()
    return values[(len(values) - 1) // 2]


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(ZERO, rounding=ROUND_HALF_UP))


def _ratio(num: Decimal, den: Decimal | int) -> str | None:
    return None if not den else _money(Decimal(num) / Decimal(den))


def report(ctx: HookContext, start: date, end: date, group_by: Sequence[str]) -> dict[str, Any]:
    """The funnel of the leads created from ``start`` to ``end`` (days included), grouped by ``group_by``."""
    session = ctx.session
    tid = ctx.tenant.id
    lo, hi = bounds(ctx, start, end)
    pg = dialect_name(session) == "postgresql"
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}

    def row(key: tuple[Any, ...]) -> dict[str, Any]:
        if key not in groups:
            groups[key] = {"group": dict(zip(group_by, key, strict=True)), "leads": 0, "duplicates": 0,
                           "contacted": 0, "qualified": 0, "won": 0, "revenue": ZERO, "median": None,
                           "reported": 0, "accepted": 0, "spend": None}
        return groups[key]

    n = len(group_by)
    total_median: timedelta | None = None
    for r in session.execute(cohort_statement(tid, group_by, lo, hi, pg)):
        if pg and r.is_total:
            total_median = r.median
            continue
        g = row(tuple(r[:n]))
        g.update(leads=int(r.leads), duplicates=int(r.duplicates), contacted=r.contacted, qualified=int(r.qualified or 0), won=r.won,
                 revenue=r.revenue if r.revenue is not None else ZERO, reported=int(r.reported),
                 accepted=int(r.accepted), median=r.median if pg else None)
    if not pg:
        fc = (select(Activity.lead_id, func.min(Activity.occurred_at).label("at"))
              .where(Activity.tenant_id == tid, Activity.user_id.is_not(None)).group_by(Activity.lead_id)
              .subquery("fc"))
        waits: dict[tuple[Any, ...], list[timedelta]] = {}
        every: list[timedelta] = []
        for r in session.execute(
            select(*[getattr(Touch, d) for d in group_by], Touch.received_at, fc.c.at)
            .join(fc, fc.c.lead_id == Touch.lead_id)
            .where(Touch.tenant_id == tid, Touch.merged.is_(False), Touch.received_at >= lo, Touch.received_at < hi)
        ):
            first = r.at if isinstance(r.at, datetime) else datetime.fromisoformat(r.at)
            waits.setdefault(tuple(r[:n]), []).append(first - r.received_at)
            every.append(first - r.received_at)
        total_median = _median(every)
        for key, values in waits.items():
            row(key)["median"] = _median(values)
    with_spend = set(group_by) <= SPEND_DIMENSIONS
    if with_spend:
        spend_dims = [Spend.channel if d == "channel" else Spend.campaign for d in group_by]
        spent: dict[tuple[Any, ...], Decimal] = {}
        for r in session.execute(
            select(*spend_dims, type_coerce(func.sum(Spend.amount), Money()))
            .where(Spend.tenant_id == tid, Spend.day >= start, Spend.day <= end).group_by(*spend_dims)
        ):
            # a lead without a campaign matches spend uploaded without one
            key = tuple(None if (d == "utm_campaign" and v == "") else v for d, v in zip(group_by, r[:n], strict=True))
            spent[key] = spent.get(key, ZERO) + r[n]
        for key, amount in spent.items():
            row(key)["spend"] = amount
        for g in groups.values():
            if g["spend"] is None:
                g["spend"] = ZERO
    rows = [_out(g, with_spend) for _, g in sorted(groups.items(), key=lambda kv: tuple(
        ("", "") if v is None else ("1", str(v)) for v in kv[0]))]
    total: dict[str, Any] = {"group": {d: None for d in group_by}, "median": None}
    for k in ("leads", "duplicates", "contacted", "qualified", "won", "reported", "accepted"):
        total[k] = sum(g[k] for g in groups.values())
    total["revenue"] = sum((g["revenue"] for g in groups.values()), ZERO)
    total["spend"] = sum((g["spend"] for g in groups.values()), ZERO) if with_spend else None
    total["median"] = total_median
    return {"start": start, "end": end, "timezone": ctx.tenant.timezone, "currency": ctx.tenant.currency,
            "group_by": list(group_by), "rows": rows, "total": _out(total, with_spend)}


def _out(g: dict[str, Any], with_spend: bool) -> dict[str, Any]:
    median = g["median"]
    spend = g["spend"] if with_spend else None
    return {
        "group": g["group"], "leads": g["leads"], "duplicates": g["duplicates"], "contacted": g["contacted"],
        "qualified": g["qualified"], "won": g["won"], "revenue": _money(g["revenue"]),
        "median_first_contact_seconds": None if median is None else median // timedelta(seconds=1),
        "conversions_reported": g["reported"], "conversions_accepted": g["accepted"],
        "spend": _money(spend),
        "cost_per_lead": _ratio(spend, g["leads"]) if spend is not None else None,
        "cost_per_deal": _ratio(spend, g["won"]) if spend is not None else None,
        "return_on_spend": _ratio(g["revenue"], spend) if spend is not None else None,
    }


def to_csv(doc: dict[str, Any]) -> Iterator[str]:
    """The report as CSV lines: the group's fields, then the counts; a last ``total`` line."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([*doc["group_by"], *COLUMNS])
    for r in [*doc["rows"], {**doc["total"], "group": {d: "total" if i == 0 else "" for i, d in
                                                      enumerate(doc["group_by"])}}]:
        w.writerow([*(r["group"].get(d) or "" for d in doc["group_by"]),
                    *("" if r[c] is None else r[c] for c in COLUMNS)])
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()

