"""Run now, in the test's thread, what a worker or the scheduler would run later."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from pelago.core.runtime import Runtime


def deliver_events(runtime: Runtime, tenant_id: int | None = None) -> dict[str, int]:
    """Deliver every pending or failed event delivery now; returns counts by outcome.

    What ``pelago worker`` and the scheduler's retries would do, ignoring the
    backoff of failed deliveries (deliveries that used up their attempts stay
    as they are). Deliveries that the delivered handlers cause are delivered
    too; each delivery is tried at most once per call, so a plugin that keeps
    raising is recorded ``failed`` once more, not retried in a loop.

    Only the deliveries of ``runtime``'s plugins are touched, and with
    ``tenant_id`` only that tenant's: tests share one database, so pass it.
    A runtime without Redis already delivers inline after each commit; this
    is for runtimes made with ``redis=True`` and for retrying failures.
    """
    from sqlalchemy import select

    from pelago.core.events import MAX_ATTEMPTS, deliver_one
    from pelago.core.models import Delivery

    stmt = select(Delivery.id).where(
        Delivery.state.in_(("pending", "failed")),
        Delivery.attempts < MAX_ATTEMPTS,
        Delivery.plugin.in_(["core", *runtime.host.specs]),
    ).order_by(Delivery.id)
    if tenant_id is not None:
        stmt = stmt.where(Delivery.tenant_id == tenant_id)
    counts = {"delivered": 0, "failed": 0, "skipped": 0}
    tried: set[int] = set()
    while True:
        with runtime.sessions() as session:
            due = [i for i in session.scalars(stmt) if i not in tried]
        if not due:
            return counts
        for delivery_id in due:
            tried.add(delivery_id)
            outcome = deliver_one(runtime, delivery_id)
            if outcome:
                counts[outcome] += 1


def run_periodic(runtime: Runtime, plugin: str, job: str, tenant_id: int | None = None) -> dict[int, str]:
    """Run ``plugin``'s periodic ``job`` now, whether or not its period has passed.

    For ``tenant_id`` only, or else for every tenant that has the plugin on
    (tests share one database: pass ``tenant_id``). Returns each tenant's
    outcome: ``"done"``, or ``"skipped"`` when the plugin is off for it. The
    scheduler's record of when the job last ran is not touched. Raises
    ``LookupError`` when the plugin is not in ``runtime`` or has no such job.
    """
    from pelago.core import scheduler

    spec = runtime.host.specs.get(plugin)
    if spec is None:
        raise LookupError(f"plugin {plugin!r} is not in this runtime (it has: {', '.join(runtime.host.specs)})")
    names = [p.name for p in spec.periodic]
    if job not in names:
        raise LookupError(f"plugin {plugin!r} has no periodic job {job!r} (it has: {', '.join(names) or 'none'})")
    tenants = [tenant_id] if tenant_id is not None else scheduler.tenants_with(runtime, plugin)
    return {t: scheduler.run_periodic(runtime, t, plugin, job) for t in tenants}


def scheduler_tick(runtime: Runtime, tenant_id: int | None = None) -> list[tuple[int, str]]:
    """One tick of the scheduler, as ``pelago scheduler`` makes every few seconds.

    Starts every periodic job whose period is due for each tenant that has
    its plugin on (each period once: a second tick in the same period starts
    nothing) and runs them (inline without Redis). Returns the
    ``(tenant_id, "<plugin>.<job>")`` started, only ``tenant_id``'s when
    given (tests share one database). Move the test's ``clock`` to reach the
    next period.
    """
    from pelago.core import scheduler

    started = [(s.tenant_id, f"{s.plugin}.{s.job}") for s in scheduler.tick(runtime)]
    return [s for s in started if tenant_id is None or s[0] == tenant_id]
