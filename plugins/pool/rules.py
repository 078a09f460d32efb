"""Days, in the tenant's calendar, and the recycle rules as SQL and as Python.

Every "N days" in the pool counts **calendar days in the tenant's timezone**:
something that happened on local day D is N days old from local midnight
starting day D+N, whatever the hour it happened. So a lead released at 23:50
in Shanghai with a one-day cooldown may be reclaimed ten minutes later, at
00:00 — a day has turned, for the rep as on the wall calendar.

Two equivalent forms of "at least N days old at ``now``":

* SQL (the sweep, claims): ``at < cutoff(now, N)``, with ``cutoff`` local
  midnight of day ``today - N + 1`` — a timestamp computed once, compared by
  the database to every row (no per-row timezone arithmetic in SQL);
* Python (remaining days): ``now >= due(at, N)``, with ``due`` local midnight
  of day ``local_date(at) + N``.

``tests/test_pool_sweep.py`` checks the two agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import String, and_, case, cast, func, literal, null, or_
from sqlalchemy.sql.elements import ColumnElement

from pelago.plugin import Lead, UtcDateTime

from .schemas import RULES

L = Lead.__table__.c
_MISSING = object()


def local_midnight(tz: ZoneInfo, day: date) -> datetime:
    """The first instant of ``day`` in ``tz``, in UTC."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(timezone.utc)


def local_day(tz: ZoneInfo, at: datetime) -> date:
    return at.astimezone(tz).date()


def cutoff(tz: ZoneInfo, now: datetime, days: int) -> datetime:
    """``at < cutoff(now, days)`` ⟺ ``at`` is at least ``days`` calendar days old at ``now``.

    ``days=0`` gives the next local midnight: everything up to now passes.
    """
    return local_midnight(tz, local_day(tz, now) - timedelta(days=days - 1))


def due(tz: ZoneInfo, at: datetime, days: int) -> datetime:
    """When ``at`` becomes ``days`` calendar days old."""
    return local_midnight(tz, local_day(tz, at) + timedelta(days=days))


def days_left(tz: ZoneInfo, now: datetime, when: datetime) -> int:
    """Calendar days from today until ``when``'s day (0 when due today or already)."""
    return max(0, (local_day(tz, when) - local_day(tz, now)).days)


# --- which days a rule gives a lead ----------------------------------------------------


def level_of(attributes: Mapping[str, Any] | None) -> str | None:
    """A lead's level: ``attributes["level"]`` as text (as SQL reads it), else ``None``."""
    value = (attributes or {}).get("level")
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def rule_days(rule: Mapping[str, Any], source: str | None, level: str | None) -> int | None:
    """The days of ``rule`` for a lead: its level's, else its source's, else the rule's."""
    if level is not None:
        found = rule["by_level"].get(level, _MISSING)
        if found is not _MISSING:
            return found  # type: ignore[return-value]
    if source is not None:
        found = rule["by_source"].get(source, _MISSING)
        if found is not _MISSING:
            return found  # type: ignore[return-value]
    return rule["days"]  # type: ignore[no-any-return]


def active_rules(settings: Mapping[str, Any]) -> list[str]:
    """The rules of a pool that can recycle anything (in order)."""
    out = []
    for name in RULES:
        rule = settings["recycle"][name]
        if rule["days"] is not None or any(v is not None for v in (*rule["by_source"].values(),
                                                                      *rule["by_level"].values())):
            out.append(name)
    return out


# --- Python: when does a held lead go back? -------------------------------------------------


@dataclass(frozen=True)
class Due:
    rule: str
    at: datetime


def touched(rule: str, lead: Any) -> datetime:
    """The instant a rule counts from, for ``lead`` (any object with the lead's columns)."""
    held_since = lead.assigned_at or lead.created_at
    if rule == "no_followup":
        last = lead.last_activity_at
        return max(last, held_since) if last is not None else held_since  # type: ignore[no-any-return]
    if rule == "not_won":
        return held_since  # type: ignore[no-any-return]
    if rule == "stage_stale":
        return max(lead.stage_changed_at, held_since)  # type: ignore[no-any-return]
    raise ValueError(rule)


def exempt(lead: Any) -> str | None:
    """Why a held lead is never recycled, or ``None``."""
    if lead.is_customer or lead.stage == "won":
        return "won customer"
    if lead.locked:
        return "locked"
    return None


def next_due(tz: ZoneInfo, settings: Mapping[str, Any], lead: Any) -> Due | None:
    """The earliest moment a rule of ``settings`` recycles ``lead`` (ties: rule order)."""
    if exempt(lead) is not None:
        return None
    level = level_of(lead.attributes)
    best: Due | None = None
    for name in RULES:
        days = rule_days(settings["recycle"][name], lead.source, level)
        if days is None:
            continue
        at = due(tz, touched(name, lead), days)
        if best is None or at < best.at:
            best = Due(name, at)
    return best


# --- SQL: the same rules, set-based -----------------------------------------------------------


def _stamp(value: datetime) -> ColumnElement[Any]:
    return literal(value, UtcDateTime())


def cut_expression(rule: Mapping[str, Any], tz: ZoneInfo, now: datetime) -> ColumnElement[Any] | None:
    """The cutoff of ``rule`` for each row (level, then source, then default); ``None``: rule off."""
    def cut(days: int | None) -> ColumnElement[Any]:
        return _stamp(cutoff(tz, now, days)) if days is not None else null()

    whens: list[tuple[ColumnElement[bool], ColumnElement[Any]]] = []
    if rule["by_level"]:
        level = cast(L.attributes["level"].as_string(), String)
        whens += [(level == name, cut(days)) for name, days in rule["by_level"].items()]
    whens += [(L.source == name, cut(days)) for name, days in rule["by_source"].items()]
    if not whens:
        return cut(rule["days"]) if rule["days"] is not None else None
    return case(*whens, else_=cut(rule["days"]))


def rule_condition(name: str, cut: ColumnElement[Any]) -> ColumnElement[bool]:
    """``touched(name, lead) < cut`` in SQL (NULL cut: false)."""
    held_since = func.coalesce(L.assigned_at, L.created_at)
    if name == "no_followup":
        return and_(or_(L.last_activity_at.is_(None), L.last_activity_at < cut), held_since < cut)
    if name == "not_won":
        return held_since < cut
    if name == "stage_stale":
        return and_(L.stage_changed_at < cut, held_since < cut)
    raise ValueError(name)


RECYCLABLE = and_(L.owner_id.is_not(None), L.locked.is_(False), L.is_customer.is_(False), L.stage != "won")


@dataclass(frozen=True)
class Scope:
    """Which owned leads a pool's rules apply to: its team's, or (default pool) all others."""

    pool_id: int
    team_id: int | None
    other_teams: tuple[int, ...] = ()

    def condition(self) -> ColumnElement[bool]:
        if self.team_id is not None:
            return L.team_id == self.team_id
        if not self.other_teams:
            return literal(True)
        return or_(L.team_id.is_(None), L.team_id.not_in(self.other_teams))


def rule_expression(
    scopes: Sequence[tuple[Scope, Mapping[str, Any], datetime]], tz: ZoneInfo
) -> ColumnElement[Any] | None:
    """The name of the first rule that recycles each row at each scope's moment ``now`` (NULL: none)."""
    whens: list[tuple[ColumnElement[bool], str]] = []
    for scope, settings, now in scopes:
        for name in active_rules(settings):
            cut = cut_expression(settings["recycle"][name], tz, now)
            if cut is not None:
                whens.append((and_(scope.condition(), rule_condition(name, cut)), name))
    if not whens:
        return None
    return case(*whens, else_=null())


def pool_expression(scopes: Sequence[Scope]) -> ColumnElement[Any]:
    """The pool each row's rules come from (and where it goes)."""
    teams = {s.team_id: s.pool_id for s in scopes if s.team_id is not None}
    default = next((s.pool_id for s in scopes if s.team_id is None), None)
    if not teams:
        return literal(default)
    return case(teams, value=L.team_id, else_=literal(default))

