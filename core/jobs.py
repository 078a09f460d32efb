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
    from .context import HookContext
    from .runtime import Runtime
    from .spec import Job

JobFunc = Callable[..., Any]


def _deliver(runtime: Runtime, event_ids: list[int]) -> dict[str, int]:
    from .events import deliver

    return deliver(runtime, event_ids)


def _retry_deliveries(runtime: Runtime) -> dict[str, int]:
    from .events import retry_due

    return retry_due(runtime)


def _send_posts(runtime: Runtime, ids: list[int] | None = None) -> dict[str, int]:
    from .posts import send_posts

    return send_posts(runtime, ids)


def _periodic(runtime: Runtime, tenant_id: int, plugin: str, job: str) -> str:
    from .scheduler import run_periodic

    return run_periodic(runtime, tenant_id, plugin, job)


def _import(runtime: Runtime, tenant_id: int, import_id: int) -> dict[str, Any]:
    from .services.imports import run_import

    return run_import(runtime, tenant_id, import_id)


def _resume_imports(runtime: Runtime, lost_queue: bool = False) -> int:
    from .services.imports import resume_stalled

    return resume_stalled(runtime, lost_queue=lost_queue)


def _route_submissions(runtime: Runtime, helper: bool = False) -> dict[str, int]:
    from .services.submissions import route_job

    return route_job(runtime, helper=helper)


def _retention(runtime: Runtime) -> dict[str, int]:
    from .retention import sweep

    return sweep(runtime)


def _plugin_job(runtime: Runtime, tenant_id: int, job: str, kwargs: dict[str, Any]) -> Any:
    """A plugin's :class:`~pelago.core.spec.Job` for one tenant; skipped if the plugin is off for it."""
    plugin, spec = find(runtime, job)
    with runtime.tenant_context(tenant_id) as ctx:
        if plugin not in ctx.tenant.enabled:
            return "skipped: plugin off for the tenant"
        return spec.func(ctx, **kwargs)


#: The core's jobs. Plugins' jobs are declared on their ``PluginSpec.jobs`` and run through ``plugin_job``.
JOBS: dict[str, JobFunc] = {
    "deliver": _deliver,
    "retry_deliveries": _retry_deliveries,
    "send_posts": _send_posts,
    "periodic": _periodic,
    "resume_imports": _resume_imports,
    "import": _import,
    "route_submissions": _route_submissions,
    "retention": _retention,
    "plugin_job": _plugin_job,
}
#: rq's default of 180 s is too short for these (a 20 MiB CSV import)
TIMEOUTS: dict[str, int] = {"import": 3600}
PENDING_KEY = "pelago_jobs"
#: jobs on rq's ``<name>-intake`` queue, which workers take before the others and run in their own
#: process (``pelago worker``, :mod:`pelago.core.worker`)
INTAKE_JOBS = frozenset({"route_submissions"})
#: the suffix of that queue's name
INTAKE_SUFFIX = "-intake"


def find(runtime: Runtime, job: str) -> tuple[str, Job]:
    """The deployed plugin and :class:`Job` called ``"<plugin>.<name>"``; ``NotFound`` otherwise."""
    plugin, _, name = job.partition(".")
    spec = runtime.host.specs.get(plugin)
    found = next((j for j in spec.jobs if j.name == name), None) if spec is not None else None
    if found is None:
        raise NotFound(f"no job called {job!r} (a plugin job is '<plugin>.<name>', declared on PluginSpec.jobs)")
    return plugin, found


def defer(ctx: HookContext, job: str, kwargs: dict[str, Any]) -> None:
    """Remember ``job`` for this tenant until the session's transaction commits (see ``Runtime``)."""
    plugin, _, name = job.partition(".")
    spec = ctx.host.specs.get(plugin)
    if spec is None or not any(j.name == name for j in spec.jobs):
        raise NotFound(f"no job called {job!r} (a plugin job is '<plugin>.<name>', declared on PluginSpec.jobs)")
    session = ctx.session
    txn = session.get_nested_transaction() or session.get_transaction()
    session.info.setdefault(PENDING_KEY, []).append(
        (txn, {"tenant_id": ctx.tenant.id, "job": job, "kwargs": dict(kwargs)})
    )


def take_deferred(session: Any) -> list[dict[str, Any]]:
    """Plugin jobs deferred in the transaction just committed (and forget them)."""
    return [job for _, job in session.info.pop(PENDING_KEY, [])]


def drop_deferred(session: Any, rolled_back: Any) -> None:
    """Forget the jobs deferred in ``rolled_back`` (a transaction or a SAVEPOINT) and inside it."""
    pending = session.info.get(PENDING_KEY)
    if not pending:
        return  # the common case: no job was deferred

    def inside(txn: Any) -> bool:
        while txn is not None:
            if txn is rolled_back:
                return True
            txn = txn.parent
        return False

    kept = [(txn, job) for txn, job in pending if not inside(txn)]
    if kept:
        session.info[PENDING_KEY] = kept
    else:
        session.info.pop(PENDING_KEY, None)


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

    def kick(self, name: str, slot: int = 0) -> None:
        """Run ``name`` now (inline there is nothing to coalesce); a helper (``slot`` > 0) would only
        run after the job that asked for it, so none is started."""
        if not slot:
            self.enqueue(name)

    def settle(self, name: str, slot: int = 0) -> None:
        """Nothing to clear: see :meth:`ThreadQueue.settle`."""


class ThreadQueue:
    """Runs jobs on a background thread of this process (``pelago serve`` without Redis).

    The request that enqueued a job has answered by the time the job runs,
    so a slow webhook or a big import never holds a caller. Jobs run one at
    a time, in order. A job lost with the process is not lost work: its
    events stay pending in the outbox, and the scheduler's retry job
    delivers them; a queued import is queued again when the embedded
    server starts (``resume_imports`` with ``lost_queue``) and by the
    scheduler once its hand-off lease passed.
    """

    def __init__(self, runtime: Runtime) -> None:
        import queue
        import threading

        self.runtime = runtime
        self._jobs: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="pelago-jobs", daemon=True)
        self._thread.start()

    def enqueue(self, name: str, **kwargs: Any) -> None:
        self._jobs.put((name, kwargs))

    def kick(self, name: str, slot: int = 0) -> None:
        """Enqueue the argument-less job ``name`` unless it is queued and has not settled yet.

        A burst of webhooks then queues one router, not one per request; the
        job calls :meth:`settle` once it has drained, and drains once more.
        One thread runs jobs one at a time, so a helper (``slot`` > 0) is not started.
        """
        if slot:
            return
        with self._lock:
            if name in self._pending:
                return
            self._pending.add(name)
        self.enqueue(name)

    def settle(self, name: str, slot: int = 0) -> None:
        """The job ``name`` has drained: the next :meth:`kick` enqueues it again."""
        if slot:
            return
        with self._lock:
            self._pending.discard(name)

    def join(self) -> None:
        """Wait until every job enqueued so far has run (tests, shutdown)."""
        self._jobs.join()

    def _work(self) -> None:
        while True:
            item = self._jobs.get()
            try:
                if item is not None:
                    name, kwargs = item
                    run(name, kwargs, self.runtime)
            except Exception:  # noqa: BLE001 - a job's failure must not stop the thread
                self.runtime.log.exception("background job %s failed", item[0] if item else "?")
            finally:
                self._jobs.task_done()


class RqQueue:
    """Hands jobs to rq; ``pelago worker`` runs them."""

    #: seconds an emptied router waits for more submissions before its job ends (the next one costs
    #: rq's bookkeeping and a worker's wake-up; ``pelago worker`` no longer forks for it)
    LINGER = 1.0

    def __init__(self, runtime: Runtime, redis_url: str, name: str = "pelago") -> None:
        from redis import Redis
        from rq import Queue

        self.runtime = runtime
        # Bounded waits: a Redis that hangs must not hold a request after its commit
        # (the enqueue fails, is logged, and the retry job delivers later).
        self.redis = Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5)
        self.rq = Queue(name, connection=self.redis)
        # Routing accepted webhooks must not wait behind a backlog of deliveries: its own queue,
        # which ``pelago worker`` takes first.
        self.intake = Queue(f"{name}{INTAKE_SUFFIX}", connection=self.redis)

    def kick(self, name: str, slot: int = 0) -> None:
        """Enqueue the job ``name`` unless one is pending (a Redis flag, shared by every process; it
        expires after a minute, should a worker die holding it). ``slot`` 1 is its helper
        (``helper=True``, a flag of its own): a second worker runs it beside the first, but only
        while no other job waits (deliveries, imports and plugins' jobs are not starved by it)."""
        try:
            if slot and self.rq.count:
                return
            fresh = self.redis.set(self._flag(name, slot), "1", nx=True, ex=60)
        except Exception:  # noqa: BLE001 - a flag we cannot read is a job too many, not one too few
            fresh = True
        if fresh:
            if slot:
                self.enqueue(name, helper=True)
            else:
                self.enqueue(name)

    def settle(self, name: str, slot: int = 0) -> None:
        """The job ``name`` (or its helper) has drained: the next :meth:`kick` enqueues it again."""
        self.redis.delete(self._flag(name, slot))

    def _flag(self, name: str, slot: int) -> str:
        return f"pelago:kick:{self.rq.name}:{name}" + (f":{slot}" if slot else "")

    def enqueue(self, name: str, **kwargs: Any) -> Any:
        timeout = TIMEOUTS.get(name)
        label = name
        if name == "plugin_job":
            label = kwargs["job"]
            timeout = find(self.runtime, label)[1].timeout
        queue = self.intake if name in INTAKE_JOBS else self.rq
        return queue.enqueue(
            "pelago.core.jobs.run", name, kwargs, description=f"pelago:{label}", job_timeout=timeout
        )
