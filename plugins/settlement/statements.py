"""Statements: a branch's period and a rep's period, as JSON and as CSV (UTF-8 with a BOM, for Excel).

A locked or paid period's statement is the totals its lock stored (they
cannot change); an open period's is computed now, the same way
(:func:`..closing.totals`). A rep's statement covers the periods of that key
in every branch she has entries in.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from sqlalchemy import select

from pelago.plugin import HookContext

from .closing import _blank, _dump, totals
from .models import Entry, Period

COLUMNS = ("user_id", "credited", "won", "refunded", "overridden", "commission", "clawed_back", "true_up",
           "adjustments", "entries")
ENTRY_COLUMNS = ("id", "period", "branch_id", "user_id", "deal_id", "kind", "origin", "origin_id", "amount", "base",
                 "plan_id", "original_id", "adjusts_period_id", "occurred_at")


def period_totals(ctx: HookContext, period: Period) -> dict[str, Any]:
    return period.totals if period.state != "open" and period.totals else totals(ctx, period)


def branch_statement(ctx: HookContext, period: Period) -> dict[str, Any]:
    sums = period_totals(ctx, period)
    users = [{"user_id": int(u) or None, **v} for u, v in sums["users"].items()]
    return {"period": period, "branch": sums["branch"], "users": users}


def entry_out(e: Entry, keys: dict[int, str]) -> dict[str, Any]:
    return {
        "id": e.id, "key": e.key, "period_id": e.period_id, "period": keys.get(e.period_id, ""),
        "branch_id": e.branch_id, "user_id": e.user_id, "deal_id": e.deal_id, "kind": e.kind, "origin": e.origin,
        "origin_id": e.origin_id, "amount": e.amount, "base": e.base, "plan_id": e.plan_id, "line_id": e.line_id,
        "original_id": e.original_id, "adjusts_period_id": e.adjusts_period_id, "occurred_at": e.occurred_at,
        "created_at": e.created_at,
    }


def user_statement(ctx: HookContext, user_id: int, key: str, branch_ids: set[int] | None) -> dict[str, Any]:
    """Her entries in the periods ``key`` of every branch (of ``branch_ids`` when given), and their sums."""
    stmt = select(Period).where(Period.key == key)
    if branch_ids is not None:
        stmt = stmt.where(Period.branch_id.in_(sorted(branch_ids)))
    found = ctx.session.scalars(stmt.order_by(Period.branch_id)).all()
    keys = {p.id: p.key for p in found}
    entries = ctx.session.scalars(
        select(Entry).where(Entry.user_id == user_id, Entry.period_id.in_(list(keys))).order_by(Entry.id)
    ).all() if keys else []
    from .closing import _add

    bucket = _blank()
    for e in entries:
        _add(bucket, e.kind, e.origin, e.adjusts_period_id is not None, 1, e.amount)
    return {"user_id": user_id, "period": key, "periods": found, "totals": _dump(bucket),
            "entries": [entry_out(e, keys) for e in entries]}


def csv_text(header: list[list[str]], columns: tuple[str, ...], rows: list[dict[str, Any]]) -> str:
    """The statement as CSV text (the route sends it with a BOM, for spreadsheet programs)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for line in header:
        writer.writerow(line)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else _cell(row.get(c)) for c in columns])
    return out.getvalue()


NUMBER = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")


def _cell(value: Any) -> str:
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    # a cell starting with = + - @ is a formula to a spreadsheet; an amount's minus sign is not one
    if text[:1] in ("=", "+", "@") or (text[:1] == "-" and not NUMBER.match(text)):
        return "'" + text
    return text
