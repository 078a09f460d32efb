"""The rq worker that ``pelago worker`` runs: routers in the worker's own process, other jobs forked.

rq's :class:`~rq.Worker` forks a *work horse* per job, so a job starts with
the worker's memory as it was before any job ran: no pooled database
connection, no compiled statements, no tenant settings or routing caches
loaded. For a delivery or an import that start (tens of milliseconds, more
under load) is lost in the job's own time. For a webhook router it was the
routed latency's tail: a fresh horse's first batch took about a second
(1.0–1.3 s for 21–89 rows against 0.1–0.4 s warm, ``bench/intake_http``
traced per batch, load average 6–27), and every burst after a pause began
with one, twice when the helper router started.

:class:`PelagoWorker` runs the jobs of the routers' queue (``<name>-intake``,
:data:`~pelago.core.jobs.INTAKE_SUFFIX`) in its own process, as rq's
``SimpleWorker`` runs every job: the second and later routers find the
connections, statements and caches the first left. Every other job is
forked as before (a plugin's job or event handler cannot leave state behind in
the worker; the routers do call plugins' routing hooks here, so a plugin
keeps no per-call state in module globals, as in any threaded app server). The guarantees do not depend on the process a router runs in: a
router killed with its worker (SIGKILL) leaves its batch leased and
uncommitted, and the next router takes it once the lease expires, as when a
work horse is killed.

:func:`warm` pays part of the very first router's start-up when the worker
starts (a first batch of 20 rows in a fresh process: 0.37 s warmed against
0.48–0.59 s cold, 0.11–0.18 s for the next; the rest is statements and
caches only a real batch fills).
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any

from rq import Worker
from rq.defaults import DEFAULT_WORKER_TTL
from rq.worker import WorkerStatus

from .jobs import INTAKE_SUFFIX

if TYPE_CHECKING:  # pragma: no cover
    from .runtime import Runtime


def in_process(queue_name: str) -> bool:
    """Whether jobs of ``queue_name`` run in the worker's process (the routers' queue)."""
    return queue_name.endswith(INTAKE_SUFFIX)


class PelagoWorker(Worker):
    """rq's forking worker, except that the routers' queue runs in this process (see the module)."""

    def execute_job(self, job: Any, queue: Any) -> None:
        if not in_process(queue.name):
            super().execute_job(job, queue)
            return
        execution = self.prepare_execution(job)
        self.perform_job(job, queue, execution)
        self.set_state(WorkerStatus.IDLE)

    def kill_horse(self, sig: signal.Signals = signal.SIGKILL) -> None:  # rq's default signal too
        """No horse to kill while a router runs in this process (rq's would ``killpg`` this worker's own
        group, for ``stop-job`` or a timeout); a forked job's horse is killed as rq does."""
        if self.horse_pid:
            super().kill_horse(sig)

    def get_heartbeat_ttl(self, job: Any, working_time: float = 0.0) -> int:
        """As ``SimpleWorker``'s for a job run in this process: nothing renews the heartbeat while it
        runs, so it lasts the job's whole timeout (a forked job's is renewed while the worker waits)."""
        if not in_process(job.origin):
            return int(super().get_heartbeat_ttl(job, working_time))
        if job.timeout == -1:
            return DEFAULT_WORKER_TTL
        return int(job.timeout or DEFAULT_WORKER_TTL) + 60


def warm(runtime: Runtime) -> None:
    """Pay what a router pays once per process at the worker's start, not in a webhook's latency: the
    intake line's modules imported, the ORM's mappers configured, one pooled database connection open."""
    from sqlalchemy import text
    from sqlalchemy.orm import configure_mappers

    from .services import intake, submissions  # noqa: F401 - imported for their import's cost

    configure_mappers()
    try:
        with runtime.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - the database down at start: the worker starts anyway, jobs retry
        runtime.log.warning("could not open a database connection at the worker's start", exc_info=True)
