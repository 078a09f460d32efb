"""The outbox: events written with the change, delivered after commit.

:func:`emit` writes one ``core_event`` row (its ``items`` may be a batch) and
one ``core_event_delivery`` row for every plugin that implements the hook and
is on for the tenant, all in the caller's transaction. After commit the ids
are handed to the runtime's queue; :func:`deliver` then calls each plugin's
handler and records the outcome: all of a job's events in one transaction
while every handler returns, else again event by event with each handler in
its own SAVEPOINT. A plugin that raises is marked ``failed`` with its error
and retried later with backoff; the others' outcomes are not affected (they
may be called a second time: delivery is at least once), nor is the request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, String, Table, Text, bindparam, cast, insert, or_, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from . import collector, jsontext
from .hookspecs import TO_ALL_PLUGINS
from .models import Delivery, OutboxEvent, Tenant
from .outbound import no_calls

if TYPE_CHECKING:  # pragma: no cover
    from .bulk import Call
    from .context import HookContext
    from .runtime import Runtime

MAX_ATTEMPTS = 8
PENDING_KEY = "pelago_events"


@dataclass(frozen=True)
class Event:
    """An event as a handler receives it. ``items`` are read-only snapshots."""

    id: int
    name: str
    tenant_id: int
    created_at: datetime
    actor_id: int | None
    items: tuple[Mapping[str, Any], ...]


_PLAIN = frozenset({str, int, float, bool, type(None)})


def snapshot(value: Any) -> Any:
    """A JSON-ready copy: ``Decimal`` as string, datetimes as ISO 8601."""
    if type(value) is dict:  # the common case, flat items of plain values: no call per value
        return {str(k): v if type(v) in _PLAIN else snapshot(v) for k, v in value.items()}
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): snapshot(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [snapshot(v) for v in value]
    return value


def backoff(attempts: int) -> timedelta:
    """Delay before the next try: 30 s, 1 min, 2 min … capped at 1 h."""
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 3600))


def subscribers(ctx: HookContext, name: str) -> list[str]:
    """The plugins that get a delivery of ``name`` for this tenant: its implementers that are on.

    An event of :data:`~pelago.core.hookspecs.TO_ALL_PLUGINS` (``person_erased``)
    goes to every implementer, on or off: a plugin switched off keeps its data.
    """
    if name in TO_ALL_PLUGINS:
        return list(ctx.host.implementers(name))
    return [p for p in ctx.host.implementers(name) if p == "core" or p in ctx.tenant.enabled]


def emit(
    ctx: HookContext, name: str, items: Sequence[Mapping[str, Any]], skip: Iterable[str] = (), *, plain: bool = False,
) -> int | None:
    """Write ``name`` with ``items`` to the outbox of ``ctx.session``'s transaction.

    Returns the event id (``None`` if ``items`` is empty). On PostgreSQL this
    is one call of the database function ``core_emit`` (migration ``0003``).
    ``skip``: plugins that get no delivery of this event (the plugin whose
    own write it reports, which has nothing to learn from it); an event that
    is left with no subscriber is still stored, and nothing is queued.
    ``plain``: the caller built ``items`` as flat dicts of text, numbers,
    booleans and ``None`` (the core's batch writers do), so they need no
    :func:`snapshot`.
    """
    if not items:
        return None
    now = ctx.now()
    plugins = subscribers(ctx, name)
    if skip:
        left_out = set(skip)
        plugins = [p for p in plugins if p not in left_out]
    row = {
        "tenant_id": ctx.tenant.id,
        "name": name,
        "items": list(items) if plain else snapshot(list(items)),
        "actor_id": ctx.actor.user_id if ctx.actor else None,
        "created_at": now,
    }
    conn = ctx.session.connection()
    if conn.dialect.name == "postgresql":
        event_id = conn.execute(_CORE_EMIT, {**row, "plugins": plugins}).scalar_one()
    else:
        event_id = conn.execute(insert(OutboxEvent).returning(OutboxEvent.id), {
            "tenant_id": row["tenant_id"], "name": name, "payload": {"items": row["items"]},
            "actor_id": row["actor_id"], "created_at": now,
        }).scalar_one()
        if plugins:
            conn.execute(insert(Delivery), [
                {"tenant_id": ctx.tenant.id, "event_id": event_id, "plugin": plugin, "state": "pending",
                 "attempts": 0, "next_attempt_at": now}
                for plugin in plugins
            ])
    if plugins:
        emitted(ctx, int(event_id))
    return int(event_id)


def emit_call(
    ctx: HookContext, name: str, items: Sequence[Mapping[str, Any]], key: str, *, plain: bool = False,
) -> tuple[Call, bool]:
    """:func:`emit` as a ``core_emit`` call to send with other writes (PostgreSQL).

    For :func:`~pelago.core.bulk.write_together`. Returns the call (its
    parameters prefixed with ``key``) and whether the event has subscribers;
    the caller passes the id the call returned to :func:`emitted` when it has. The same rows as :func:`emit`, in one round
    trip with the writes the event reports. ``plain``: the caller built the
    items from text, numbers, booleans and ``None`` only (flat dicts), so
    they need no :func:`snapshot`.
    """
    from .bulk import Call

    plugins = subscribers(ctx, name)
    sql = (
        f"core_emit(CAST(:{key}_tenant AS bigint), CAST(:{key}_name AS text), CAST(:{key}_items AS jsonb), "
        f"CAST(:{key}_actor AS bigint), CAST(:{key}_at AS timestamptz), CAST(:{key}_plugins AS text[]))"
    )
    payload = jsontext.dumps(list(items) if plain else snapshot(list(items)))
    return Call(sql, {
        f"{key}_tenant": ctx.tenant.id, f"{key}_name": name, f"{key}_items": payload,
        f"{key}_actor": ctx.actor.user_id if ctx.actor else None, f"{key}_at": ctx.now(), f"{key}_plugins": plugins,
    }), bool(plugins)
def emitted(ctx: HookContext, event_id: int) -> None:
    """Hand ``event_id`` to the queue when this transaction commits.

    :func:`emit` does this itself; a plugin whose database function called
    ``core_emit`` (with :func:`subscribers` as its plugins) calls it with the
    id the function returned.
    """
    ctx.session.info.setdefault(PENDING_KEY, []).append(event_id)


_EVENT = OutboxEvent.__table__
_DELIVERY: Table = Delivery.__table__  # type: ignore[assignment]

_CORE_EMIT = text(
    "SELECT core_emit(CAST(:tenant_id AS bigint), CAST(:name AS text), :items, CAST(:actor_id AS bigint), "
    ":created_at, :plugins) AS id"
).bindparams(
    bindparam("items", type_=_EVENT.c.payload.type),
    bindparam("created_at", type_=_EVENT.c.created_at.type),
    bindparam("plugins", type_=ARRAY(String())),
).columns(id=BigInteger())


def take_pending(session: Session) -> list[int]:
    """Event ids emitted in the transaction just committed (and forget them)."""
    return session.info.pop(PENDING_KEY, [])


def deliver(runtime: Runtime, event_ids: Iterable[int]) -> dict[str, int]:
    """Deliver the pending deliveries of ``event_ids``; returns counts by outcome.

    The common case, every handler returns: one transaction for the whole job
    (an import batch's ``lead_created`` and ``lead_assigned`` together), which
    claims the deliveries and marks them delivered, reads each event once for
    all its plugins (on PostgreSQL all of that in one statement), and runs the
    handlers with no SAVEPOINT; the marks commit with the handlers' writes.
    Savepoints, per-event transactions and separate reads cost round trips
    that a batch pays for every plugin on (issue 16).

    If a handler raises, that transaction is rolled back whole (nothing of it
    committed: no mark, no handler's write) and the events are delivered again
    the careful way (:func:`deliver_event`): one transaction per event, each
    plugin's handler in its own SAVEPOINT, so the failing plugin is marked
    ``failed`` alone while the others' work and marks commit. Handlers that
    had returned run again then: delivery is at least once, and their first
    run left nothing behind (outbound calls are refused in handlers).
    """
    ids = list(dict.fromkeys(event_ids))
    raised: dict[int, Exception] = {}
    if ids:
        try:
            with collector.paused():  # a batch's events are thousands of dicts (see pelago.core.collector)
                together = _deliver_together(runtime, ids)
        except _HandlerRaised as exc:
            raised[exc.delivery_id] = exc.error
        else:
            if together is not None:
                return together
    counts = {"delivered": 0, "failed": 0, "skipped": 0}
    for event_id in ids:
        for outcome, n in deliver_event(runtime, event_id, raised).items():
            counts[outcome] += n
    return counts


class _HandlerRaised(Exception):
    """A handler raised outside a SAVEPOINT: the job's transaction is redone event by event.

    The failing delivery is not run again in that redo (a handler is called
    once per attempt): :func:`deliver_event` records ``error`` on it.
    """

    def __init__(self, delivery_id: int, error: Exception) -> None:
        super().__init__(delivery_id, error)
        self.delivery_id = delivery_id
        self.error = error


def _deliver_together(runtime: Runtime, event_ids: list[int]) -> dict[str, int] | None:
    """Every pending delivery of ``event_ids`` in one transaction; ``None`` if the events are of
    several tenants (rare) or the commit failed, rolled back: the careful way then.
    :class:`_HandlerRaised` once rolled back.

    The deliveries are claimed and marked ``delivered`` before their handlers
    run (:func:`_claim`), in the same transaction as the handlers' writes: if
    a handler raises, the rollback takes the marks back with everything else,
    so a mark commits only with every handler of the job having returned,
    as when the marks were written last. On PostgreSQL the claim, the marks,
    the events and the tenant's switch version are one statement, so the
    transaction is three round trips (``BEGIN``, that statement,
    ``COMMIT``) whatever the job and however many plugins are on (issue 16).
    """
    counts = {"delivered": 0, "failed": 0, "skipped": 0}
    with runtime.sessions() as session:
        now = runtime.clock()
        claimed = _claim(session, event_ids, now)
        if not claimed:
            return counts
        tenant_id, version = claimed[0].tenant_id, claimed[0].plugins_version
        if any(c.tenant_id != tenant_id for c in claimed):
            session.rollback()
            return None
        state = runtime.host.cached_state(tenant_id, version)
        if state is None:
            tenant = session.get(Tenant, tenant_id)
            assert tenant is not None  # its deliveries are here: the foreign key holds it
            state = runtime.host.tenant_state(session, tenant)
        session.info["tenant_id"] = tenant_id
        skipped: list[tuple[_Claimed, int]] = []
        try:
            for claim in claimed:
                event = claim.event
                for k, plugin in enumerate(claim.plugins):
                    if plugin != "core" and plugin not in state.enabled and event.name not in TO_ALL_PLUGINS:
                        skipped.append((claim, k))
                        continue
                    _call(runtime, session, state, event, plugin, claim.ids[k])
                    counts["delivered"] += 1
        except _HandlerRaised:
            session.rollback()
            raise
        if skipped:
            _unmark_skipped(session, tenant_id, skipped)
            counts["skipped"] = len(skipped)
        try:
            session.commit()
        except Exception:  # noqa: BLE001 - the careful way finds whose write it was
            session.rollback()
            return None
    return counts


@dataclass(frozen=True)
class _Claimed:
    """One event's deliveries claimed (row-locked) and marked ``delivered`` by :func:`_claim`.

    ``ids``, ``plugins``, ``attempts`` and ``due`` line up, in delivery id
    order: ``attempts`` and ``due`` are each delivery's ``attempts`` and
    ``next_attempt_at`` as they were before the mark (a skipped delivery
    gets them back).
    """

    tenant_id: int
    plugins_version: int
    event: Event
    ids: Sequence[int]
    plugins: Sequence[str]
    attempts: Sequence[int]
    due: Sequence[datetime | None]


def _claim(session: Session, event_ids: list[int], now: datetime) -> list[_Claimed]:
    """Claim the pending (or failed) deliveries of ``event_ids`` and mark them ``delivered`` at ``now``.

    Returns them per event, in event id order. PostgreSQL: one statement
    (rows locked ``SKIP LOCKED``, so two workers never run one delivery at
    once; the commit made without waiting for the WAL flush, see
    :func:`_relaxed_commit`). SQLite (one writer at a time): a read, the
    marks, the events.
    """
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        return [
            _Claimed(tenant_id=r.tenant_id, plugins_version=r.plugins_version, event=_parsed(r),
                     ids=r.ids, plugins=r.plugins, attempts=r.attempts, due=r.due)
            for r in conn.execute(_PG_CLAIM, {"ids": event_ids, "now": now})
        ]
    rows = conn.execute(
        select(Delivery.event_id, Delivery.id, Delivery.plugin, Delivery.attempts, Delivery.next_attempt_at,
               Tenant.id.label("tenant_id"), Tenant.plugins_version)
        .join(Tenant, Tenant.id == Delivery.tenant_id)
        .where(Delivery.event_id.in_(event_ids), Delivery.state.in_(("pending", "failed")))
        .order_by(Delivery.event_id, Delivery.id)
    ).all()
    if not rows:
        return []
    conn.execute(
        update(_DELIVERY).where(_DELIVERY.c.id.in_([r.id for r in rows]))
        .values(state="delivered", attempts=_DELIVERY.c.attempts + 1, delivered_at=now, next_attempt_at=None)
    )
    events = {e.id: _parsed(e) for e in conn.execute(
        select(OutboxEvent.id, OutboxEvent.name, OutboxEvent.tenant_id, OutboxEvent.created_at,
               OutboxEvent.actor_id, cast(OutboxEvent.payload, Text).label("payload"))
        .where(OutboxEvent.id.in_({r.event_id for r in rows}))
    )}
    by_event: dict[int, list[Any]] = {}
    for r in rows:
        by_event.setdefault(r.event_id, []).append(r)
    return [
        _Claimed(tenant_id=group[0].tenant_id, plugins_version=group[0].plugins_version, event=events[event_id],
                 ids=[r.id for r in group], plugins=[r.plugin for r in group],
                 attempts=[r.attempts for r in group], due=[r.next_attempt_at for r in group])
        for event_id, group in by_event.items()
    ]


#: :func:`_claim` on PostgreSQL: lock, mark and read in one round trip. ``MATERIALIZED``: the
#: locking read runs once, whatever the planner would do with it.
_PG_CLAIM = text("""
WITH claim AS MATERIALIZED (
    SELECT tenant_id, id, attempts, next_attempt_at FROM core_event_delivery
    WHERE event_id = ANY(CAST(:ids AS bigint[])) AND state IN ('pending', 'failed')
    ORDER BY event_id, id
    FOR UPDATE SKIP LOCKED
), marked AS (
    UPDATE core_event_delivery AS d
    SET state = 'delivered', attempts = claim.attempts + 1, delivered_at = CAST(:now AS timestamptz),
        next_attempt_at = NULL
    FROM claim WHERE d.tenant_id = claim.tenant_id AND d.id = claim.id
    RETURNING d.tenant_id, d.event_id, d.id, d.plugin, claim.attempts, claim.next_attempt_at
)
SELECT e.id, e.name, e.tenant_id, e.created_at, e.actor_id, CAST(e.payload AS text) AS payload,
       t.plugins_version,
       array_agg(m.id ORDER BY m.id) AS ids, array_agg(CAST(m.plugin AS text) ORDER BY m.id) AS plugins,
       array_agg(m.attempts ORDER BY m.id) AS attempts, array_agg(m.next_attempt_at ORDER BY m.id) AS due,
       set_config('synchronous_commit', 'off', true) AS relaxed
FROM marked AS m
JOIN core_event AS e ON e.tenant_id = m.tenant_id AND e.id = m.event_id
JOIN core_tenant AS t ON t.id = m.tenant_id
GROUP BY e.tenant_id, e.id, t.id
ORDER BY e.id
""")


def _parsed(row: Any) -> Event:
    """The :class:`Event` of a row with the event's columns and its payload as JSON text.

    The text is parsed by orjson: the items of an import batch are a
    thousand dicts, and ``json.loads`` was most of a delivery's own time.
    """
    return Event(
        id=row.id, name=row.name, tenant_id=row.tenant_id, created_at=row.created_at, actor_id=row.actor_id,
        items=tuple(MappingProxyType(i) for i in jsontext.loads(row.payload).get("items", [])),
    )


def _call(runtime: Runtime, session: Session, state: Any, event: Event, plugin: str, delivery_id: int) -> None:
    """Call ``plugin``'s handler of ``event`` with no SAVEPOINT; :class:`_HandlerRaised` if it raises."""
    from .context import HookContext

    ctx = HookContext(tenant=state, session=session, actor=None, host=runtime.host, clock=runtime.clock,
                      event_id=event.id)
    try:
        with no_calls(f"plugin {plugin}'s {event.name} handler"):
            runtime.host.single(event.name, plugin)(ctx=ctx, event=event)
            _flush_handler_writes(session)
    except Exception as exc:  # noqa: BLE001 - the caller rolls back and redoes the job the careful way
        raise _HandlerRaised(delivery_id, exc) from exc


def _unmark_skipped(session: Session, tenant_id: int, skipped: list[tuple[_Claimed, int]]) -> None:
    """Deliveries to plugins switched off since the event: ``skipped``, their attempts as they were."""
    session.execute(
        update(_DELIVERY).where(_DELIVERY.c.tenant_id == bindparam("t"), _DELIVERY.c.id == bindparam("d"))
        .values(state="skipped", attempts=bindparam("a"), next_attempt_at=bindparam("due"), delivered_at=None,
                last_error=bindparam("error")),
        [{"t": tenant_id, "d": claim.ids[k], "a": claim.attempts[k], "due": claim.due[k],
          "error": f"plugin {claim.plugins[k]!r} is off for this tenant"} for claim, k in skipped],
    )


def _flush_handler_writes(session: Session) -> None:
    """Flush what a handler wrote before the next handler runs, so a failing write is charged to
    the handler that made it (a savepoint's release did this); the marks alone wait for the commit."""
    if any(not isinstance(o, Delivery) for o in (*session.new, *session.dirty, *session.deleted)):
        session.flush()


def deliver_event(runtime: Runtime, event_id: int, raised: Mapping[int, Exception] | None = None) -> dict[str, int]:
    """Every pending delivery of one event, in one transaction (see :func:`deliver`).

    ``raised``: deliveries whose handler already raised on this attempt (in
    :func:`deliver`'s rolled-back transaction): recorded as failed, not run again.
    """
    counts = {"delivered": 0, "failed": 0, "skipped": 0}
    with runtime.sessions() as session:
        _relaxed_commit(session)
        deliveries = list(session.scalars(
            select(Delivery)
            .where(Delivery.event_id == event_id, Delivery.state.in_(("pending", "failed")))
            .order_by(Delivery.id)
            .with_for_update(skip_locked=True)
        ))
        if not deliveries:
            return counts
        row, state, event = _load(runtime, session, deliveries[0])
        for delivery in deliveries:
            outcome = _run(runtime, session, delivery, row, state, event, raised=(raised or {}).get(delivery.id))
            counts[outcome] += 1
        session.commit()
    return counts


def retry_due(runtime: Runtime, limit: int = 500, tenant_id: int | None = None) -> dict[str, int]:
    """Retry deliveries whose backoff has passed (run by every scheduler tick).

    Also picks up ``pending`` deliveries whose hand-off to the queue was lost
    (a crash between commit and enqueue): the outbox is the source of truth.
    """
    now = runtime.clock()
    stmt = select(Delivery.id).where(
        Delivery.state.in_(("pending", "failed")),
        Delivery.attempts < MAX_ATTEMPTS,
        or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
    )
    if tenant_id is not None:
        stmt = stmt.where(Delivery.tenant_id == tenant_id)
    with runtime.sessions() as session:
        ids = session.scalars(stmt.order_by(Delivery.id).limit(limit)).all()
    counts = {"delivered": 0, "failed": 0, "skipped": 0}
    for delivery_id in ids:
        outcome = deliver_one(runtime, delivery_id)
        if outcome:
            counts[outcome] += 1
    return counts


def deliver_one(runtime: Runtime, delivery_id: int) -> str | None:
    """Run one (event, plugin) delivery in its own transaction (retries use this).

    The row is locked (``SKIP LOCKED`` on PostgreSQL) so two workers never run
    the same delivery at once; the handler's own writes commit together with
    the ``delivered`` mark.
    """
    with runtime.sessions() as session:
        _relaxed_commit(session)
        delivery = session.scalars(
            select(Delivery)
            .where(Delivery.id == delivery_id, Delivery.state.in_(("pending", "failed")))
            .with_for_update(skip_locked=True)
        ).first()
        if delivery is None:
            return None
        row, state, event = _load(runtime, session, delivery)
        outcome = _run(runtime, session, delivery, row, state, event)
        session.commit()
        return outcome


def _relaxed_commit(session: Session) -> None:
    """Commit a delivery without waiting for the WAL flush (PostgreSQL).

    Delivery is at least once: a crash that loses this commit loses the
    handler's writes *and* the ``delivered`` mark together (one transaction),
    so the delivery simply runs again. Nothing else is written here.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit = off"))


def _load(runtime: Runtime, session: Session, delivery: Delivery) -> tuple[OutboxEvent, Any, Event]:
    """The event row, its tenant's plugin state and the read-only :class:`Event`."""
    row = session.get(OutboxEvent, delivery.event_id)
    tenant = session.get(Tenant, delivery.tenant_id)
    assert row is not None and tenant is not None
    state = runtime.host.tenant_state(session, tenant)
    session.info["tenant_id"] = tenant.id
    return row, state, _event(row)


def _event(row: OutboxEvent) -> Event:
    """The read-only :class:`Event` of an outbox row, built once and shared by all its plugins."""
    return Event(
        id=row.id,
        name=row.name,
        tenant_id=row.tenant_id,
        created_at=row.created_at,
        actor_id=row.actor_id,
        items=tuple(MappingProxyType(i) for i in row.payload.get("items", [])),
    )


#: the longest ``last_error`` stored on a delivery
MAX_ERROR = 300


def short_error(exc: BaseException, limit: int = MAX_ERROR) -> str:
    """``Type: message`` on one line, at most ``limit`` characters: what a delivery's ``last_error`` shows.

    Never the traceback: tenant admins read it (``GET /api/v1/deliveries``),
    and a traceback shows the server's paths and code. The log has it.
    """
    message = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _run(runtime: Runtime, session: Session, delivery: Delivery, row: OutboxEvent | Event, state: Any,
         event: Event, *, raised: Exception | None = None) -> str:
    """Call one plugin's handler in a SAVEPOINT and mark the delivery; the caller commits.

    ``raised``: the handler's exception on this attempt, already caught in
    :func:`deliver`'s rolled-back transaction: recorded without calling it again.
    """
    from .context import HookContext

    now = runtime.clock()
    if delivery.plugin != "core" and delivery.plugin not in state.enabled and row.name not in TO_ALL_PLUGINS:
        delivery.state = "skipped"
        delivery.last_error = f"plugin {delivery.plugin!r} is off for this tenant"
        return "skipped"
    attempts = delivery.attempts + 1
    ctx = HookContext(
        tenant=state, session=session, actor=None, host=runtime.host, clock=runtime.clock, event_id=row.id
    )
    try:
        if raised is not None:
            raise raised
        with session.begin_nested(), no_calls(f"plugin {delivery.plugin}'s {row.name} handler"):
            runtime.host.single(row.name, delivery.plugin)(ctx=ctx, event=event)
    except Exception as exc:  # noqa: BLE001 - a plugin's failure is recorded, not raised
        delivery.state = "failed"
        delivery.attempts = attempts
        delivery.last_error = short_error(exc)
        delivery.next_attempt_at = (now + backoff(attempts)) if attempts < MAX_ATTEMPTS else None
        # The traceback (server paths, code) goes to the server's log only;
        # tenant admins read last_error.
        runtime.log.warning(
            "plugin %s failed on event %s #%s (attempt %s): %s",
            delivery.plugin, row.name, row.id, attempts, exc, exc_info=exc,
        )
        return "failed"
    delivery.state = "delivered"
    delivery.attempts = attempts
    delivery.delivered_at = now
    delivery.next_attempt_at = None
    return "delivered"
