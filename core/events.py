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
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, String, Text, bindparam, cast, insert, or_, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from . import jsontext
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
    claims the deliveries with one locking read, reads each event once for all
    its plugins, runs the handlers with no SAVEPOINT and marks the deliveries
    in one flush. Savepoints and per-event transactions cost round trips that
    a batch pays for every plugin on (issue 16).

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
    :class:`_HandlerRaised` once rolled back."""
    counts = {"delivered": 0, "failed": 0, "skipped": 0}
    with runtime.sessions() as session:
        _relaxed_commit(session)
        claimed = session.execute(
            select(Delivery, Tenant)
            .join(Tenant, Tenant.id == Delivery.tenant_id)
            .where(Delivery.event_id.in_(event_ids), Delivery.state.in_(("pending", "failed")))
            .order_by(Delivery.event_id, Delivery.id)
            .with_for_update(of=Delivery, skip_locked=True)
        ).all()
        if not claimed:
            return counts
        tenant = claimed[0][1]
        if any(t is not tenant for _, t in claimed):
            session.rollback()
            return None
        deliveries = [d for d, _ in claimed]
        # The payload as its JSON text, parsed by orjson: the items of an import batch
        # are a thousand dicts, and json.loads was most of this job's own time.
        events = {r.id: Event(
            id=r.id, name=r.name, tenant_id=r.tenant_id, created_at=r.created_at, actor_id=r.actor_id,
            items=tuple(MappingProxyType(i) for i in jsontext.loads(r.payload).get("items", [])),
        ) for r in session.execute(
            select(OutboxEvent.id, OutboxEvent.name, OutboxEvent.tenant_id, OutboxEvent.created_at,
                   OutboxEvent.actor_id, cast(OutboxEvent.payload, Text).label("payload"))
            .where(OutboxEvent.id.in_({d.event_id for d in deliveries}))
        )}
        state = runtime.host.tenant_state(session, tenant)
        session.info["tenant_id"] = tenant.id
        try:
            for delivery in deliveries:
                event = events[delivery.event_id]
                counts[_run(runtime, session, delivery, event, state, event, isolated=False)] += 1
        except _HandlerRaised:
            session.rollback()
            raise
        try:
            session.commit()
        except Exception:  # noqa: BLE001 - the careful way finds whose write it was
            session.rollback()
            return None
    return counts


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
         event: Event, *, isolated: bool = True, raised: Exception | None = None) -> str:
    """Call one plugin's handler in a SAVEPOINT and mark the delivery; the caller commits.

    ``isolated=False`` (:func:`deliver`'s common case): no SAVEPOINT, and a
    handler that raises raises :class:`_HandlerRaised` for the caller to roll
    the whole transaction back. ``raised``: the handler's exception on this
    attempt, already caught there: recorded without calling it again.
    """
    from .context import HookContext

    now = runtime.clock()
    if delivery.plugin != "core" and delivery.plugin not in state.enabled and row.name not in TO_ALL_PLUGINS:
        delivery.state = "skipped"
        delivery.last_error = f"plugin {delivery.plugin!r} is off for this tenant"
        return "skipped"
    attempts = delivery.attempts + 1
    delivery_id = delivery.id  # read now: a failed flush expires it, and the session must roll back first
    ctx = HookContext(
        tenant=state, session=session, actor=None, host=runtime.host, clock=runtime.clock, event_id=row.id
    )
    try:
        if raised is not None:
            raise raised
        with (session.begin_nested() if isolated else nullcontext()), \
                no_calls(f"plugin {delivery.plugin}'s {row.name} handler"):
            runtime.host.single(row.name, delivery.plugin)(ctx=ctx, event=event)
            if not isolated:
                _flush_handler_writes(session)
    except Exception as exc:  # noqa: BLE001 - a plugin's failure is recorded, not raised
        if not isolated:
            raise _HandlerRaised(delivery_id, exc) from exc
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
