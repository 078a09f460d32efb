"""Weekly rules (RRULE) expanded in a campus's local time, and the Chinese holiday calendar.

An occurrence keeps its wall-clock time in the campus's timezone (``zoneinfo``,
never pytz: dateutil with pytz gives wrong offsets, dateutil #641 and #102), so
18:00 stays 18:00 across a UTC offset change. Expansion is capped: a rule
without ``COUNT`` or ``UNTIL`` is refused, and so is one with more occurrences
than the cap. Each day is classified with ``chinese-calendar``: a statutory
holiday, a make-up workday (调休), a weekend, a workday, or **unknown** for a
year the State Council has not announced yet (never assumed a workday).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import chinese_calendar
from dateutil import rrule as rr

from pelago.plugin import InvalidInput

#: what the generator does with a day of each kind (``keep`` or ``skip``); ``unknown`` may also ``refuse``
DAY_KINDS = ("workday", "weekend", "holiday", "makeup_workday", "unknown")
FREQS = {"DAILY", "WEEKLY"}


@functools.lru_cache(maxsize=4096)
def day_kind(day: date) -> tuple[str, str | None]:
    """``(kind, holiday name)``: ``holiday``, ``makeup_workday`` (调休), ``weekend``, ``workday`` or ``unknown``."""
    try:
        off, name = chinese_calendar.get_holiday_detail(day)
    except NotImplementedError:  # a year the calendar has no data for
        return "unknown", None
    if name is not None:
        return ("holiday" if off else "makeup_workday"), str(name)
    return ("weekend" if off else "workday"), None


@dataclass(frozen=True)
class Occurrence:
    """One expanded occurrence: its local start (the recurrence id's wall-clock time) and what to do with it."""

    local: datetime  # naive, the campus's wall-clock time
    starts_at: datetime  # aware UTC
    ends_at: datetime
    day: str
    holiday: str | None
    action: str  # keep, skip
    reason: str

    def out(self) -> dict[str, Any]:
        return {
            "local_start": self.local.strftime("%Y-%m-%dT%H:%M"), "starts_at": self.starts_at,
            "ends_at": self.ends_at, "day": self.day, "holiday": self.holiday, "action": self.action,
            "reason": self.reason,
        }


def parse_rule(rule: str, start_local: datetime, cap: int) -> list[datetime]:
    """The local start of each occurrence of ``rule`` from ``start_local``; 422 naming ``rrule`` otherwise."""
    text = rule.strip()
    if text.upper().startswith("RRULE:"):
        text = text[6:]
    parts = dict(p.split("=", 1) for p in text.upper().split(";") if "=" in p)
    if parts.get("FREQ") not in FREQS:
        raise InvalidInput("invalid rule", {"rrule": ["FREQ must be WEEKLY or DAILY"]})
    if "COUNT" not in parts and "UNTIL" not in parts:
        raise InvalidInput("invalid rule", {"rrule": ["the rule never ends: give COUNT or UNTIL"]})
    if parts.get("UNTIL", "").endswith("Z"):
        raise InvalidInput("invalid rule", {"rrule": ["UNTIL is a local date or time (no Z): the campus's time"]})
    try:
        parsed = rr.rrulestr(text, dtstart=start_local)
        # one more than the cap tells "too many" without expanding an endless list
        starts = list(parsed.xafter(start_local - timedelta(seconds=1), count=cap + 1, inc=True))  # type: ignore[union-attr]
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput("invalid rule", {"rrule": [str(exc) or "not an RRULE"]}) from None
    if len(starts) > cap:
        raise InvalidInput("invalid rule", {"rrule": [f"more than {cap} occurrences (the cap)"]})
    if not starts:
        raise InvalidInput("invalid rule", {"rrule": ["the rule has no occurrence"]})
    return starts


def to_utc(local: datetime, tz: ZoneInfo) -> datetime:
    """The UTC instant of a campus wall-clock time (the earlier one of an ambiguous time)."""
    return local.replace(tzinfo=tz, fold=0).astimezone(timezone.utc)


def expand(
    rule: str, start_local: datetime, duration: timedelta, tz: ZoneInfo, *, cap: int,
    days: dict[str, str], skip_dates: frozenset[date] = frozenset(),
) -> list[Occurrence]:
    """Every occurrence with its day kind and whether it is kept (``days``: kind → keep/skip/refuse)."""
    out = []
    for local in parse_rule(rule, start_local, cap):
        kind, name = day_kind(local.date())
        action = days.get(kind, "keep")
        reason = f"{kind} ({name})" if name else kind
        if local.date() in skip_dates:
            action, reason = "skip", "date skipped by request"
        start = to_utc(local, tz)
        end = start + duration
        out.append(Occurrence(local, start, end, kind, name, action, reason))
    return out
