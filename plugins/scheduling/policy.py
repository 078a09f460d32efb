"""Tenant policy for K12 tutoring (off by default): refused sales and lessons name the rule.

The rules are the regulator's, not the code's: prepayment at most
``max_prepaid_hours`` hours or ``max_prepaid_months`` months per sale; online
lessons at most ``online_max_minutes`` long with ``online_break_minutes``
between them; every lesson over by ``latest_end`` (the campus's time); no
subject tutoring on statutory holidays. A refusal is a 422 whose
``errors.policy`` names the rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from pelago.plugin import HookContext, InvalidInput

from . import booking
from .recurrence import day_kind

PLUGIN = "scheduling"


@dataclass(frozen=True)
class _Span:
    starts_at: datetime
    ends_at: datetime
    teacher_id: int


def _policy(ctx: HookContext) -> dict[str, Any] | None:
    p = ctx.settings(PLUGIN)["policy"]
    return p if p["enabled"] else None


def _refuse(rule: str, message: str) -> InvalidInput:
    return InvalidInput(f"refused by policy {rule}: {message}", {"policy": [f"{rule}: {message}"]})


def check_sale(ctx: HookContext, hours: Decimal, gift_hours: Decimal, validity_days: int) -> None:
    p = _policy(ctx)
    if p is None:
        return
    if hours + gift_hours > Decimal(p["max_prepaid_hours"]):
        raise _refuse("max_prepaid_hours", f"{hours + gift_hours} hours sold at once; at most {p['max_prepaid_hours']}")
    # a month is counted as 31 days: 3 months are at most 93 days of validity
    if validity_days > 31 * p["max_prepaid_months"]:
        raise _refuse("max_prepaid_months",
                      f"valid for {validity_days} days; at most {p['max_prepaid_months']} months")


def check_lessons(ctx: HookContext, lessons: Sequence[Any], tz: ZoneInfo, *, online: bool, subject: bool) -> None:
    """``lessons``: objects with ``starts_at``/``ends_at`` (aware)."""
    p = _policy(ctx)
    if p is None:
        return
    hh, mm = (int(x) for x in p["latest_end"].split(":"))
    ordered = sorted(lessons, key=lambda x: x.starts_at)
    for x in ordered:
        start, end = x.starts_at.astimezone(tz), x.ends_at.astimezone(tz)
        limit = start.replace(hour=hh, minute=mm, second=0, microsecond=0)
        if end > limit or end.date() != start.date():
            raise _refuse("latest_end", f"the lesson of {start:%Y-%m-%d} ends at {end:%H:%M}, after {p['latest_end']}")
        if online and x.ends_at - x.starts_at > timedelta(minutes=p["online_max_minutes"]):
            raise _refuse("online_max_minutes", f"an online lesson of {(x.ends_at - x.starts_at).seconds // 60} "
                          f"minutes; at most {p['online_max_minutes']}")
        if subject and p["no_subject_on_holidays"] and day_kind(start.date())[0] == "holiday":
            raise _refuse("no_subject_on_holidays", f"{start:%Y-%m-%d} is a statutory holiday")
    if online and ordered:
        gap = timedelta(minutes=p["online_break_minutes"])
        # the teacher's other lessons around these count too (those being moved do not)
        moving = {getattr(x, "id", None) for x in ordered} - {None}
        teachers = {x.teacher_id for x in ordered}
        around = [_Span(r.starts_at, r.ends_at, r.resource_id) for r in booking.taken(
            ctx, "teacher", teachers, ordered[0].starts_at - gap, ordered[-1].ends_at + gap
        ) if r.lesson_id not in moving]
        spans = sorted([_Span(x.starts_at, x.ends_at, x.teacher_id) for x in ordered] + around,
                       key=lambda x: (x.teacher_id, x.starts_at))
        for a, b in zip(spans, spans[1:], strict=False):
            if a.teacher_id == b.teacher_id and timedelta(0) <= b.starts_at - a.ends_at < gap:
                end, start = a.ends_at.astimezone(tz), b.starts_at.astimezone(tz)
                raise _refuse("online_break_minutes", f"the teacher's lessons ending {end:%Y-%m-%d %H:%M} and "
                              f"starting {start:%H:%M} need {p['online_break_minutes']} minutes between them")
