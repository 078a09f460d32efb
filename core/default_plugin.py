"""The core's own answers to its decision hooks, registered as plugin ``core``.

Every implementation is ``trylast``, so any plugin answering the same hook is
asked first and wins. The answers are the tenant's routing configuration:
rules and the default intake team choose the team; leave, working hours and
daily capacity narrow the candidates; the team's strategy picks the rep.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, time
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from .markers import hookimpl
from .models import Lead, OwnershipChange, Team
from .routing import OwnerChoice, TeamChoice, day_start, set_pointer
from .routing_config import routing_config

if TYPE_CHECKING:  # pragma: no cover
    from .context import HookContext
    from .routing import Assignment
    from .snapshots import LeadInfo, TeamInfo, UserInfo

OPEN_STAGES = ("new", "contacted", "qualified")


@hookimpl(trylast=True)
def choose_team(ctx: HookContext, leads: Sequence[LeadInfo]) -> list[TeamChoice | None] | None:
    """With auto-routing on: the first matching rule (lowest priority, then oldest), else
    the default intake team. Off: no opinion, so only a plugin or the caller places a lead."""
    config = routing_config(ctx.session, ctx.tenant.id)
    if not config.auto_routing:
        return None
    default = config.default_team_id
    if not config.rules and default is None:
        return None
    fallback = (
        TeamChoice(default, "the tenant's default intake team", rule="default_team")
        if default is not None else None
    )
    choices: list[TeamChoice | None] = []
    for lead in leads:
        choice = fallback
        for rule in config.rules:
            if all(getattr(lead, key) in accepted for key, accepted in rule.match.items()):
                choice = TeamChoice(rule.team_id, f"matched rule {rule.name!r}", rule=f"rule:{rule.name}",
                                    detail={"rule_id": rule.id})
                break
        choices.append(choice)
    return choices


@hookimpl(trylast=True)
def exclude_candidates(
    ctx: HookContext, team: TeamInfo, candidates: Sequence[UserInfo], leads: Sequence[LeadInfo]
) -> Mapping[int, str] | None:
    """Reps on leave, and reps outside their working hours (tenant timezone)."""
    now = ctx.now().astimezone(ctx.tenant.tz)
    out: dict[int, str] = {}
    for user in candidates:
        if user.on_leave:
            out[user.id] = "on leave"
        elif user.working_hours and not within_hours(user.working_hours, now):
            out[user.id] = "outside working hours"
    return out


def within_hours(hours: Mapping[str, Any], local: datetime) -> bool:
    """Is ``local`` inside ``{"days": [1..7], "start": "HH:MM", "end": "HH:MM"}``?

    An end before the start is an overnight shift; its night part belongs to
    the day the shift started.
    """
    start, end = time.fromisoformat(hours["start"]), time.fromisoformat(hours["end"])
    days = set(hours.get("days") or range(1, 8))
    now, weekday = local.time(), local.isoweekday()
    if start <= end:
        return weekday in days and start <= now < end
    if now >= start:
        return weekday in days
    return now < end and (weekday - 2) % 7 + 1 in days


@hookimpl(trylast=True)
def choose_owner(
    ctx: HookContext, team: TeamInfo, candidates: Sequence[UserInfo], leads: Sequence[LeadInfo]
) -> list[OwnerChoice | None]:
    """The team's strategy, skipping reps whose daily capacity is used up."""
    ids = [u.id for u in candidates]
    counted = team.strategy == "weighted" or any(u.daily_capacity is not None for u in candidates)
    today = _assigned_today(ctx, ids) if counted else {}  # the count grows all day: skip it if unused
    room = {
        u.id: (None if u.daily_capacity is None else max(u.daily_capacity - today.get(u.id, 0), 0))
        for u in candidates
    }
    full = [u.id for u in candidates if room[u.id] == 0]
    pick = {"round_robin": _round_robin, "load_balanced": _load_balanced, "weighted": _weighted}[team.strategy]
    chosen = pick(ctx, team, candidates, room, today, len(leads))
    skipped = {str(uid): "daily capacity reached" for uid in full}
    out: list[OwnerChoice | None] = []
    for user_id, why in chosen:
        if user_id is None:
            out.append(OwnerChoice(None, "every candidate reached their daily capacity",
                                   rule=team.strategy, detail={"skipped": skipped}))
        else:
            out.append(OwnerChoice(user_id, why, rule=team.strategy,
                                   detail={"skipped": skipped} if skipped else {}))
    return out


def _assigned_today(ctx: HookContext, user_ids: list[int]) -> dict[int, int]:
    """Leads given to each user since midnight, tenant time (any reason), from the ledger."""
    if not user_ids:
        return {}
    rows = ctx.session.execute(
        select(OwnershipChange.to_user_id, func.count())
        .where(OwnershipChange.to_user_id.in_(user_ids), OwnershipChange.at >= day_start(ctx))
        .group_by(OwnershipChange.to_user_id)
    )
    return {int(uid or 0): n for uid, n in rows}


Picks = list[tuple[int | None, str]]


def _round_robin(
    ctx: HookContext, team: TeamInfo, users: Sequence[UserInfo], room: dict[int, int | None],
    today: dict[int, int], n: int,
) -> Picks:
    """Next user id after the pointer (the last assigned id), wrapping; the row is locked."""
    ids = sorted(u.id for u in users)
    pointer = team.rr_pointer
    start = next((k for k, uid in enumerate(ids) if pointer is None or uid > pointer), 0)
    out: Picks = []
    k = start
    for _ in range(n):
        for step in range(len(ids)):
            uid = ids[(k + step) % len(ids)]
            if room[uid] is None or room[uid] > 0:  # type: ignore[operator]
                break
        else:
            out.append((None, ""))
            continue
        if room[uid] is not None:
            room[uid] -= 1  # type: ignore[operator]
        out.append((uid, f"round robin: next after user {pointer}" if pointer else "round robin: first in the team"))
        pointer = uid
        k = (k + step + 1) % len(ids)
    if pointer is not None and pointer != team.rr_pointer:
        set_pointer(ctx, team.id, pointer)
        # A Team of this transaction's session keeps its pointer current (never a query: routing
        # read the locked row's columns only).
        row = ctx.session.identity_map.get(identity_key(Team, team.id))
        if row is not None:
            set_committed_value(row, "rr_pointer", pointer)  # already written: no second UPDATE
    return out


def _load_balanced(
    ctx: HookContext, team: TeamInfo, users: Sequence[UserInfo], room: dict[int, int | None],
    today: dict[int, int], n: int,
) -> Picks:
    """Fewest open leads (new, contacted, qualified) first; ties go to the lower user id."""
    ids = [u.id for u in users]
    open_counts = dict(ctx.session.execute(
        select(Lead.owner_id, func.count())
        .where(Lead.owner_id.in_(ids), Lead.stage.in_(OPEN_STAGES))
        .group_by(Lead.owner_id)
    ).all())
    return _smallest_first(
        {uid: open_counts.get(uid, 0) for uid in ids}, n, room,
        lambda uid, count: f"load balanced: fewest open leads ({count})",
        lambda uid, count: count + 1,
    )


def _weighted(
    ctx: HookContext, team: TeamInfo, users: Sequence[UserInfo], room: dict[int, int | None],
    today: dict[int, int], n: int,
) -> Picks:
    """Smallest ``(given today + 1) / weight`` first, ties to the lower id: shares follow weights."""
    weight = {u.id: u.weight for u in users}
    given = {u.id: today.get(u.id, 0) for u in users}

    def given_one_more(uid: int, _: float) -> float:
        given[uid] += 1
        return (given[uid] + 1) / weight[uid]

    return _smallest_first(
        {uid: (given[uid] + 1) / weight[uid] for uid in weight}, n, room,
        lambda uid, _: f"weighted: weight {weight[uid]}, {given[uid]} given today",
        given_one_more,
    )


def _smallest_first(
    keys: dict[int, Any], n: int, room: dict[int, int | None],
    why: Callable[[int, Any], str], after: Callable[[int, Any], Any],
) -> Picks:
    """``n`` picks, each the user with the smallest key (ties: lower id), within their room.

    ``after(uid, key)`` is the picked user's next key; a user whose room runs
    out leaves the heap.
    """
    heap = [(key, uid) for uid, key in keys.items() if room[uid] != 0]
    heapq.heapify(heap)
    out: Picks = []
    for _ in range(n):
        if not heap:
            out.append((None, ""))
            continue
        key, uid = heapq.heappop(heap)
        out.append((uid, why(uid, key)))
        if room[uid] is not None:
            room[uid] -= 1  # type: ignore[operator]
        if room[uid] != 0:
            heapq.heappush(heap, (after(uid, key), uid))
    return out


@hookimpl(trylast=True)
def check_assign(ctx: HookContext, assignments: Sequence[Assignment]) -> Mapping[int, str] | None:
    """Only active users of the tenant can own a lead."""
    return {
        k: f"user {a.user.id} is not active"
        for k, a in enumerate(assignments) if a.user is not None and not a.user.active
    }


@hookimpl(trylast=True)
def check_stage_change(ctx: HookContext, lead: LeadInfo, old: str, new: str) -> str | None:
    return None
