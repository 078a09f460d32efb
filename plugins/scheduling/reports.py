"""Monthly reports: hours consumed and revenue recognised, refunded and expired, in the tenant's timezone."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from pelago.plugin import HookContext, InvalidInput

from .models import Entry

ZERO = Decimal("0.00")


def _month_start(month: str, tz: Any) -> datetime:
    y, m = (int(x) for x in month.split("-"))
    return datetime(y, m, 1, tzinfo=tz)


def _next(month: str) -> str:
    y, m = (int(x) for x in month.split("-"))
    return f"{y + m // 12}-{m % 12 + 1:02d}"


def months(ctx: HookContext, first: str, last: str) -> list[dict[str, Any]]:
    """One row per month from ``first`` to ``last`` (``YYYY-MM``), at most 36."""
    if last < first:
        raise InvalidInput("empty range", {"month_to": ["must not be before month_from"]}, location="query")
    names = [first]
    while names[-1] < last:
        names.append(_next(names[-1]))
        if len(names) > 36:
            raise InvalidInput("too long", {"month_to": ["at most 36 months"]}, location="query")
    tz = ctx.tenant.tz
    lo, hi = _month_start(first, tz), _month_start(_next(last), tz)
    totals: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    for kind, ph, gh, amount, at in ctx.session.execute(
        select(Entry.kind, Entry.purchased_hours, Entry.gift_hours, Entry.amount, Entry.at)
        .where(Entry.at >= lo, Entry.at < hi, Entry.kind.in_(("consume", "reversal", "refund", "expire")))
    ):
        month = at.astimezone(tz).strftime("%Y-%m")
        t = totals[month]
        if kind in ("consume", "reversal"):
            t["hours"] -= ph
            t["gift_hours"] -= gh
            t["recognised"] += amount
        elif kind == "refund":
            t["refunded"] += amount
        else:
            t["expired"] += amount
            t["recognised"] += amount
    return [{"month": m, **{k: str(totals[m][k]) for k in ("hours", "gift_hours", "recognised", "refunded", "expired")}}
            for m in names]
