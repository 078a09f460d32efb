"""Everything a request, a job or a command needs, built once per app.

:class:`Runtime` ties the plugin host, the database and the job queue
together. The Flask app keeps one in ``app.extensions["pelago"]``; the worker
and the scheduler build the same from the same configuration.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from .clock import Clock, system_clock
from .context import Actor, HookContext, TenantState
from .db import TenantSession, make_sessionmaker
from .errors import NotFound
from .events import take_pending
from .host import PluginHost
from .jobs import drop_deferred, find, take_deferred
from .models import Tenant
from .posts import take_pending as take_posts
from .retention import Retention
from .services.submissions import KICK as ROUTE_KICK
from .services.submissions import ROUTE_JOB

_current: ContextVar[Runtime | None] = ContextVar("pelago_runtime", default=None)


class Runtime:
    """The plugin host, the sessions, the clock and the job queue of one app."""

    def __init__(
        self,
        host: PluginHost,
        engine: Engine,
        *,
        redis_url: str | None = None,
        clock: Clock = system_clock,
        queue_name: str = "pelago",
        background: bool = False,
        retention: Retention | None = None,
    ) -> None:
        """``background``: without Redis, run jobs on a thread of this process
        (:class:`~pelago.core.jobs.ThreadQueue`, the embedded server) instead of
        inline in the caller's thread (commands, tests). ``retention``: how long
        done submissions and posts are kept (:mod:`~pelago.core.retention`);
        ``None`` (a runtime built by hand: tests, embedders) starts no retention
        job, so nothing is deleted behind a test that moves its clock by months.
        ``build_runtime`` always gives one, from the settings."""
        from .jobs import InlineQueue, RqQueue, ThreadQueue

        self.host = host
        self.engine = engine
        self._pid = os.getpid()
        self.clock = clock
        self.log = logging.getLogger("pelago")
        self.sessions = make_sessionmaker(engine)
        self.retention = retention
        #: when this process's scheduler tick last started the retention job
        self.retention_started_at: datetime | None = None
        self.queue: InlineQueue | ThreadQueue | RqQueue
        if redis_url:
            self.queue = RqQueue(self, redis_url, queue_name)
        else:
            self.queue = ThreadQueue(self) if background else InlineQueue(self)
        event.listen(self.sessions, "after_commit", self._after_commit)
        event.listen(self.sessions, "after_soft_rollback", self._after_rollback)

    def after_fork(self) -> None:
        """In a forked process (rq's work horse), drop the parent's connections.

        Pooled connections must not be shared across a fork; ``close=False``
        leaves the parent's sockets alone and makes this process open its own.
        """
        if os.getpid() != self._pid:
            self.engine.dispose(close=False)
            self._pid = os.getpid()

    # --- sessions ----------------------------------------------------------

    def _after_commit(self, session: Session) -> None:
        if session.in_nested_transaction():
            return  # a SAVEPOINT released: the outer transaction is still open
        ids = take_pending(session)
        if ids:
            try:
                self.queue.enqueue("deliver", event_ids=ids)
            except Exception:  # noqa: BLE001 - the change is committed; retries will deliver
                self.log.exception("could not hand events %s to the queue; the retry job will", ids)
        posts = take_posts(session)
        if posts:
            try:
                self.queue.enqueue("send_posts", ids=posts)
            except Exception:  # noqa: BLE001 - the posts are in their table; the scheduler's tick sends them
                self.log.exception("could not hand posts %s to the queue; the scheduler's tick will", posts)
        if session.info.pop(ROUTE_KICK, False):
            try:
                self.queue.kick(ROUTE_JOB)  # accepted webhook submissions: a router takes them
            except Exception:  # noqa: BLE001 - they are stored; the scheduler's tick starts a router too
                self.log.exception("could not start a router for the accepted submissions; the tick will")
        for job in take_deferred(session):
            try:
                self.queue.enqueue("plugin_job", **job)
            except Exception:  # noqa: BLE001 - the change is committed: say so loudly, whatever failed
                self.log.exception("job %s for tenant %s failed to run or to be queued (inline queue: it ran "
                                   "and raised)", job["job"], job["tenant_id"])

    def _after_rollback(self, session: Session, previous: Any) -> None:
        # Only the outermost rollback discards the events; ids from a rolled
        # back SAVEPOINT may stay listed: delivering them finds nothing to do.
        # Jobs have no row to find: those of a rolled back SAVEPOINT go too.
        if previous.parent is None:
            take_pending(session)
            take_posts(session)
            session.info.pop(ROUTE_KICK, None)
        drop_deferred(session, previous)

    def tenant_session(self, tenant_id: int) -> TenantSession:
        """A session whose ORM queries only see ``tenant_id``'s rows."""
        session = self.sessions()
        session.info["tenant_id"] = tenant_id
        return session

    @contextmanager
    def tenant_context(
        self, tenant_id: int, actor: Actor | None = None
    ) -> Iterator[HookContext]:
        """A hook context on a fresh tenant session (for jobs and commands).

        Commits on success, rolls back on error.
        """
        with self.tenant_session(tenant_id) as session:
            tenant = session.get(Tenant, tenant_id)
            if tenant is None:
                raise NotFound(f"no tenant {tenant_id}")
            ctx = self.context(session, self.host.tenant_state(session, tenant), actor)
            try:
                yield ctx
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def enqueue(self, tenant_id: int, job: str, **kwargs: Any) -> Any:
        """Hand the plugin job ``job`` (``"<plugin>.<name>"``) for ``tenant_id`` to the queue now.

        For commands and scripts; inside a transaction use ``ctx.enqueue``,
        which waits for the commit.
        """
        find(self, job)
        return self.queue.enqueue("plugin_job", tenant_id=tenant_id, job=job, kwargs=dict(kwargs))

    def context(self, session: Session, state: TenantState, actor: Actor | None) -> HookContext:
        return HookContext(tenant=state, session=session, actor=actor, host=self.host, clock=self.clock)

    def tenant_by_slug(self, slug: str) -> Tenant:
        with self.sessions() as session:
            tenant = session.scalars(select(Tenant).where(Tenant.slug == slug)).first()
            if tenant is None:
                raise NotFound(f"no tenant with slug {slug!r}")
            return tenant

    # --- process-wide current runtime (workers) ----------------------------

    @contextmanager
    def activated(self) -> Iterator[Runtime]:
        """Make this the runtime that queued jobs run against, in this context."""
        token = _current.set(self)
        try:
            yield self
        finally:
            _current.reset(token)


def current_runtime() -> Runtime:
    runtime = _current.get()
    if runtime is None:
        raise RuntimeError("no Pelago runtime is active in this process (start jobs with `pelago worker`)")
    return runtime


def activate(runtime: Runtime) -> None:
    """Set the runtime for the rest of this context (a worker process's main thread)."""
    _current.set(runtime)


def find_tenant(runtime: Runtime, slug: str) -> int:
    """The id of the tenant called ``slug``; :class:`~pelago.core.errors.NotFound` if there is none."""
    return runtime.tenant_by_slug(slug).id


@contextmanager
def tenant_context(runtime: Runtime, tenant: int | str, actor: Actor | None = None) -> Iterator[HookContext]:
    """A hook context for ``tenant`` (an id or a slug) on a fresh session; commits on success.

    For commands, scripts and tests; inside a hook or a route you have ``ctx``.
    """
    tenant_id = find_tenant(runtime, tenant) if isinstance(tenant, str) else tenant
    with runtime.tenant_context(tenant_id, actor) as ctx:
        yield ctx
