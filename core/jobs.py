"""Background jobs: run inline in the embedded mode, through rq with ``REDIS_URL``.

Jobs are enqueued by name with JSON-able keyword arguments, never as pickled
functions, so a queued job survives a deploy and says what it is in rq's UI.
A worker process runs them against its own :class:`~pelago.core.runtime.Runtime`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import NotFound

if TYPE_CHECKING:  # pragma: no cover
    from .runtime import Runtime

JobFunc = Callable[..., Any]


def _deliver(runtime: Runtime, event_ids: list[int]) -> dict[str, int]:
    from .events import deliver

    return deliver(runtime, event_ids)


def _retry_deliveries(runtime: Runtime) -> dict[str, int]:
    from .events import retry_due

    return retry_due(runtime)


def _periodic(runtime: Runtime, tenant_id: int, plugin: str, job: str) -> str:
    from .scheduler import run_periodic

    return run_periodic(runtime, tenant_id, plugin, job)


def _import(runtime: Runtime, tenant_id: int, import_id: int) -> dict[str, Any]:
    from .services.imports import run_import

    return run_import(runtime, tenant_id, import_id)


JOBS: dict[str, JobFunc] = {
    "deliver": _deliver,
    "retry_deliveries": _retry_deliveries,
    "periodic": _periodic,
    "import": _import,
}
#: rq's default of 180 s is too short for these (a 20 MiB CSV import)
TIMEOUTS: dict[str, int] = {"import": 3600}


def register_job(name: str, func: JobFunc) -> None:
    """Make ``func(runtime, **kwargs)`` enqueueable by ``name`` (plugins: ``<plugin>.<job>``)."""
    JOBS[name] = func


def run(name: str, kwargs: dict[str, Any], runtime: Runtime | None = None) -> Any:
    """Run the job ``name``; the entry point rq calls in a worker."""
    from .runtime import current_runtime

    func = JOBS.get(name)
    if func is None:
        raise NotFound(f"no job called {name!r}")
    runtime = runtime or current_runtime()
    runtime.after_fork()
    return func(runtime, **kwargs)


class InlineQueue:
    """Runs each job at once, in the caller's thread (embedded mode, tests)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def enqueue(self, name: str, **kwargs: Any) -> Any:
        return run(name, kwargs, self.runtime)


class RqQueue:
    """Hands jobs to rq; ``pelago worker`` runs them."""

    def __init__(self, runtime: Runtime, redis_url: str, name: str = "pelago") -> None:
        from redis import Redis
        from rq import Queue

        self.runtime = runtime
        self.redis = Redis.from_url(redis_url)
        self.rq = Queue(name, connection=self.redis)

    def enqueue(self, name: str, **kwargs: Any) -> Any:
        return self.rq.enqueue(
            "pelago.core.jobs.run", name, kwargs, description=f"pelago:{name}", job_timeout=TIMEOUTS.get(name)
        )
