"""What users do with a pool: claim, release, distribute, move, hide, list, create into it.

**The claim guarantee.** A claim selects the leads whose entry is in that
pool, past its protection, past my cooldown and not hidden, and hands them to
the core's :func:`~pelago.plugin.take_unowned`: one conditional ``UPDATE
core_lead SET owner_id = :me … WHERE id IN (…) AND owner_id IS NULL``, with
the ledger rows and ``lead_assigned``. The database takes the row lock and,
on PostgreSQL, re-evaluates the ``WHERE`` on the latest row version after
waiting; so when several transactions race for a lead, exactly one sees
``owner_id IS NULL`` and the others update nothing and answer 409 with the
reason. In the same transaction: the entry leaves the pool (guarded by its
pool id, so a concurrent move loses cleanly), the user's daily count grows by
a conditional upsert (never past the limit), and ``check_assign`` is asked
(the hold cap, other plugins). Any refusal after the update rolls all of it
back. Releases go through the core's :func:`~pelago.plugin.release_leads`;
the pool writes only its own tables.

Locks are taken in the core's order — the lead's row first, then the user's
counter row — so a claim and a manual assignment never deadlock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import String, and_, cast, insert, or_, select, text, update
from sqlalchemy.sql.elements import ColumnElement

from pelago.plugin import (
    Actor,
    Assignment,
    Conflict,
    Forbidden,
    HookContext,
    Import,
    InvalidInput,
    Lead,
    Move,
    Moved,
    NotFound,
    Page,
    PelagoError,
    Submission,
    User,
    UserInfo,
    Vetoed,
    conflict_key,
    decode_cursor,
    dialect_name,
    encode_cursor,
    explain_unowned,
    ingest,
    release_leads,
    vetoes,
    vetoes_needed,
)

from . import caps, counters, pools, rules
from .models import PoolEntry
from .pools import PoolInfo, can_admin, can_use
from .taking import ANY_TIME, Taken, Terms, strictest_limit, take

L = Lead.__table__.c
E = PoolEntry.__table__

PLUGIN = "pool"


class TooManyViews(PelagoError):
    """The daily pool-view limit is used up (anti-scraping)."""

    status = 429


@dataclass
class Outcome:
    """Lead ids the action applied to, and the others with the reason."""

    done: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"done": self.done, "refused": [{"lead_id": k, "reason": v} for k, v in sorted(self.refused.items())]}

    def raise_if_nothing_done(self, what: str) -> None:
        if not self.done:
            reasons = [f"lead {k}: {v}" for k, v in sorted(self.refused.items())]
            raise Conflict(f"nothing to {what}: " + "; ".join(reasons), {"refused": self.as_dict()["refused"]})


def _actor(ctx: HookContext) -> User:
    if ctx.actor is None:
        raise Forbidden("this needs a user")
    user = ctx.session.get(User, ctx.actor.user_id)
    if user is None or user.tenant_id != ctx.tenant.id:
        raise Forbidden("this needs a user of the tenant")
    return user


def _when(ctx: HookContext, at: datetime) -> str:
    return at.astimezone(ctx.tenant.tz).isoformat(timespec="minutes")


def _first_veto(refused: Mapping[int, tuple[str, str]]) -> Vetoed:
    plugin, message = refused[min(refused)]
    return Vetoed(message, plugin)


# --- entries ----------------------------------------------------------------------------


def entries_of(ctx: HookContext, lead_ids: Sequence[int]) -> dict[int, int]:
    """``{lead_id: pool_id}`` of the given leads that are in a pool."""
    rows = ctx.session.execute(
        select(E.c.lead_id, E.c.pool_id).where(E.c.tenant_id == ctx.tenant.id, E.c.lead_id.in_(lead_ids))
    )
    return {lead_id: pool_id for lead_id, pool_id in rows}


def claimable(ctx: HookContext, pool: PoolInfo, user_id: int | None, now: datetime) -> list[ColumnElement[bool]]:
    """The conditions on a lead's entry for ``user_id`` to claim it from ``pool`` at ``now``."""
    return Terms.of(ctx, pool, now).conditions(pool.id, user_id, now)


def claimable_from(ctx: HookContext, pool: PoolInfo, user_id: int | None, entry: Any, now: datetime) -> datetime | None:
    """When ``user_id`` may claim the lead of ``entry`` (``None``: now). Mirrors :func:`claimable`."""
    s, tz = pool.settings, ctx.tenant.tz
    times = []
    if s["protect_days"]:
        times.append(rules.due(tz, entry.entered_at, s["protect_days"]))
    if s["cooldown_days"] and user_id is not None and entry.from_user_id == user_id and entry.released_at:
        times.append(rules.due(tz, entry.released_at, s["cooldown_days"]))
    if entry.hidden_until is not None:
        times.append(entry.hidden_until)
    later = max(times, default=None)
    return later if later is not None and later > now else None


# --- taking leads out of a pool (claim, distribute) ------------------------------------------


def _refuse_if_vetoed(ctx: HookContext, taken: Taken, user_id: int, team_id: int | None, reason: str) -> None:
    """The hold cap of the pool, then ``check_assign`` of the tenant's other plugins.

    Asked about the leads as they were (unowned) with their rows locked by the
    take, so the answer holds; a refusal raises and the caller's transaction
    rolls the take back.
    """
    over = caps.over_cap(ctx, user_id, team_id, taken.leads)  # the cap counts them as proposed, whoever owns them
    if over:
        raise Vetoed(over[min(over)], PLUGIN)
    if vetoes_needed(ctx, skip=PLUGIN):
        user = taken.owner  # read by the take itself on PostgreSQL: no ORM load
        if user is None or user.id != user_id:
            found = ctx.session.get(User, user_id)
            user = UserInfo.of(found) if found is not None else None
        leads = [replace(lead, owner_id=None) for lead in taken.leads]
        refused = vetoes(ctx, [Assignment(lead, user, reason) for lead in leads], skip=PLUGIN)
        if refused:
            raise _first_veto(refused)


def claim(ctx: HookContext, lead_ids: Sequence[int], pool_id: int | None = None) -> Outcome:
    """Claim leads for the caller; those taken by someone else (or not claimable) are refused.

    Refusals of the whole claim (nothing claimable, the daily limit, the hold
    cap or another plugin's veto) raise 409 and leave nothing written.
    """
    me = ctx.actor
    if me is None or me.tenant_id != ctx.tenant.id:
        raise Forbidden("this needs a user of the tenant")
    all_pools, version = pools.cached(ctx, me.user_id)
    try:
        return _claim(ctx, me, all_pools, version, lead_ids, pool_id)
    except pools.Stale:
        return _claim(ctx, me, pools.load(ctx, me.user_id), None, lead_ids, pool_id)


def _claim(
    ctx: HookContext, me: Actor, all_pools: Mapping[int, PoolInfo], version: int | None,
    lead_ids: Sequence[int], pool_id: int | None,
) -> Outcome:
    """:func:`claim` with these pools; ``version``: they are cached, not yet checked."""

    def refusing() -> None:
        if version is not None:  # a refusal is never made from cached pools: load them, ask again
            raise pools.Stale("refusing from cached pools")

    now = ctx.now()
    ids = sorted(set(lead_ids))
    if pool_id is not None:
        pool = all_pools.get(pool_id)
        if pool is None or not can_use(pool, me):
            refusing()
            raise NotFound(f"pool {pool_id} not found")
        where = dict.fromkeys(ids, pool_id)
    else:
        where = entries_of(ctx, ids)
    groups: dict[int, list[int]] = {}
    out = Outcome()
    for lid in ids:
        pid = where.get(lid)
        if pid is not None and (pid not in all_pools or not can_use(all_pools[pid], me)):
            refusing()
            out.refused[lid] = "not in a pool you may claim from"
        elif pid is not None:
            groups.setdefault(pid, []).append(lid)
    if not groups:
        refusing()
    terms = {pid: Terms.of(ctx, all_pools[pid], now) for pid in groups}
    taken = take(ctx, me.user_id, me.team_id, groups, terms, reason="claimed", note="", count=True, now=now,
                 config_version=version, explain=True)
    done = set(taken.pool_of)
    out.refused.update(_why_not(ctx, [i for i in ids if i not in done and i not in out.refused],
                                me.user_id, all_pools, now, pool_id, taken.others))
    if not taken.leads:
        out.raise_if_nothing_done("claim")
    if taken.claims_today is None:
        limit = strictest_limit(terms.values())
        more = f"; these {len(taken.leads)} would pass it" if len(taken.leads) > 1 else ""
        raise Conflict(f"daily claim limit reached: at most {limit} claims a day{more}",
                       {"daily_claim_limit": limit})
    _refuse_if_vetoed(ctx, taken, me.user_id, me.team_id, "claimed")
    out.done = sorted(taken.pool_of)
    return out


def _why_not(
    ctx: HookContext, ids: Sequence[int], user_id: int, all_pools: Mapping[int, PoolInfo], now: datetime,
    pool_id: int | None, found: Mapping[int, Any] | None,
) -> dict[int, str]:
    """Why each of ``ids`` was not claimed, from their state read after the attempt (``found``; the rest read here)."""
    if not ids:
        return {}
    found = dict(found or {})
    missing = [i for i in ids if i not in found]
    if missing:
        found.update((r.id, r) for r in ctx.session.execute(
            select(L.id, L.owner_id, E.c.pool_id, E.c.entered_at, E.c.from_user_id, E.c.released_at,
                   E.c.hidden_until)
            .select_from(Lead.__table__.outerjoin(E, E.c.lead_id == L.id))
            .where(L.tenant_id == ctx.tenant.id, L.id.in_(missing))
        ))
    out = {}
    for lid in ids:
        r = found.get(lid)
        if r is None or (r.owner_id is None and r.pool_id is None):
            out[lid] = "not in a pool you may claim from"
        elif r.owner_id == user_id:
            out[lid] = "you hold it already"
        elif r.owner_id is not None:
            out[lid] = "claimed by someone else first"
        elif r.pool_id not in all_pools or not can_use(all_pools[r.pool_id], ctx.actor):
            out[lid] = "not in a pool you may claim from"
        elif pool_id is not None and r.pool_id != pool_id:
            out[lid] = f"not in pool {pool_id} (it is in pool {r.pool_id})"
        else:
            pool = all_pools[r.pool_id]
            s, tz = pool.settings, ctx.tenant.tz
            protected = s["protect_days"] and rules.due(tz, r.entered_at, s["protect_days"])
            cooled = (s["cooldown_days"] and r.from_user_id == user_id and r.released_at
                      and rules.due(tz, r.released_at, s["cooldown_days"]))
            if r.hidden_until is not None and r.hidden_until > now:
                out[lid] = f"hidden from the pool until {_when(ctx, r.hidden_until)}"
            elif cooled and cooled > now:
                out[lid] = f"you released it on {_when(ctx, r.released_at)}; you may claim it again from {_when(ctx, cooled)}"
            elif protected and protected > now:
                out[lid] = f"it entered the pool on {_when(ctx, r.entered_at)}; protected until {_when(ctx, protected)}"
            else:
                out[lid] = "it changed meanwhile; reload and retry"
    return out


def distribute(ctx: HookContext, lead_ids: Sequence[int], user_id: int, note: str = "") -> Outcome:
    """A pool admin gives pool leads to a user (protection and cooldown do not apply; the hold cap does)."""
    if ctx.actor is None:
        raise Forbidden("this needs a user")
    target = ctx.session.get(User, user_id)
    if target is None or target.tenant_id != ctx.tenant.id or target.role == "operator":
        raise InvalidInput("unknown user", {"user_id": [f"no user {user_id} in this tenant"]})
    if not target.active:
        raise InvalidInput("inactive user", {"user_id": [f"user {user_id} is not active"]})
    now = ctx.now()
    all_pools = pools.load(ctx, ctx.actor.user_id)
    ids = sorted(set(lead_ids))
    where = entries_of(ctx, ids)
    groups: dict[int, list[int]] = {}
    out = Outcome()
    for lid in ids:
        pid = where.get(lid)
        if pid is None or not can_admin(all_pools[pid], ctx.actor):
            out.refused[lid] = "not in a pool you administer"
        else:
            groups.setdefault(pid, []).append(lid)
    taken = take(ctx, target.id, target.team_id, groups, dict.fromkeys(groups, ANY_TIME),
                 reason="distributed", note=note, count=False, now=now)
    for lids in groups.values():
        for lid in lids:
            if lid not in taken.pool_of:
                out.refused[lid] = "no longer in the pool"
    if not taken.leads:
        out.raise_if_nothing_done("distribute")
    _refuse_if_vetoed(ctx, taken, target.id, target.team_id, "distributed")
    out.done = sorted(taken.pool_of)
    return out


# --- putting leads into a pool (release, sweep) -------------------------------------------------


@dataclass(frozen=True)
class Release:
    lead_id: int
    owner_id: int
    pool_id: int
    rule: str | None = None


def put_back(
    ctx: HookContext, items: Sequence[Release], *, reason: str, note: str = "", now: datetime,
) -> Moved:
    """Release ``items`` into their pools: the core's release, then the pool entries.

    :func:`~pelago.plugin.release_leads` clears the owners (compare-and-set
    on the owner each item names), writes the ledger rows (``detail``: the
    pool) and one ``lead_released`` event (``pool_id`` on each item), asking
    the other plugins' ``check_assign`` first; then one upsert puts the released leads in their
    pools. Set-based: a few statements per batch, whatever its size. A lead
    refused or changed meanwhile is in :attr:`Moved.refused` / :attr:`Moved.missed`
    and enters no pool.
    """
    if not items:
        return Moved()
    moved = release_leads(ctx, [
        Move(i.lead_id, from_user_id=i.owner_id, to_user_id=None, rule=i.rule, detail={"pool_id": i.pool_id},
             item={"pool_id": i.pool_id})
        for i in items
    ], reason=reason, note=note, now=now, skip=PLUGIN)  # the pool's own check_assign only judges new owners
    done = set(moved.moved)
    entering = [(i.lead_id, i.pool_id, i.rule, i.owner_id) for i in items if i.lead_id in done]
    if entering:
        _enter(ctx, entering, reason=reason, note=note, now=now)
    return moved


#: the columns an entry takes from the released lead; the rest are the same for the whole batch
ENTRY_UPDATE = ("pool_id", "entered_at", "reason", "rule", "from_user_id", "released_at", "hidden_until", "note")
ENTER_PG = text(f"""
INSERT INTO pool_entry (tenant_id, lead_id, pool_id, entered_at, reason, rule, from_user_id, released_at,
                        hidden_until, note)
SELECT CAST(:tenant_id AS bigint), u.lead_id, u.pool_id, CAST(:now AS timestamptz), CAST(:reason AS text), u.rule,
       u.from_user_id, CAST(:now AS timestamptz), NULL, CAST(:note AS text)
FROM json_to_recordset(CAST(:rows AS json)) AS u(lead_id bigint, pool_id bigint, rule text, from_user_id bigint)
ON CONFLICT (tenant_id, lead_id) DO UPDATE SET {", ".join(f"{c} = excluded.{c}" for c in ENTRY_UPDATE)}
""")


def _enter(ctx: HookContext, rows: Sequence[tuple[int, int, str | None, int]], *, reason: str, note: str,
           now: datetime) -> None:
    """Upsert the pool entries of released leads ``(lead_id, pool_id, rule, from_user_id)``: one statement.

    On PostgreSQL the batch travels as one JSON parameter (no SQL built or
    parsed per row); on SQLite the driver's ``executemany``.
    """
    if dialect_name(ctx.session) == "postgresql":
        ctx.session.execute(ENTER_PG, {
            "tenant_id": ctx.tenant.id, "now": now, "reason": reason, "note": note,
            "rows": json.dumps([{"lead_id": lid, "pool_id": pid, "rule": rule, "from_user_id": owner}
                                for lid, pid, rule, owner in rows]),
        })
        return
    stmt = counters.dialect_insert(ctx.session)(E)
    stmt = stmt.on_conflict_do_update(index_elements=conflict_key(ctx.session, E, ["tenant_id", "lead_id"]),
                                      set_={c: stmt.excluded[c] for c in ENTRY_UPDATE})
    ctx.session.execute(stmt, [
        {"tenant_id": ctx.tenant.id, "lead_id": lid, "pool_id": pid, "entered_at": now, "reason": reason,
         "rule": rule, "from_user_id": owner, "released_at": now, "hidden_until": None, "note": note}
        for lid, pid, rule, owner in rows
    ])


def release(ctx: HookContext, lead_ids: Sequence[int], reason: str, pool_id: int | None = None) -> Outcome:
    """Give leads back: a rep her own, a manager any. They go to ``pool_id`` or their team's pool."""
    user = _actor(ctx)
    manager = user.role in ("manager", "admin")
    now = ctx.now()
    all_pools = pools.load(ctx, user.id)
    target = None
    if pool_id is not None:
        target = all_pools.get(pool_id)
        if target is None or not can_use(target, ctx.actor):
            raise NotFound(f"pool {pool_id} not found")
    ids = sorted(set(lead_ids))
    stmt = select(L.id, L.owner_id, L.team_id, L.locked).where(
        L.tenant_id == ctx.tenant.id, L.id.in_(ids), L.owner_id.is_not(None)
    )
    if not manager:
        stmt = stmt.where(L.owner_id == user.id)
    rows = ctx.session.execute(stmt.order_by(L.id).with_for_update()).all()
    out = Outcome()
    found = {r.id for r in rows}
    for lid in ids:
        if lid not in found:
            out.refused[lid] = "not a lead you hold" if not manager else "not a lead with an owner"
    if not manager:
        for r in rows:
            if r.locked:
                out.refused[r.id] = "locked: only a manager can release it"
        rows = [r for r in rows if not r.locked]
    moved = put_back(ctx, [Release(r.id, r.owner_id, (target or pools.home(all_pools, r.team_id)).id) for r in rows],
                     reason="released", note=reason, now=now)
    for lid, (plugin, message) in moved.refused.items():
        out.refused[lid] = f"{message} (refused by {plugin})"
    for lid in moved.missed:
        out.refused[lid] = "it changed meanwhile; reload and retry"
    out.done = moved.moved
    out.raise_if_nothing_done("release")
    return out


# --- pool admin actions -------------------------------------------------------------------


def _administered_entries(
    ctx: HookContext, lead_ids: Sequence[int], all_pools: Mapping[int, PoolInfo]
) -> tuple[list[int], Outcome]:
    ids = sorted(set(lead_ids))
    where = entries_of(ctx, ids)
    out = Outcome()
    ok = []
    for lid in ids:
        pid = where.get(lid)
        if pid is None or not can_admin(all_pools[pid], ctx.actor):
            out.refused[lid] = "not in a pool you administer"
        else:
            ok.append(lid)
    return ok, out


def move(ctx: HookContext, lead_ids: Sequence[int], pool_id: int, note: str = "") -> Outcome:
    """Move pool leads to another pool the caller administers (they enter it now)."""
    target = pools.administered(ctx, pool_id)
    all_pools = pools.load(ctx, ctx.actor.user_id if ctx.actor else None)
    ok, out = _administered_entries(ctx, lead_ids, all_pools)
    sources = [p.id for p in all_pools.values() if can_admin(p, ctx.actor)]
    moved = ctx.session.execute(
        update(E).where(E.c.tenant_id == ctx.tenant.id, E.c.lead_id.in_(ok), E.c.pool_id.in_(sources))
        .values(pool_id=target.id, entered_at=ctx.now(), reason="moved", note=note)
        .returning(E.c.lead_id)
    ).scalars().all() if ok else []
    out.done = sorted(moved)
    out.refused.update({lid: "no longer in the pool" for lid in set(ok) - set(moved)})
    out.raise_if_nothing_done("move")
    return out


def hide(ctx: HookContext, lead_ids: Sequence[int], until: datetime | None) -> Outcome:
    """Hide pool leads from members (not from admins) until ``until``; ``None`` shows them again."""
    if until is not None and until <= ctx.now():
        raise InvalidInput("until is in the past", {"until": ["must be in the future (or null to unhide)"]})
    all_pools = pools.load(ctx, ctx.actor.user_id if ctx.actor else None)
    ok, out = _administered_entries(ctx, lead_ids, all_pools)
    done = ctx.session.execute(
        update(E).where(E.c.tenant_id == ctx.tenant.id, E.c.lead_id.in_(ok))
        .values(hidden_until=until).returning(E.c.lead_id)
    ).scalars().all() if ok else []
    out.done = sorted(done)
    out.raise_if_nothing_done("hide")
    return out


def create_into(ctx: HookContext, pool_id: int, data: Mapping[str, Any]) -> tuple[int, bool]:
    """Create a lead straight into a pool (no routing, no owner): ``(lead_id, merged)``.

    A submission that duplicates an existing lead is merged into it, as any
    intake is, and the existing lead is not moved (it may be someone's).
    """
    pool = pools.administered(ctx, pool_id)
    fields = {k: v for k, v in data.items() if k != "note"}
    result = ingest(ctx, [Submission(fields, {"channel": "pool"}, dict(data))], routing=False)[0]
    if result.status == "invalid":
        raise InvalidInput("invalid lead", result.errors or {})
    assert result.lead_id is not None
    if result.status != "created":
        return result.lead_id, True
    now = ctx.now()
    note = data.get("note") or ""
    ctx.session.execute(insert(E).values(
        tenant_id=ctx.tenant.id, lead_id=result.lead_id, pool_id=pool.id, entered_at=now, reason="created",
        rule=None, from_user_id=None, released_at=None, hidden_until=None, note=note,
    ))
    explain_unowned(ctx, [result.lead_id], reason="created", rule=f"pool:{pool.id}", note=note, now=now, detail={
        "pool_id": pool.id, "owner": {"user_id": None, "reason": f"created into the pool {pool.name!r}"}})
    return result.lead_id, False


def take_imported(ctx: HookContext, items: Sequence[Mapping[str, Any]]) -> int:
    """Leads created by an import aimed at a pool (``targets.pool.pool_id``) enter that pool.

    Called with ``lead_created`` items; the import's options say where its
    leads go. Only leads still unowned and in no pool are taken (the insert
    ignores a lead already in one), so a redelivered event changes nothing.
    """
    by_import: dict[int, list[int]] = {}
    for item in items:
        if item.get("import_id") is not None and item.get("owner_id") is None:
            by_import.setdefault(int(item["import_id"]), []).append(int(item["lead_id"]))
    if not by_import:
        return 0
    targets = {
        iid: ((options or {}).get("targets") or {}).get("pool") or {}
        for iid, options in ctx.session.execute(select(Import.id, Import.options).where(Import.id.in_(by_import)))
    }
    all_pools = pools.load(ctx)
    now = ctx.now()
    taken = 0
    for import_id, lead_ids in by_import.items():
        pool = all_pools.get(int(targets.get(import_id, {}).get("pool_id") or 0))
        if pool is None:
            continue
        unowned = list(ctx.session.scalars(
            select(Lead.id).where(Lead.id.in_(lead_ids), Lead.owner_id.is_(None)).order_by(Lead.id)
        ))
        if not unowned:
            continue
        insert_ = counters.dialect_insert(ctx.session)
        done = list(ctx.session.scalars(insert_(E).values([
            {"tenant_id": ctx.tenant.id, "lead_id": lid, "pool_id": pool.id, "entered_at": now,
             "reason": "imported", "rule": f"import:{import_id}", "from_user_id": None, "released_at": None,
             "hidden_until": None, "note": ""}
            for lid in unowned
        ]).on_conflict_do_nothing(index_elements=conflict_key(ctx.session, E, ["tenant_id", "lead_id"]))
          .returning(E.c.lead_id)))
        explain_unowned(ctx, done, reason="imported", rule=f"pool:{pool.id}", now=now, detail={
            "pool_id": pool.id, "import_id": import_id,
            "owner": {"user_id": None, "reason": f"imported into the pool {pool.name!r}"}})
        taken += len(done)
    return taken


# --- reading a pool -----------------------------------------------------------------------------


def _mask(name: str, value: str | None) -> str | None:
    if not value:
        return value
    if name == "phone":
        return "*" * max(len(value) - 4, 0) + value[-4:]
    if name == "email":
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    return value[:1] + "*" * max(len(value) - 1, 1)


def list_leads(
    ctx: HookContext, pool_id: int, filters: Mapping[str, Any], cursor: str | None, limit: int
) -> Page[dict[str, Any]]:
    """A pool's leads, newest first by lead id; members see masked contacts and no hidden leads."""
    pool, _ = pools.visible(ctx, pool_id)
    admin = can_admin(pool, ctx.actor)
    user_id = ctx.actor.user_id if ctx.actor else None
    now = ctx.now()
    view_limit = pool.settings["daily_view_limit"]
    if not admin and view_limit is not None and user_id is not None:
        left = view_limit - counters.views_so_far(ctx, user_id)
        if left <= 0:
            raise TooManyViews(f"daily pool view limit reached: {view_limit} leads a day",
                               {"daily_view_limit": view_limit})
        limit = min(limit, left)
    stmt = (
        select(Lead.__table__, E.c.pool_id, E.c.entered_at, E.c.reason.label("entry_reason"), E.c.rule,
               E.c.from_user_id, E.c.released_at, E.c.hidden_until)
        .select_from(E.join(Lead.__table__, L.id == E.c.lead_id))
        .where(E.c.tenant_id == ctx.tenant.id, L.tenant_id == ctx.tenant.id, E.c.pool_id == pool.id,
               L.owner_id.is_(None))
    )
    if not admin:
        stmt = stmt.where(or_(E.c.hidden_until.is_(None), E.c.hidden_until <= now))
    for name in ("source", "stage", "region", "product"):
        if filters.get(name) is not None:
            stmt = stmt.where(L[name] == filters[name])
    if filters.get("level") is not None:
        stmt = stmt.where(cast(L.attributes["level"].as_string(), String) == filters["level"])
    if filters.get("reason") is not None:
        stmt = stmt.where(E.c.reason == filters["reason"])
    if filters.get("entered_after") is not None:
        stmt = stmt.where(E.c.entered_at >= filters["entered_after"])
    if filters.get("entered_before") is not None:
        stmt = stmt.where(E.c.entered_at < filters["entered_before"])
    if filters.get("claimable") is not None:
        can = and_(*claimable(ctx, pool, user_id, now))
        stmt = stmt.where(can if filters["claimable"] else ~can)
    if cursor:
        stmt = stmt.where(E.c.lead_id < decode_cursor(cursor))
    rows = ctx.session.execute(stmt.order_by(E.c.lead_id.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    hidden = set() if admin else set(pool.settings["hidden_fields"])
    items = []
    for r in rows:
        item = {
            "id": r.id, "pool_id": r.pool_id, "source": r.source, "region": r.region, "product": r.product,
            "level": rules.level_of(r.attributes), "stage": r.stage, "team_id": r.team_id,
            "created_at": r.created_at, "last_activity_at": r.last_activity_at, "entered_at": r.entered_at,
            "reason": r.entry_reason, "rule": r.rule, "from_user_id": r.from_user_id,
            "hidden_until": r.hidden_until, "claimable_from": claimable_from(ctx, pool, user_id, r, now),
            "contact_hidden": bool(hidden),
        }
        for name in ("name", "phone", "email"):
            value = getattr(r, name)
            item[name] = _mask(name, value) if name in hidden else value
        items.append(item)
    if not admin and view_limit is not None and user_id is not None:
        counters.add_views(ctx, user_id, len(items))
    return Page(items, encode_cursor(rows[-1].id) if more and rows else None)


def holdings(ctx: HookContext, user_id: int | None, cursor: str | None, limit: int) -> Page[dict[str, Any]]:
    """Held leads with the days left before the sweep takes each back, and under which rule."""
    me = _actor(ctx)
    if me.role == "rep":
        if user_id not in (None, me.id):
            raise Forbidden("a rep sees only her own leads")
        user_id = me.id
    stmt = select(Lead.__table__).where(L.tenant_id == ctx.tenant.id)
    stmt = stmt.where(L.owner_id == user_id) if user_id is not None else stmt.where(L.owner_id.is_not(None))
    if cursor:
        stmt = stmt.where(L.id < decode_cursor(cursor))
    rows = ctx.session.execute(stmt.order_by(L.id.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    all_pools = pools.load(ctx)
    now, tz = ctx.now(), ctx.tenant.tz
    items = []
    for r in rows:
        pool = pools.home(all_pools, r.team_id)
        due = rules.next_due(tz, pool.settings, r)
        items.append({
            "lead_id": r.id, "owner_id": r.owner_id, "name": r.name, "stage": r.stage, "pool_id": pool.id,
            "rule": due.rule if due else None, "due_at": due.at if due else None,
            "remaining_days": rules.days_left(tz, now, due.at) if due else None, "exempt": rules.exempt(r),
        })
    return Page(items, encode_cursor(rows[-1].id) if more and rows else None)
