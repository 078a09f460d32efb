"""Taking leads out of a pool for a user: the writes a claim or a distribution makes.

Four writes belong together: the conditional UPDATE that gives the lead its
owner (still unowned, still in that pool, the pool's rules met), removing its
pool entry, counting the day's claims (a conditional upsert that refuses to
pass the daily limit) and the ledger rows. On PostgreSQL they are **one call**
of the function ``pool_take`` (data-modifying CTEs, migration ``pool_0002``):
claims are the hottest write of a pool, concurrent claimers queue on the
lead's row lock, and a function keeps its plan across calls where a prepared
statement would lose it at each rollback of a lost race. SQLite, which has no
data-modifying CTEs, runs the same writes one after the other.

Either way a concurrent claimer of the same lead waits for the row lock and
then finds an owner: its UPDATE matches nothing. Exactly one claim wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, insert, literal, or_, update
from sqlalchemy.engine import Row
from sqlalchemy.sql.elements import ColumnElement

from pelago.core import Conflict, HookContext, events
from pelago.core.db import UtcDateTime
from pelago.core.models import Lead, OwnershipChange

from . import counters, rules
from .models import PoolEntry
from .pools import PoolInfo, Stale, verified

L = Lead.__table__.c
E = PoolEntry.__table__
OC = OwnershipChange.__table__

#: the lead columns a LeadInfo needs (returned by the UPDATE that takes them)
INFO_COLUMNS = (L.id, L.name, L.phone, L.email, L.source, L.region, L.product, L.attributes, L.team_id,
                L.stage, L.is_customer, L.locked)

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
        s, tz = pool.settings, ctx.tenant.tz
        return cls(
            protect_before=rules.cutoff(tz, now, s["protect_days"]) if s["protect_days"] else None,
            cooldown_before=rules.cutoff(tz, now, s["cooldown_days"]) if s["cooldown_days"] else None,
            daily_limit=s["daily_claim_limit"],
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


@dataclass(frozen=True)
class Taken:
    """What :func:`take` did: the leads now the user's (in id order, with their pool) and today's count."""

    rows: list[Row[Any]]
    pool_of: dict[int, int]
    claims_today: int | None  # None: counting these claims would pass the daily limit (nothing may stay)
    #: with ``explain``, where PostgreSQL read them: the leads not taken, by id, read after the
    #: attempt (owner and pool entry, for the reasons); ``None``: not read
    others: dict[int, Any] | None = None


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
    :class:`.pools.Stale` is raised. The taken leads are announced by one
    ``lead_assigned`` event (``reason`` and the pool on each item). ``explain``:
    also read the leads not taken, when that costs no extra round trip.
    """
    if not groups:
        return Taken([], {}, None)
    if ctx.session.get_bind().dialect.name == "postgresql":
        taken = _take_postgresql(ctx, user_id, team_id, groups, terms, reason=reason, note=note,
                                 count=count, now=now, config_version=config_version, explain=explain)
    else:
        taken = _take_in_steps(ctx, user_id, team_id, groups, terms, reason=reason, note=note,
                               count=count, now=now)
    if count and taken.rows:
        counters.remember_lock(ctx, user_id)  # the count's row is locked until commit
    return taken


#: PostgreSQL: the function ``pool_take`` (migration ``pool_0002``) makes the writes and emits the event.
#: It is the driver's own SQL (psycopg's ``%(name)s`` parameters): the pool's hottest call skips
#: SQLAlchemy's statement and parameter handling, about a tenth of a claim's interpreter time.
TAKE_SQL = """
SELECT * FROM pool_take(
    %(tenant_id)s::bigint, %(user_id)s::bigint, %(team_id)s::bigint, %(pool_id)s::bigint,
    %(lead_ids)s::bigint[], %(now)s::timestamptz, %(day)s::date,
    %(protect_before)s::timestamptz, %(cooldown_before)s::timestamptz, %(count)s::boolean,
    %(daily_limit)s::integer, %(reason)s::text, %(note)s::text, %(actor_id)s::bigint,
    %(config_version)s::bigint, %(explain)s::boolean, %(event)s::text, %(subscribers)s::text[])
"""

EVENT = "lead_assigned"


def _take_postgresql(
    ctx: HookContext, user_id: int, team_id: int | None, groups: Mapping[int, Sequence[int]],
    terms: Mapping[int, Terms], *, reason: str, note: str, count: bool, now: datetime,
    config_version: int | None, explain: bool,
) -> Taken:
    """One call per pool (a claim is from one pool, almost always)."""
    limit = strictest_limit(terms[pid] for pid in groups)
    common = {
        "user_id": user_id, "team_id": team_id, "tenant_id": ctx.tenant.id, "now": now,
        "day": counters.today(ctx), "count": count, "reason": reason, "note": note,
        "actor_id": ctx.actor.user_id if ctx.actor else None, "daily_limit": limit, "explain": explain,
        "event": EVENT, "subscribers": events.subscribers(ctx, EVENT),
    }
    rows: list[Row[Any]] = []
    pool_of: dict[int, int] = {}
    others: dict[int, Any] = {}
    claims_today = None
    conn = ctx.session.connection()
    for pool_id, ids in groups.items():
        t = terms[pool_id]
        got = conn.exec_driver_sql(TAKE_SQL, {
            **common, "pool_id": pool_id, "lead_ids": list(ids), "config_version": config_version,
            "protect_before": t.protect_before, "cooldown_before": t.cooldown_before,
        }).all()
        summary = next(r for r in got if r.kind == "summary")
        if config_version is not None:
            if summary.config_version != config_version:
                raise Stale(f"pools changed since version {config_version}")
            verified(ctx, config_version)
            config_version = None  # checked: the later pools' calls use the same pools
        here = [r for r in got if r.kind == "taken"]
        others.update((r.id, r) for r in got if r.kind == "other")
        if here and summary.removed != len(here):
            raise Conflict("a lead was moved to another pool meanwhile; reload and retry")
        if summary.event_id is not None:
            events.emitted(ctx, summary.event_id)
        rows += here
        pool_of.update(dict.fromkeys((r.id for r in here), pool_id))
        if here and count:
            claims_today = summary.claims_today
            if claims_today is None:
                break  # past the daily limit: the caller rolls back
    return Taken(sorted(rows, key=lambda r: r.id), pool_of, claims_today, others if explain else None)


def _take_in_steps(
    ctx: HookContext, user_id: int, team_id: int | None, groups: Mapping[int, Sequence[int]],
    terms: Mapping[int, Terms], *, reason: str, note: str, count: bool, now: datetime,
) -> Taken:
    branches = []
    for pool_id, ids in groups.items():
        in_pool = exists().where(E.c.lead_id == L.id, E.c.tenant_id == ctx.tenant.id,
                                 *terms[pool_id].conditions(pool_id, user_id, now))
        branches.append(and_(L.id.in_(ids), in_pool))
    values: dict[str, Any] = {"owner_id": user_id, "assigned_at": now, "updated_at": now, "version": L.version + 1}
    if team_id is not None:
        values["team_id"] = team_id
    rows = sorted(ctx.session.execute(
        update(Lead.__table__)
        .where(L.tenant_id == ctx.tenant.id, L.owner_id.is_(None), or_(*branches))
        .values(**values)
        .returning(*INFO_COLUMNS)
    ).all(), key=lambda r: r.id)
    if not rows:
        return Taken([], {}, None)
    got = {r.id for r in rows}
    pool_of = {lid: pid for pid, ids in groups.items() for lid in ids if lid in got}
    removed = ctx.session.execute(
        delete(E).where(E.c.tenant_id == ctx.tenant.id, E.c.lead_id.in_(pool_of)).returning(E.c.lead_id, E.c.pool_id)
    ).all()
    if {(lid, pid) for lid, pid in removed} != set(pool_of.items()):
        raise Conflict("a lead was moved to another pool meanwhile; reload and retry")
    claims_today = None
    if count:
        limit = strictest_limit(terms[pid] for pid in groups)
        claims_today = counters.add_claims(ctx, user_id, len(rows), limit)
    actor_id = ctx.actor.user_id if ctx.actor else None
    ctx.session.execute(insert(OC), [
        {"tenant_id": ctx.tenant.id, "lead_id": r.id, "from_user_id": None, "to_user_id": user_id,
         "from_team_id": None, "to_team_id": r.team_id, "reason": reason, "rule": f"pool:{pool_of[r.id]}",
         "note": note, "detail": {"pool_id": pool_of[r.id]}, "actor_id": actor_id, "at": now}
        for r in rows
    ])
    ctx.emit(EVENT, [
        {"lead_id": r.id, "from_user_id": None, "to_user_id": user_id, "team_id": r.team_id, "reason": reason,
         "rule": f"pool:{pool_of[r.id]}", "pool_id": pool_of[r.id]}
        for r in rows
    ])
    return Taken(rows, pool_of, claims_today)
