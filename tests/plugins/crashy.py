"""Test plugin for tests/test_faults.py: a ``lead_created`` handler with effects, that can stall to be killed.

Deployed as an ``extra`` PluginSpec (no entry point, no tables), in the test's
app and in real worker processes (``python -m tests.plugins.crashy DB REDIS QUEUE``
runs ``pelago worker --burst`` with it deployed). Off by default: a test turns it on
for its own tenant, so the scheduler's ticks start its periodic job for no other.

Its handler, for each new lead:

1. appends ``ctx.event_id`` to the Redis list ``<prefix>:calls`` (every call:
   delivery is at least once);
2. does an outside effect once per event: ``SET <prefix>:effect:<event_id> NX``,
   then ``INCR <prefix>:effects`` only if it was the first (idempotent on
   ``ctx.event_id``, as docs/hooks.md asks of handlers);
3. logs one ``note`` activity on the lead (a database effect, in the
   delivery's transaction, so it commits with the ``delivered`` mark or not at all);
4. while ``<prefix>:block`` exists, says where it is (``RPUSH <prefix>:inside``
   with its pid and its PostgreSQL backend's pid) and waits for
   ``<prefix>:release`` (at most 60 s), which no test sends: the test kills it there.

Its ``choose_team`` (asked once per batch of an import, inside the batch's
transaction) counts the batches in ``<prefix>:batches`` while
``<prefix>:block_import`` exists, and at the batch that key names says where
it is (``<prefix>:inside``) and waits as above: the test kills the rq work
horse there, in the middle of the import. ``PELAGO_FAULTS_IMPORT_BATCH``
sets the worker's import batch size.

Redis and the key prefix come from ``PELAGO_FAULTS_REDIS`` and
``PELAGO_FAULTS_PREFIX``; without them only step 3 runs. A periodic job
``tick`` does nothing (the scheduler tests only look at its starts).
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from typing import Any

from sqlalchemy import text

from pelago.plugin import NewActivity, Periodic, PluginSpec, hookimpl, log_activities


def _redis() -> tuple[Any, str] | None:
    url = os.environ.get("PELAGO_FAULTS_REDIS")
    if not url:
        return None
    from redis import Redis

    return Redis.from_url(url, socket_timeout=90), os.environ["PELAGO_FAULTS_PREFIX"]


def note(event_id: int) -> str:
    return f"crashy saw event {event_id}"


class Hooks:
    @staticmethod
    @hookimpl
    def lead_created(ctx: Any, event: Any) -> None:
        control = _redis()
        if control is not None:
            r, prefix = control
            r.rpush(f"{prefix}:calls", ctx.event_id)
            if r.set(f"{prefix}:effect:{ctx.event_id}", 1, nx=True):
                r.incr(f"{prefix}:effects")
        log_activities(ctx, [NewActivity(lead_id=item["lead_id"], kind="note", note=note(ctx.event_id))
                             for item in event.items])
        if control is not None and r.exists(f"{prefix}:block"):
            _stall(ctx, r, prefix, {"event_id": ctx.event_id})


    @staticmethod
    @hookimpl
    def choose_team(ctx: Any, leads: Any) -> None:
        control = _redis()
        if control is None:
            return None
        r, prefix = control
        stop_at = r.get(f"{prefix}:block_import")
        if stop_at is not None and r.incr(f"{prefix}:batches") == int(stop_at):
            _stall(ctx, r, prefix, {"import": True})
        return None


def _stall(ctx: Any, r: Any, prefix: str, what: dict[str, Any]) -> None:
    """Say where this process is (its pid, its PostgreSQL backend) and wait to be killed."""
    ctx.session.flush()
    backend = ctx.session.execute(text("SELECT pg_backend_pid()")).scalar() \
        if ctx.session.get_bind().dialect.name == "postgresql" else None
    r.rpush(f"{prefix}:inside", json.dumps({"pid": os.getpid(), "backend": backend, **what}))
    r.blpop([f"{prefix}:release"], timeout=60)


def tick(ctx: Any) -> None:
    """Nothing to do: tests count the scheduler's starts of it."""


plugin = PluginSpec(
    name="crashy", title="Crashy", description="test plugin: a handler that can be killed mid-delivery",
    version="0.1.0", core=">=0.1", hooks=Hooks, default_enabled=False,
    periodic=(Periodic("tick", tick, timedelta(minutes=5)),),
)


def worker(db_url: str, redis_url: str, queue: str) -> None:
    """``pelago worker --burst --queue QUEUE`` (the real command) with this plugin deployed."""
    from pelago.core.db import make_engine
    from pelago.core.host import PluginHost
    from pelago.core.runtime import Runtime
    from pelago.hostapp.cli import main

    os.environ["REDIS_URL"] = redis_url
    if os.environ.get("PELAGO_FAULTS_IMPORT_BATCH"):
        from pelago.core.services import imports

        imports.BATCH = int(os.environ["PELAGO_FAULTS_IMPORT_BATCH"])
    runtime = Runtime(PluginHost(("crashy",), strict=True, extra=(plugin,)), make_engine(db_url),
                      redis_url=redis_url, queue_name=queue)
    main(["worker", "--burst", "--queue", queue], obj={"runtime": runtime})


if __name__ == "__main__":
    worker(*sys.argv[1:4])
