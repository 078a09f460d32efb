"""Period arithmetic: half-open ``[from, to)`` months in a branch's timezone. Pure, no database.

A period is named by its first month, ``"2026-11"``. With ``months`` per
period (a divisor of 12: 1 monthly, 3 quarterly …) periods start in January
and every ``months`` months after, so they tile the year with no gap and no
overlap. Bounds are local midnights of the first day, converted to UTC: the
end of one period is exactly the start of the next, and an instant belongs
to exactly one period (``from <= at < to``), DST or not. (OCA's biweekly
arithmetic lost a day by adding days to an inclusive end.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

PERIOD_MONTHS = (1, 2, 3, 4, 6, 12)
KEY = re.compile(r"^([0-9]{4})-([0-9]{2})$")


@dataclass(frozen=True)
class Bounds:
    key: str
    starts_at: datetime  # UTC, inclusive
    ends_at: datetime  # UTC, exclusive

    def __contains__(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at


def _check_months(months: int) -> None:
    if months not in PERIOD_MONTHS:
        raise ValueError(f"months per period is one of {PERIOD_MONTHS}")


def _midnight(year: int, month: int, tz: ZoneInfo) -> datetime:
    # fold=0: a local midnight that a DST jump skips maps to the instant just after the jump
    return datetime(year, month, 1, tzinfo=tz).astimezone(timezone.utc)


def _shift(year: int, month: int, by: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + by
    return index // 12, index % 12 + 1


def parse_key(key: str, months: int = 1) -> tuple[int, int]:
    """``"2026-11"`` → ``(2026, 11)``; ``ValueError`` unless a period of ``months`` starts that month."""
    _check_months(months)
    match = KEY.match(key or "")
    if not match:
        raise ValueError('a period is written YYYY-MM, e.g. "2026-11"')
    year, month = int(match[1]), int(match[2])
    if not 1 <= month <= 12 or not 1900 <= year <= 2999:
        raise ValueError('a period is written YYYY-MM, e.g. "2026-11"')
    if (month - 1) % months:
        raise ValueError(f"periods of {months} months start in months {', '.join(str(m) for m in range(1, 13, months))}")
    return year, month


def bounds(key: str, tz: ZoneInfo, months: int = 1) -> Bounds:
    """The period named ``key`` in ``tz``."""
    year, month = parse_key(key, months)
    end_year, end_month = _shift(year, month, months)
    return Bounds(key, _midnight(year, month, tz), _midnight(end_year, end_month, tz))


def period_of(at: datetime, tz: ZoneInfo, months: int = 1) -> Bounds:
    """The period that contains the aware instant ``at``, in ``tz``."""
    _check_months(months)
    if at.tzinfo is None:
        raise ValueError("a naive datetime has no period")
    local = at.astimezone(tz)
    month = (local.month - 1) // months * months + 1
    found = bounds(f"{local.year:04d}-{month:02d}", tz, months)
    # a local midnight skipped by DST starts its period a little late: the instants before belong to the last
    if at < found.starts_at:
        return previous(found, tz, months)
    return found


def next_key(key: str, months: int = 1) -> str:
    year, month = _shift(*parse_key(key, months), months)
    return f"{year:04d}-{month:02d}"


def previous(period: Bounds, tz: ZoneInfo, months: int = 1) -> Bounds:
    year, month = _shift(*parse_key(period.key, months), -months)
    return bounds(f"{year:04d}-{month:02d}", tz, months)
