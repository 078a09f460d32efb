"""Taking leads out of a pool for a user: the writes a claim or a distribution makes.

Four writes belong together: the leads' new owner (still unowned, still in
that pool, the pool's rules met) with its ledger rows and ``lead_assigned``
event, removing their pool entries, and counting the day's claims (a
conditional upsert that refuses to pass the daily limit). The first is the
core's: :func:`pelago.plugin.take_unowned`, the core-owned claim write, gets
the entries the pool's terms allow; the pool writes only its own tables.

On PostgreSQL all of it is **one call** of the function ``pool_take``
(migration ``pool_0003``), which selects the eligible entries and calls the
core's ``core_take`` in the same round trip, and (``pool_0005``) also
returns the new owner's row for ``check_assign``: claims are the hottest write of
a pool, concurrent claimers queue on the lead's row lock, and a function
keeps its plan across calls where a prepared statement would lose it at each
rollback of a lost race. SQLite runs the same steps one after the other.

Either way a concurrent claimer of the same lead waits for the row lock and
then finds an owner: the core's ``UPDATE … WHERE owner_id IS NULL`` matches
nothing. Exactly one claim wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, literal, or_, select
from sqlalchemy.sql.elements import ColumnElement

from pelago.plugin import (
    Conflict,
    HookContext,
    LeadInfo,
    UserInfo,
    UtcDateTime,
    event_emitted,
    event_subscribers,
    take_unowned,
)

from . import counters, rules
from .models import PoolEntry
from .pools import PoolInfo, Stale, verified

E = PoolEntry.__table__


@dataclass(frozen=True)
class Terms:
    """What a pool asks of a claim by one user at one moment, as cutoffs (``None``: no such rule).

    A lead may be taken if it entered the pool before ``protect_before`` and,
    when the user is its previous owner, was released before ``cooldown_before``;
    hidden leads are never taken. ``daily_limit`` caps the user's claims today.
    """

    protect_before: datetime | None = None
    cooldown_before: datetime | None = None
    daily_limit: int | None = None

    @classmethod
    def of(cls, ctx: HookContext, pool: PoolInfo, now: datetime) -> Terms:
        s = pool.settings
        protect, cooldown, limit = s["protect_days"], s["cooldown_days"], s["daily_claim_limit"]
        if not protect and not cooldown:  # no calendar to consult: the same terms at any time
            found = _TIMELESS.get(limit)
            if found is None:
                found = _TIMELESS.setdefault(limit, cls(daily_limit=limit))
            return found
        tz = ctx.tenant.tz
        return cls(
            protect_before=rules.cutoff(tz, now, protect) if protect else None,
            cooldown_before=rules.cutoff(tz, now, cooldown) if cooldown else None,
            daily_limit=limit,
        )

    def conditions(self, pool_id: int, user_id: int | None, now: datetime) -> list[ColumnElement[bool]]:
        """The same terms as conditions on a lead's pool entry (for listings and SQLite)."""
        cond: list[ColumnElement[bool]] = [
            E.c.pool_id == pool_id,
            or_(E.c.hidden_until.is_(None), E.c.hidden_until <= now),
        ]
        if self.protect_before is not None:
            cond.append(E.c.entered_at < literal(self.protect_before, UtcDateTime()))
        if self.cooldown_before is not None and user_id is not None:
            cond.append(or_(
                E.c.from_user_id.is_(None), E.c.from_user_id != user_id, E.c.released_at.is_(None),
                E.c.released_at < literal(self.cooldown_before, UtcDateTime()),
            ))
        return cond


def strictest_limit(terms: Iterable[Terms]) -> int | None:
    """The daily limit of a claim from several pools: the strictest of theirs."""
    return min((t.daily_limit for t in terms if t.daily_limit is not None), default=None)


#: Terms that let a pool admin distribute: no protection, no cooldown, no count.
ANY_TIME = Terms()
#: the terms of pools without protection or cooldown, by daily limit (immutable, shared)
_TIMELESS: dict[int | None, Terms] = {None: ANY_TIME}


@dataclass(frozen=True)
class Taken:
    """What :func:`take` did: the leads now the user's (in id order, with their pool) and today's count."""

    leads: list[LeadInfo]  # as they are now (owned by the user)
    pool_of: dict[int, int]
    claims_today: int | None  # None: counting these claims would pass the daily limit (nothing may stay)
    #: with ``explain``, where PostgreSQL read them: the leads not taken, by id, read after the
    #: attempt (owner and pool entry, for the reasons); ``None``: not read
    others: dict[int, Any] | None = None
    #: the new owner as hooks see them, where PostgreSQL read it with the take (``None``: not read)
    owner: UserInfo | None = None


def take(
    ctx: HookContext, user_id: int, team_id: int | None, groups: Mapping[int, Sequence[int]],
    terms: Mapping[int, Terms], *, reason: str, note: str, count: bool, now: datetime,
    config_version: int | None = None, explain: bool = False,
) -> Taken:
    """Give the leads of ``groups`` (``{pool_id: lead ids}``) to ``user_id`` where ``terms`` allow.

    ``count``: these are claims, counted against the day's limit. When the
    count would pass it, ``claims_today`` is ``None`` and the caller must
    roll back (the leads were taken in its transaction). A lead moved to
    another pool meanwhile makes this a 409. ``config_version``: the pools
    behind ``groups`` and ``terms`` came from the cache at that version
    (:func:`.pools.cached`); if it no longer holds, nothing is written and
    :class:`.pools.Stale` is raised. The leads taken from each pool are
    announced by one ``lead_assigned`` event (``reason`` and the pool on each
    item; rule ``pool:<id>``). ``explain``: also read the leads not taken,
    when that costs no extra round trip.
    """
    if not groups:
        return Taken([], {}, None)
    if ctx.session.get_bind().dialect.name == "postgresql":
        taken = _take_postgresql(ctx, user_id, team_id, groups, terms, reason=reason, note=note,
                                 count=count, now=now, config_version=config_version, explain=explain)
    else:
        taken = _take_in_steps(ctx, user_id, team_id, groups, terms, reason=reason, note=note,
                               count=count, now=now)
    if count and taken.leads:
        counters.remember_lock(ctx, user_id)  # the count's row is locked until commit
    return taken


#: PostgreSQL: the function ``pool_take`` (migration ``pool_0003``) selects the eligible entries, takes
#: the leads through the core's ``core_take`` (lead rows, ledger, event), removes the entries and counts
#: the claims. It is the driver's own SQL (psycopg's ``%(name)s`` parameters): the pool's hottest call
#: skips SQLAlchemy's statement and parameter handling, about a tenth of a claim's interpreter time.
TAKE_SQL = """
SELECT * FROM pool_take(
    %(tenant_id)s::bigint, %(user_id)s::bigint, %(team_id)s::bigint, %(pool_id)s::bigint,
    %(lead_ids)s::bigint[], %(now)s::timestamptz, %(day)s::date,
    %(protect_before)s::timestamptz, %(cooldown_before)s::timestamptz, %(count)s::boolean,
    %(daily_limit)s::integer, %(reason)s::text, %(note)s::text, %(actor_id)s::bigint,
    %(config_version)s::bigint, %(explain)s::boolean, %(subscribers)s::text[])
"""


def _take_postgresql(
    ctx: HookContext, user_id: int, team_id: int | None, groups: Mapping[int, Sequence[int]],
    terms: Mapping[int, Terms], *, reason: str, note: str, count: bool, now: datetime,
    config_version: int | None, explain: bool,
) -> Taken:
    """One call per pool (a claim is from one pool, almost always).

    The hottest path of the pool: the result rows are read in one pass and
    nothing is built that a claim of one lead does not need.
    """
    limit = strictest_limit(terms[pid] for pid in groups)
    actor = ctx.actor
    common = {
        "user_id": user_id, "team_id": team_id, "tenant_id": ctx.tenant.id, "now": now,
        "day": counters.today(ctx, now), "count": count, "reason": reason, "note": note,
        "actor_id": actor.user_id if actor is not None else None, "daily_limit": limit, "explain": explain,
        "subscribers": event_subscribers(ctx, "lead_assigned"),
    }
    leads: list[LeadInfo] = []
    pool_of: dict[int, int] = {}
    others: dict[int, Any] = {}
    claims_today = None
    owner = None
    conn = ctx.session.connection()
    for pool_id, ids in groups.items():
        t = terms[pool_id]
        common.update(pool_id=pool_id, lead_ids=list(ids), config_version=config_version,
                      protect_before=t.protect_before, cooldown_before=t.cooldown_before)
        here: list[LeadInfo] = []
        summary: Any = None
        for r in conn.exec_driver_sql(TAKE_SQL, common).all():
            kind = r.kind
            if kind == "taken":
                here.append(LeadInfo.of_row(r, user_id))
            elif kind == "other":
                others[r.id] = r
            else:
                summary = r
        if summary is None:  # pragma: no cover - pool_take always ends with its summary row
            raise RuntimeError("pool_take returned no summary row")
        if config_version is not None:
            if summary.config_version != config_version:
                raise Stale(f"pools changed since version {config_version}")
            verified(ctx, config_version)
            config_version = None  # checked: the later pools' calls use the same pools
        if here and summary.removed != len(here):
            raise Conflict("a lead was moved to another pool meanwhile; reload and retry")
        if summary.event_id is not None:
            event_emitted(ctx, summary.event_id)
        if summary.attributes is not None:  # the new owner's row (pool_0005), when leads were taken
            owner = UserInfo(**{**summary.attributes, "working_hours": summary.attributes["working_hours"] or None})
        leads += here
        for lead in here:
            pool_of[lead.id] = pool_id  # type: ignore[index]  # taken leads have ids
        if here and count:
            claims_today = summary.claims_today
            if claims_today is None:
                break  # past the daily limit: the caller rolls back
    if len(leads) > 1:
        leads.sort(key=lambda i: i.id or 0)
    return Taken(leads, pool_of, claims_today, others if explain else None, owner)


def _take_in_steps(
    ctx: HookContext, user_id: int, team_id: int | None, groups: Mapping[int, Sequence[int]],
    terms: Mapping[int, Terms], *, reason: str, note: str, count: bool, now: datetime,
) -> Taken:
    """SQLite: per pool, the entries its terms allow, then the core's take of those still unowned."""
    leads: list[LeadInfo] = []
    pool_of: dict[int, int] = {}
    for pool_id, ids in groups.items():
        eligible = list(ctx.session.scalars(
            select(E.c.lead_id).where(E.c.tenant_id == ctx.tenant.id, E.c.lead_id.in_(ids),
                                      *terms[pool_id].conditions(pool_id, user_id, now))
            .order_by(E.c.lead_id)
        ))
        if not eligible:
            continue
        got = take_unowned(ctx, eligible, user_id, team_id=team_id, reason=reason, rule=f"pool:{pool_id}",
                           note=note, detail={"pool_id": pool_id}, item={"pool_id": pool_id}, now=now)
        leads += got.leads
        pool_of.update(dict.fromkeys((i.id for i in got.leads if i.id is not None), pool_id))
    if not leads:
        return Taken([], {}, None)
    removed = ctx.session.execute(
        delete(E).where(E.c.tenant_id == ctx.tenant.id, E.c.lead_id.in_(pool_of)).returning(E.c.lead_id, E.c.pool_id)
    ).all()
    if {(lid, pid) for lid, pid in removed} != set(pool_of.items()):
        raise Conflict("a lead was moved to another pool meanwhile; reload and retry")
    claims_today = None
    if count:
        limit = strictest_limit(terms[pid] for pid in groups)
        claims_today = counters.add_claims(ctx, user_id, len(leads), limit)
    return Taken(sorted(leads, key=lambda i: i.id or 0), pool_of, claims_today)

