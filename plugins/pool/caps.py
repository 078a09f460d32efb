"""The hold cap: how many leads a user may hold, for routing, assignment and claims alike.

The cap of a user is the ``hold_cap`` of their team's pool (else the default
pool's). Held leads are counted by the database (won customers only if the
pool says so). :func:`vetoes` is what ``check_assign`` answers: it locks each
affected user's row (:func:`.counters.lock_user`) before counting, so two
transactions giving leads to one user take turns and the second one counts
what the first one committed — the cap holds under concurrency.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from sqlalchemy import and_, func, select

from pelago.plugin import HookContext, Lead

from . import counters, pools

if TYPE_CHECKING:  # pragma: no cover
    from pelago.plugin import Assignment, LeadInfo, TeamInfo, UserInfo

L = Lead.__table__.c


def cap_of(pool: pools.PoolInfo) -> tuple[int | None, bool]:
    return pool.settings["hold_cap"], pool.settings["hold_cap_counts_won"]


def held(ctx: HookContext, user_ids: Iterable[int], counts_won: bool, leaving_out: Iterable[int] = ()) -> dict[int, int]:
    """How many leads each user holds (won ones only if ``counts_won``), ``leaving_out`` some ids."""
    users = sorted(set(user_ids))
    if not users:
        return {}
    cond = [L.tenant_id == ctx.tenant.id, L.owner_id.in_(users)]
    if not counts_won:
        cond += [L.is_customer.is_(False), L.stage != "won"]
    skip = sorted(set(leaving_out))
    if skip:
        cond.append(L.id.not_in(skip))
    rows = ctx.session.execute(select(L.owner_id, func.count()).where(and_(*cond)).group_by(L.owner_id))
    counts = dict.fromkeys(users, 0)
    counts.update({owner: n for owner, n in rows})
    return counts


def _counted(lead: LeadInfo, counts_won: bool) -> bool:
    return counts_won or not (lead.is_customer or lead.stage == "won")


def message(user_id: int, holding: int, cap: int) -> str:
    return f"user {user_id} holds {holding} leads; the pool's hold cap is {cap}"


def excluded(ctx: HookContext, team: TeamInfo, candidates: Sequence[UserInfo]) -> dict[int, str] | None:
    """Candidates of ``team`` already at their cap (``exclude_candidates``)."""
    cap, counts_won = cap_of(pools.home(pools.load(ctx), team.id))
    if cap is None or not candidates:
        return None
    counts = held(ctx, (u.id for u in candidates), counts_won)
    return {uid: message(uid, n, cap) for uid, n in counts.items() if n >= cap} or None


def vetoes(ctx: HookContext, assignments: Sequence[Assignment]) -> dict[int, str] | None:
    """``check_assign``: refuse the assignments that would take a user past the cap."""
    wanted: dict[int, list[int]] = {}
    team_of: dict[int, int | None] = {}
    for i, a in enumerate(assignments):
        if a.user is not None and a.lead.owner_id != a.user.id:
            wanted.setdefault(a.user.id, []).append(i)
            team_of[a.user.id] = a.user.team_id
    refused: dict[int, str] = {}
    for user_id in sorted(wanted):  # in id order: two batches lock shared users in the same order
        over = over_cap(ctx, user_id, team_of[user_id], [assignments[i].lead for i in wanted[user_id]])
        refused.update({wanted[user_id][k]: message for k, message in over.items()})
    return refused or None


def over_cap(ctx: HookContext, user_id: int, team_id: int | None, leads: Sequence[LeadInfo]) -> dict[int, str]:
    """``{index: message}`` of the ``leads`` that giving to the user would take past the cap.

    Locks the user's row for today first (:func:`.counters.lock_user`), so the
    count sees every earlier transaction that gave the user leads. Leads with
    an id count as proposed here, never also as held (a claim has already
    written their owner when it asks).
    """
    cap, counts_won = cap_of(pools.home(pools.load(ctx), team_id))
    if cap is None or not leads:
        return {}
    counters.lock_user(ctx, user_id)
    holding = held(ctx, [user_id], counts_won, [lead.id for lead in leads if lead.id is not None])[user_id]
    refused: dict[int, str] = {}
    for k, lead in enumerate(leads):
        if not _counted(lead, counts_won):
            continue
        if holding >= cap:
            refused[k] = message(user_id, holding, cap)
        else:
            holding += 1
    return refused
