"""The pool's hook implementations.

Decisions: the hold cap narrows routing (``exclude_candidates``) and refuses
assignments past it (``check_assign``). Events: releases made outside the pool
(a manager's release through the core API, another plugin) put the lead in its
team's pool; the pool's own events go to the tenant's webhook; an erased
person's leads leave the pools (:mod:`.privacy`, which also answers
``privacy_export``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from sqlalchemy import select

from pelago.plugin import Event, HookContext, Lead, conflict_key, erased_lead_ids, hookimpl

from . import caps, counters, pools, privacy, service, webhooks
from .models import PoolEntry

if TYPE_CHECKING:  # pragma: no cover
    from pelago.plugin import Assignment, LeadInfo, TeamInfo, UserInfo

PLUGIN = "pool"


@hookimpl
def exclude_candidates(
    ctx: HookContext, team: TeamInfo, candidates: Sequence[UserInfo], leads: Sequence[LeadInfo]
) -> Mapping[int, str] | None:
    return caps.excluded(ctx, team, candidates)


@hookimpl
def check_assign(ctx: HookContext, assignments: Sequence[Assignment]) -> Mapping[int, str] | None:
    return caps.vetoes(ctx, assignments)


@hookimpl
def lead_released(ctx: HookContext, event: Event) -> None:
    mine = [i for i in event.items if "pool_id" in i]
    _absorb(ctx, event, [i for i in event.items if "pool_id" not in i])
    for reason in ("released", "recycled"):
        webhooks.send(ctx, f"pool.{reason}", [i for i in mine if i.get("reason") == reason])


@hookimpl
def lead_created(ctx: HookContext, event: Event) -> None:
    """Leads of an import aimed at a pool enter it (``POST /pools/{id}/imports``)."""
    service.take_imported(ctx, event.items)


@hookimpl
def lead_assigned(ctx: HookContext, event: Event) -> None:
    for reason in ("claimed", "distributed"):
        webhooks.send(ctx, f"pool.{reason}", [i for i in event.items if i.get("reason") == reason])


@hookimpl
def pool_recycle_due(ctx: HookContext, event: Event) -> None:
    webhooks.send(ctx, "pool.recycle_due", event.items)


@hookimpl
def plugin_enabled(ctx: HookContext, event: Event) -> None:
    if any(item.get("plugin") == PLUGIN for item in event.items):
        pools.ensure_default(ctx)


@hookimpl
def privacy_export(ctx: HookContext, lead_ids: Sequence[int]) -> Mapping[str, object] | None:
    return privacy.export(ctx, lead_ids)


@hookimpl
def person_erased(ctx: HookContext, event: Event) -> None:
    privacy.erase(ctx, erased_lead_ids(event.items))


def _absorb(ctx: HookContext, event: Event, items: Sequence[Mapping[str, object]]) -> None:
    """Leads released elsewhere enter their team's pool (if still unowned and in none)."""
    if not items:
        return
    by_lead = {int(i["lead_id"]): i for i in items}  # type: ignore[call-overload]
    rows = ctx.session.execute(
        select(Lead.id, Lead.team_id).where(Lead.id.in_(by_lead), Lead.owner_id.is_(None))
    ).all()
    if not rows:
        return
    all_pools = pools.load(ctx)
    insert = counters.dialect_insert(ctx.session)
    now = ctx.now()
    ctx.session.execute(insert(PoolEntry.__table__).values([
        {"tenant_id": ctx.tenant.id, "lead_id": r.id, "pool_id": pools.home(all_pools, r.team_id).id,
         "entered_at": now, "reason": "released", "rule": by_lead[r.id].get("reason"),
         "from_user_id": by_lead[r.id].get("from_user_id"), "released_at": event.created_at,
         "hidden_until": None, "note": ""}
        for r in rows
    ]).on_conflict_do_nothing(index_elements=conflict_key(ctx.session, PoolEntry, ["tenant_id", "lead_id"])))
