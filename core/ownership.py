"""Ownership changes: the one place that moves leads between owners.

Every change of a lead's owner, by the core or by a plugin, is made here:
the lead row (owner, team, ``assigned_at``, ``version``), one ledger row per
lead with the explanation, and the ``lead_assigned`` / ``lead_released``
events with the core's item shape (:mod:`pelago.core.payloads`). Plugins
never write ``core_lead`` or ``core_ownership_change`` themselves.

Each operation is set-based and batch-shaped (a few statements per batch,
whatever its size) and a compare-and-set: a :class:`Move` names the owner
its caller saw, and a lead whose owner changed meanwhile is not moved but
reported in :attr:`Moved.missed`, so no check-then-write race exists.

:func:`take_unowned` is the claim's shape (unowned leads to one user). On
PostgreSQL it is one call of the database function ``core_take`` (migration
``0004``), which a plugin's own database function may call to take leads in
the same round trip as its own writes, as the pool's ``pool_take`` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Row, Table, insert, select, text, update
from sqlalchemy.orm.util import identity_key

from . import events
from .bulk import write_rows
from .context import HookContext
from .db import among
from .errors import NotFound, Vetoed
from .models import Lead, OwnershipChange, User
from .payloads import LeadAssigned, LeadReleased
from .snapshots import LeadInfo, UserInfo

LEAD: Table = Lead.__table__  # type: ignore[assignment]
L = LEAD.c
OC: Table = OwnershipChange.__table__  # type: ignore[assignment]
#: The lead columns a :class:`LeadInfo` is made of (``LeadInfo.of_row``).
INFO_COLUMNS = (L.id, L.name, L.phone, L.email, L.source, L.region, L.product, L.attributes, L.team_id,
                L.owner_id, L.stage, L.is_customer, L.locked)
#: the ledger columns that differ from row to row, as :func:`change_owners` writes them
LEDGER_COLUMNS = {"lead_id": "bigint", "from_user_id": "bigint", "to_user_id": "bigint", "from_team_id": "bigint",
                  "to_team_id": "bigint", "rule": "text", "detail": "jsonb"}
KEEP = object()  # a Move's team: leave the lead's team as it is
CORE = "core"  # who refuses a move to a user of another tenant


@dataclass(frozen=True, slots=True)
class Move:
    """One lead to move: from the owner the caller saw to ``to_user_id`` (``None`` releases).

    ``team_id``: the lead's team afterwards; by default the new owner's team
    (kept when the owner has none, or on release). ``detail`` is the
    explanation kept in the ledger; ``item`` adds keys to the event item
    (the pool adds ``pool_id``).
    """

    lead_id: int
    from_user_id: int | None
    to_user_id: int | None
    rule: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    team_id: int | None = None
    item: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Moved:
    """What a move did: the leads moved (id order), those that changed meanwhile, those vetoed."""

    moved: list[int] = field(default_factory=list)
    missed: list[int] = field(default_factory=list)
    refused: dict[int, tuple[str, str]] = field(default_factory=dict)  # lead id -> (plugin, message)


def change_owners(
    ctx: HookContext, moves: Sequence[Move], *, reason: str, note: str = "", check: bool = True,
    skip: str | None = None, now: datetime | None = None,
) -> Moved:
    """Apply ``moves`` (any mix of assignments and releases) in a few statements.

    The leads are locked in id order (``FOR UPDATE``); a lead whose owner is
    no longer the move's ``from_user_id`` is missed. With ``check``, the
    tenant's ``check_assign`` implementations (all but ``skip``, the plugin
    asking, when it applied its own rules) are asked about the rest as one
    batch, and the refused moves are left out. Then the lead rows change,
    the ledger gets one row per lead, and one ``lead_assigned`` and one
    ``lead_released`` event carry the moved leads. A move to the owner it
    comes from does nothing and is not reported.

    On PostgreSQL with no veto to ask (``check=False``, or no plugin on
    answers ``check_assign``) the lock, the compare-and-set, the rows and the
    ledger are one statement: a sweep's batch of a thousand releases is one
    round trip.

    A move to a user who is not one of the tenant's is always refused (by
    ``core``), whatever ``check`` says; two moves of one lead are an error.
    """
    out = Moved()
    moves = [m for m in moves if m.to_user_id != m.from_user_id]  # nothing to do for these
    if not moves:
        return out
    now = now or ctx.now()
    by_id = {m.lead_id: m for m in moves}
    if len(by_id) != len(moves):
        raise ValueError("change_owners: two moves of the same lead")
    users = _users(ctx, {m.to_user_id for m in moves})
    for m in moves:
        if m.to_user_id is not None and m.to_user_id not in users:
            out.refused[m.lead_id] = (CORE, f"no user {m.to_user_id} in this tenant")
            del by_id[m.lead_id]
    if not by_id:
        return out
    releases_only = all(m.to_user_id is None for m in by_id.values())
    ask = check and _vetoes_needed(ctx, skip, releases_only)
    if ctx.session.get_bind().dialect.name == "postgresql" and not ask:
        return _change_in_one_statement(ctx, by_id, users, out, reason=reason, note=note, now=now)
    rows = ctx.session.execute(
        select(*INFO_COLUMNS).where(L.tenant_id == ctx.tenant.id, among(ctx.session, L.id, sorted(by_id)))
        .order_by(L.id).with_for_update()
    ).all()
    current: dict[int, Any] = {r.id: r for r in rows}
    ready: list[Row[Any]] = []
    for lead_id, m in by_id.items():
        found = current.get(lead_id)
        if found is None or found.owner_id != m.from_user_id:
            out.missed.append(lead_id)
        else:
            ready.append(found)
    out.missed.sort()
    if ask and ready:
        from .routing import Assignment
        from .vetoes import vetoes

        asked = [Assignment(LeadInfo.of_row(r), users.get(by_id[r.id].to_user_id or 0), reason) for r in ready]
        refused = vetoes(ctx, asked, skip=skip)
        out.refused.update({ready[k].id: answer for k, answer in refused.items()})
        ready = [r for k, r in enumerate(ready) if k not in refused]
    if not ready:
        return out
    actor_id = ctx.actor.user_id if ctx.actor else None
    groups: dict[tuple[int | None, Any], list[int]] = {}
    ledger: list[tuple[Any, ...]] = []
    assigned: list[LeadAssigned] = []
    released: list[LeadReleased] = []
    for r in ready:
        m = by_id[r.id]
        team: Any = m.team_id
        if team is None:
            owner = users.get(m.to_user_id) if m.to_user_id is not None else None
            team = owner.team_id if owner is not None and owner.team_id is not None else KEEP
        groups.setdefault((m.to_user_id, team), []).append(r.id)
        to_team = r.team_id if team is KEEP else team
        ledger.append((r.id, r.owner_id, m.to_user_id, r.team_id, to_team, m.rule, events.snapshot(dict(m.detail))))
        if m.to_user_id is not None:
            assigned.append(assigned_item(r.id, r.owner_id, m.to_user_id, to_team, reason, m.rule, m.item))
        else:
            released.append(released_item(r.id, r.owner_id, reason, m.rule, m.item))
        out.moved.append(r.id)
    for (to_user, team), ids in groups.items():
        values: dict[str, Any] = {"owner_id": to_user, "assigned_at": now if to_user is not None else None,
                                  "updated_at": now, "version": L.version + 1}
        if team is not KEEP:
            values["team_id"] = team
        ctx.session.execute(update(LEAD).where(L.tenant_id == ctx.tenant.id, among(ctx.session, L.id, ids))
                            .values(**values))
    write_rows(ctx.session, OC, LEDGER_COLUMNS, ledger, {
        "tenant_id": ("bigint", ctx.tenant.id), "reason": ("text", reason), "note": ("text", note),
        "actor_id": ("bigint", actor_id), "at": ("timestamptz", now),
    })
    ctx.emit("lead_assigned", assigned)
    ctx.emit("lead_released", released)
    _refresh(ctx, out.moved)
    out.moved.sort()
    return out


#: PostgreSQL: the compare-and-set, the lead rows and the ledger as one statement (no vetoes to ask).
CHANGE_SQL = text("""
WITH v AS (
    SELECT * FROM json_to_recordset(CAST(:moves AS json))
        AS v(lead_id bigint, from_user_id bigint, to_user_id bigint, team_id bigint, rule text, detail jsonb)
), old AS (
    SELECT l.id, l.team_id FROM core_lead AS l JOIN v ON v.lead_id = l.id
    WHERE l.tenant_id = CAST(:tenant_id AS bigint) AND l.owner_id IS NOT DISTINCT FROM v.from_user_id
    ORDER BY l.id FOR UPDATE OF l
), moved AS (
    UPDATE core_lead AS l
    SET owner_id = v.to_user_id, team_id = COALESCE(v.team_id, l.team_id),
        assigned_at = CASE WHEN v.to_user_id IS NULL THEN NULL ELSE CAST(:now AS timestamptz) END,
        updated_at = CAST(:now AS timestamptz), version = l.version + 1
    FROM v JOIN old ON old.id = v.lead_id
    WHERE l.id = v.lead_id AND l.tenant_id = CAST(:tenant_id AS bigint)
    RETURNING l.id, old.team_id AS from_team_id, l.team_id AS to_team_id, v.from_user_id, v.to_user_id, v.rule,
              v.detail
), ledger AS (
    INSERT INTO core_ownership_change (tenant_id, lead_id, from_user_id, to_user_id, from_team_id, to_team_id,
                                       reason, rule, note, detail, actor_id, at)
    SELECT CAST(:tenant_id AS bigint), id, from_user_id, to_user_id, from_team_id, to_team_id,
           CAST(:reason AS text), rule, CAST(:note AS text), COALESCE(detail, '{}'::jsonb),
           CAST(:actor_id AS bigint), CAST(:now AS timestamptz)
    FROM moved
)
SELECT id, to_team_id FROM moved ORDER BY id
""")


def _change_in_one_statement(
    ctx: HookContext, by_id: Mapping[int, Move], users: Mapping[int, UserInfo], out: Moved, *, reason: str,
    note: str, now: datetime,
) -> Moved:
    """:func:`change_owners` on PostgreSQL when no veto is to be asked: one round trip per batch.

    The moves travel as one JSON parameter; the leads still owned as each
    move says are locked in id order (re-checked after any wait), moved, and
    their ledger rows written from the same statement. Only the ids and new
    teams come back, for the event items.
    """
    import json

    rows = []
    for m in by_id.values():
        team = m.team_id
        if team is None and m.to_user_id is not None:
            owner = users.get(m.to_user_id)
            team = owner.team_id if owner is not None else None
        rows.append({"lead_id": m.lead_id, "from_user_id": m.from_user_id, "to_user_id": m.to_user_id,
                     "team_id": team, "rule": m.rule, "detail": events.snapshot(dict(m.detail))})
    got = ctx.session.execute(CHANGE_SQL, {
        "moves": json.dumps(rows), "tenant_id": ctx.tenant.id, "now": now, "reason": reason, "note": note,
        "actor_id": ctx.actor.user_id if ctx.actor else None,
    }).all()
    assigned: list[LeadAssigned] = []
    released: list[LeadReleased] = []
    for lead_id, to_team in got:
        m = by_id[lead_id]
        if m.to_user_id is not None:
            assigned.append(assigned_item(lead_id, m.from_user_id, m.to_user_id, to_team, reason, m.rule, m.item))
        else:
            released.append(released_item(lead_id, cast(int, m.from_user_id), reason, m.rule, m.item))
        out.moved.append(lead_id)
    done = set(out.moved)
    out.missed = sorted(i for i in by_id if i not in done)
    out.moved.sort()
    ctx.emit("lead_assigned", assigned)
    ctx.emit("lead_released", released)
    _refresh(ctx, out.moved)
    return out


def _vetoes_needed(ctx: HookContext, skip: str | None, releases_only: bool) -> bool:
    """Whether a plugin on for the tenant may refuse: the core's own ``check_assign``
    only judges the new owner, so for releases alone it is not asked."""
    from .asking import CORE_PLUGIN, answering

    return any(p != CORE_PLUGIN or not releases_only for p in answering(ctx, "check_assign", skip))


def assign_leads(ctx: HookContext, moves: Sequence[Move], *, reason: str, note: str = "", check: bool = True,
                 skip: str | None = None) -> Moved:
    """:func:`change_owners` for moves that all give leads to a user."""
    if any(m.to_user_id is None for m in moves):
        raise ValueError("assign_leads: every move needs a to_user_id (use release_leads to release)")
    return change_owners(ctx, moves, reason=reason, note=note, check=check, skip=skip)


def release_leads(ctx: HookContext, moves: Sequence[Move], *, reason: str, note: str = "", check: bool = True,
                  skip: str | None = None, now: datetime | None = None) -> Moved:
    """:func:`change_owners` for moves that all release leads (``to_user_id=None``)."""
    if any(m.to_user_id is not None for m in moves):
        raise ValueError("release_leads: every move must have to_user_id=None")
    return change_owners(ctx, moves, reason=reason, note=note, check=check, skip=skip, now=now)


@dataclass(frozen=True)
class Taken:
    """What :func:`take_unowned` took: the leads as they are now (``LeadInfo``, id order) and the event."""

    leads: list[LeadInfo]
    event_id: int | None


#: PostgreSQL: the driver's own SQL for ``core_take`` (psycopg's ``%(name)s`` parameters).
TAKE_SQL = """
SELECT * FROM core_take(
    %(tenant_id)s::bigint, %(lead_ids)s::bigint[], %(user_id)s::bigint, %(team_id)s::bigint,
    %(now)s::timestamptz, %(reason)s::text, %(rule)s::text, %(note)s::text, %(detail)s::jsonb,
    %(actor_id)s::bigint, %(item)s::jsonb, %(subscribers)s::text[])
"""


def take_unowned(
    ctx: HookContext, lead_ids: Sequence[int], user_id: int, *, team_id: int | None, reason: str,
    rule: str | None = None, note: str = "", detail: Mapping[str, Any] | None = None,
    item: Mapping[str, Any] | None = None, now: datetime | None = None,
) -> Taken:
    """Give those of ``lead_ids`` that are unowned right now to ``user_id``; the others are left.

    The claim's write: one conditional ``UPDATE … WHERE owner_id IS NULL``
    (so two takers of one lead get it once), the ledger and one
    ``lead_assigned`` event. ``team_id``: the leads' team afterwards (``None``
    keeps it). ``user_id`` must be one of the tenant's users (``NotFound``
    otherwise; ``core_take`` raises). No veto is asked: the caller asks
    :func:`~pelago.core.vetoes.vetoes` about :attr:`Taken.leads` — as they
    were before the take, ``dataclasses.replace(lead, owner_id=None)``, since
    the snapshots show the new owner — and rolls back on a refusal (the rows
    are locked by then, so the answer holds).
    """
    if not lead_ids:
        return Taken([], None)
    now = now or ctx.now()
    actor_id = ctx.actor.user_id if ctx.actor else None
    detail = events.snapshot(dict(detail or {}))
    extra = events.snapshot(dict(item or {}))
    if user_id not in _users(ctx, {user_id}):
        raise NotFound(f"no user {user_id} in this tenant")
    conn = ctx.session.connection()
    if conn.dialect.name == "postgresql":
        import json

        got = conn.exec_driver_sql(TAKE_SQL, {
            "tenant_id": ctx.tenant.id, "lead_ids": list(lead_ids), "user_id": user_id, "team_id": team_id,
            "now": now, "reason": reason, "rule": rule, "note": note, "detail": json.dumps(detail),
            "actor_id": actor_id, "item": json.dumps(extra),
            "subscribers": events.subscribers(ctx, "lead_assigned"),
        }).all()
        leads = [LeadInfo.of_row(r, user_id) for r in got if r.id is not None]
        event_id = next(r.event_id for r in got if r.id is None)
        if event_id is not None:
            events.emitted(ctx, event_id)
        _refresh(ctx, [i.id for i in leads if i.id is not None])
        return Taken(leads, event_id)
    values: dict[str, Any] = {"owner_id": user_id, "assigned_at": now, "updated_at": now, "version": L.version + 1}
    if team_id is not None:
        values["team_id"] = team_id
    rows = sorted(conn.execute(
        update(LEAD)
        .where(L.tenant_id == ctx.tenant.id, L.id.in_(list(lead_ids)), L.owner_id.is_(None))
        .values(**values).returning(*INFO_COLUMNS)
    ).all(), key=lambda r: r.id)
    if not rows:
        return Taken([], None)
    conn.execute(insert(OC), [
        {"tenant_id": ctx.tenant.id, "lead_id": r.id, "from_user_id": None, "to_user_id": user_id,
         "from_team_id": None, "to_team_id": r.team_id, "reason": reason, "rule": rule, "note": note,
         "detail": detail, "actor_id": actor_id, "at": now}
        for r in rows
    ])
    event_id = ctx.emit("lead_assigned", [assigned_item(r.id, None, user_id, r.team_id, reason, rule, extra)
                                          for r in rows])
    _refresh(ctx, [r.id for r in rows])
    return Taken([LeadInfo.of_row(r) for r in rows], event_id)


def explain_unowned(
    ctx: HookContext, lead_ids: Sequence[int], *, reason: str, rule: str | None = None, note: str = "",
    detail: Mapping[str, Any] | None = None, now: datetime | None = None,
) -> None:
    """A ledger row for each of ``lead_ids`` (the tenant's) saying why it has no owner; nothing else changes.

    For leads that enter life unowned on purpose (created or imported straight
    into the pool): the ledger answers "why has this lead no owner" as it does
    for every owner change, with ``from`` and ``to`` both empty. No event.
    """
    if not lead_ids:
        return
    now = now or ctx.now()
    actor_id = ctx.actor.user_id if ctx.actor else None
    explanation = events.snapshot(dict(detail or {}))
    theirs = set(ctx.session.scalars(
        select(L.id).where(L.tenant_id == ctx.tenant.id, among(ctx.session, L.id, list(lead_ids)))))
    ctx.session.execute(insert(OC), [
        {"tenant_id": ctx.tenant.id, "lead_id": lead_id, "from_user_id": None, "to_user_id": None,
         "from_team_id": None, "to_team_id": None, "reason": reason, "rule": rule, "note": note,
         "detail": explanation, "actor_id": actor_id, "at": now}
        for lead_id in lead_ids if lead_id in theirs
    ])


def assigned_item(
    lead_id: int, from_user_id: int | None, to_user_id: int, team_id: int | None, reason: str, rule: str | None,
    extra: Mapping[str, Any] | None = None,
) -> LeadAssigned:
    """The ``lead_assigned`` item: the one definition (``core_take`` builds the same in SQL)."""
    item: LeadAssigned = {"lead_id": lead_id, "from_user_id": from_user_id, "to_user_id": to_user_id,
                          "team_id": team_id, "reason": reason, "rule": rule}
    if extra:
        item.update(extra)  # type: ignore[typeddict-item]
    return item


def released_item(
    lead_id: int, from_user_id: int, reason: str, rule: str | None, extra: Mapping[str, Any] | None = None,
) -> LeadReleased:
    """The ``lead_released`` item: the one definition."""
    item: LeadReleased = {"lead_id": lead_id, "from_user_id": from_user_id, "reason": reason, "rule": rule}
    if extra:
        item.update(extra)  # type: ignore[typeddict-item]
    return item


def _users(ctx: HookContext, ids: set[int | None]) -> dict[int, UserInfo]:
    wanted = sorted(i for i in ids if i is not None)
    if not wanted:
        return {}
    return {u.id: UserInfo.of(u) for u in ctx.session.scalars(
        select(User).where(User.tenant_id == ctx.tenant.id, User.id.in_(wanted)))}


def _refresh(ctx: HookContext, lead_ids: Sequence[int]) -> None:
    """Expire loaded ``Lead`` objects of ``lead_ids``: their rows were changed by Core statements."""
    loaded = ctx.session.identity_map
    if len(loaded) < len(lead_ids):  # a batch job's session holds few objects: look at those, not every id
        ids, lead_class = set(lead_ids), identity_key(Lead, 0)[0]
        keys = [key for key in loaded.keys() if key[0] is lead_class and key[1] and key[1][0] in ids]
    else:
        keys = [identity_key(Lead, lead_id) for lead_id in lead_ids]
    for key in keys:
        obj = loaded.get(key)
        if obj is not None:
            ctx.session.expire(obj)


def refuse_if_any(refused: Mapping[int, tuple[str, str]]) -> None:
    """Raise :class:`Vetoed` (409) for the first refused lead, if any."""
    if refused:
        plugin, message = refused[min(refused)]
        raise Vetoed(message, plugin)


@dataclass(frozen=True, slots=True)
class OwnershipStep:
    """One row of a lead's ownership ledger, read-only: who held it after the change, in which team, since when.

    ``to_user_id`` is ``None`` for a release. ``reason`` and ``rule`` are the
    ledger's (``created``, ``routing``, ``claimed``, ``manual`` …).
    """

    change_id: int
    lead_id: int
    from_user_id: int | None
    to_user_id: int | None
    from_team_id: int | None
    to_team_id: int | None
    reason: str
    rule: str | None
    at: datetime


def ownership_history(ctx: HookContext, lead_ids: Sequence[int]) -> dict[int, tuple[OwnershipStep, ...]]:
    """Each of ``lead_ids``' ownership ledger, oldest first (``{lead_id: ()}`` for a lead with none).

    The read side of the ledger that only the core writes: a plugin finds a
    lead's first owner (the first step with a ``to_user_id``) or its owner at
    a time (the last step at or before it) here instead of reading
    ``core_ownership_change``. One indexed query per call, the tenant's rows only.
    """
    ids = sorted({int(i) for i in lead_ids})
    out: dict[int, list[OwnershipStep]] = {i: [] for i in ids}
    for chunk in range(0, len(ids), 1000):
        rows = ctx.session.execute(
            select(OC.c.id, OC.c.lead_id, OC.c.from_user_id, OC.c.to_user_id, OC.c.from_team_id,
                   OC.c.to_team_id, OC.c.reason, OC.c.rule, OC.c.at)
            .where(OC.c.tenant_id == ctx.tenant.id, OC.c.lead_id.in_(ids[chunk:chunk + 1000]))
            .order_by(OC.c.lead_id, OC.c.id)
        )
        for row in rows:
            out[row.lead_id].append(OwnershipStep(*row))
    return {i: tuple(steps) for i, steps in out.items()}


@dataclass(frozen=True)
class OwnerlessFlow:
    """One day of the ownership ledger, in the tenant's calendar: leads that lost their owner, and that got one.

    ``lost``: steps from an owner to nobody (releases, recycles);
    ``taken``: steps from nobody to an owner (claims, distributions, assignments).
    """

    day: date
    lost: int
    taken: int


def ownerless_flows(ctx: HookContext, until: datetime, days: int) -> list[OwnerlessFlow]:
    """The ledger's flows into and out of "no owner", per tenant day for the ``days`` days ending with ``until``'s.

    One query over the tenant's ledger for the window (only the steps with
    exactly one side unowned); a day with none is a row of zeros.
    """
    tz = ctx.tenant.tz
    last = until.astimezone(tz).date()
    first = last - timedelta(days=days - 1)
    since = datetime.combine(first, datetime.min.time(), tz)
    rows = ctx.session.execute(
        select(OC.c.at, OC.c.from_user_id.is_not(None))
        .where(OC.c.tenant_id == ctx.tenant.id, OC.c.at >= since,
               OC.c.from_user_id.is_(None) != OC.c.to_user_id.is_(None))
    ).all()
    lost = [0] * days
    taken = [0] * days
    for at, had_owner in rows:
        i = (at.astimezone(tz).date() - first).days
        if 0 <= i < days:
            (lost if had_owner else taken)[i] += 1
    return [OwnerlessFlow(first + timedelta(days=i), lost[i], taken[i]) for i in range(days)]
