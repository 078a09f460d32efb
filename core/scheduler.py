"""Periodic jobs: which are due, for which tenants, started once per period.

``tick`` is what ``pelago scheduler`` (and the embedded server's background
thread) calls every few seconds. A job is due for a tenant when the plugin is
on for it and its period has passed since the last start; the start is claimed
with a conditional write on ``core_periodic_run``, so several schedulers can
run side by side without starting a period twice.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from .models import PeriodicRun, Tenant, TenantPlugin

if TYPE_CHECKING:  # pragma: no cover
    from .runtime import Runtime


@dataclass(frozen=True)
class Started:
    tenant_id: int
    plugin: str
    job: str


def tenants_with(runtime: Runtime, plugin: str) -> list[int]:
    """Ids of the tenants that have ``plugin`` on (explicitly, or by its default)."""
    spec = runtime.host.spec(plugin)
    with runtime.sessions() as session:
        if spec.default_enabled:
            col = Tenant.id
            stmt = (
                select(Tenant.id)
                .outerjoin(
                    TenantPlugin,
                    and_(TenantPlugin.tenant_id == Tenant.id, TenantPlugin.plugin == plugin),
                )
                .where(or_(TenantPlugin.enabled.is_(None), TenantPlugin.enabled.is_(True)))
            )
        else:
            col = TenantPlugin.tenant_id
            stmt = select(TenantPlugin.tenant_id).where(
                TenantPlugin.plugin == plugin, TenantPlugin.enabled.is_(True)
            )
        return list(session.scalars(stmt.order_by(col)))


def claim(runtime: Runtime, tenant_id: int, job: str, now: datetime, every_seconds: float) -> bool:
    """Start ``job``'s period for the tenant if it is due; ``True`` if we won it."""
    from datetime import timedelta

    with runtime.sessions() as session:
        won = session.execute(  # type: ignore[attr-defined]  # a CursorResult
            update(PeriodicRun)
            .where(
                PeriodicRun.tenant_id == tenant_id,
                PeriodicRun.job == job,
                PeriodicRun.last_run_at <= now - timedelta(seconds=every_seconds),
            )
            .values(last_run_at=now)
        ).rowcount
        if won:
            session.commit()
            return True
        exists = session.scalar(
            select(PeriodicRun.id).where(PeriodicRun.tenant_id == tenant_id, PeriodicRun.job == job)
        )
        if exists is not None:
            return False
        try:
            session.execute(insert(PeriodicRun).values(tenant_id=tenant_id, job=job, last_run_at=now))
            session.commit()
            return True
        except IntegrityError:  # another scheduler inserted it first
            session.rollback()
            return False


def unclaim(runtime: Runtime, tenant_id: int, job: str, now: datetime, every_seconds: float) -> None:
    """Undo :func:`claim` of the period started at ``now`` (if nobody moved it since): due again."""
    from datetime import timedelta

    with runtime.sessions() as session:
        session.execute(
            update(PeriodicRun)
            .where(PeriodicRun.tenant_id == tenant_id, PeriodicRun.job == job, PeriodicRun.last_run_at == now)
            .values(last_run_at=now - timedelta(seconds=every_seconds))
        )
        session.commit()


def tick(runtime: Runtime) -> list[Started]:
    """Enqueue every periodic job that is due now; returns what was started."""
    now = runtime.clock()
    started: list[Started] = []
    for spec in runtime.host.specs.values():
        if not spec.periodic:
            continue
        tenants = tenants_with(runtime, spec.name)
        for periodic in spec.periodic:
            key = f"{spec.name}.{periodic.name}"
            for tenant_id in tenants:
                every = periodic.every.total_seconds()
                if claim(runtime, tenant_id, key, now, every):
                    try:
                        runtime.queue.enqueue("periodic", tenant_id=tenant_id, plugin=spec.name, job=periodic.name)
                    except Exception:
                        # Not handed over (Redis down): give the period back, so the
                        # next tick starts it instead of skipping a whole period.
                        unclaim(runtime, tenant_id, key, now, every)
                        raise
                    started.append(Started(tenant_id, spec.name, periodic.name))
    runtime.queue.enqueue("retry_deliveries")
    runtime.queue.enqueue("send_posts")  # queued posts whose hand-off was lost, and retries
    runtime.queue.enqueue("resume_imports")  # imports whose worker died
    runtime.queue.enqueue("route_submissions")  # webhook submissions whose router died (lease expired)
    last = runtime.retention_started_at
    if runtime.retention is not None and (last is None or now - last >= runtime.retention.every):
        # once per period and process: several schedulers only mean a few more empty sweeps
        runtime.retention_started_at = now
        runtime.queue.enqueue("retention")  # done submissions and posts past their days
    return started


def run_periodic(runtime: Runtime, tenant_id: int, plugin: str, job: str) -> str:
    """Run one plugin's periodic job for one tenant, unless the plugin is now off."""
    spec = runtime.host.spec(plugin)
    periodic = next((p for p in spec.periodic if p.name == job), None)
    if periodic is None:
        return "unknown"
    with runtime.tenant_context(tenant_id) as ctx:
        if plugin not in ctx.tenant.enabled:
            return "skipped"
        periodic.func(ctx)
    return "done"


class BackgroundScheduler:
    """Calls :func:`tick` every ``interval`` seconds on a daemon thread (embedded mode)."""

    def __init__(self, runtime: Runtime, interval: float = 15.0) -> None:
        self.runtime = runtime
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pelago-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                tick(self.runtime)
            except Exception:  # noqa: BLE001 - a bad tick must not kill the server
                self.runtime.log.exception("periodic tick failed")
            self._stop.wait(self.interval)
