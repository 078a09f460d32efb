"""The rules checked at the moment of sending: the send window, validity, the frequency caps.

A window is local time ``[start, end)`` in the lead's region's timezone (the
tenant's when the region has none); ``start > end`` crosses midnight
(``21:00``–``02:00``). A message due outside its window waits for the next
opening, unless that opening is past its validity: then it is dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo


def hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def timezone_of(settings: Mapping[str, Any], tenant_tz: ZoneInfo, region: str | None) -> ZoneInfo:
    name = (settings.get("region_timezones") or {}).get(region or "")
    return ZoneInfo(name) if name else tenant_tz


def inside(local: datetime, start: time, end: time) -> bool:
    """Whether the local time ``local`` is inside the window ``[start, end)``."""
    t = local.time().replace(tzinfo=None)
    return start <= t < end if start < end else (t >= start or t < end)


def next_opening(at: datetime, tz: ZoneInfo, start: time, end: time) -> datetime:
    """``at`` if inside the window, else when it next opens (UTC)."""
    local = at.astimezone(tz)
    if inside(local, start, end):
        return at
    opening = datetime.combine(local.date(), start, tzinfo=tz)
    if opening <= local:
        opening = datetime.combine(local.date() + timedelta(days=1), start, tzinfo=tz)
    return opening.astimezone(timezone.utc)


def local_day(at: datetime, tz: ZoneInfo) -> date:
    return at.astimezone(tz).date()


def cap_reason(today: int, week: int, daily: int, weekly: int) -> str | None:
    """Why one more message to a phone would break a cap (``today``/``week``: already counted), or ``None``."""
    if today >= daily:
        return f"frequency cap: {today} sent today, at most {daily} a day"
    if week >= weekly:
        return f"frequency cap: {week} sent in 7 days, at most {weekly} a week"
    return None
