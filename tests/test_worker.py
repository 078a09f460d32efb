"""``pelago worker``'s rq worker (``core/worker.py``): the routers' queue runs in the worker's own process
(warm connections and caches, no fork per router), every other job in a forked work horse as before."""

from __future__ import annotations

import os
import uuid

import pytest

from pelago.core.jobs import INTAKE_SUFFIX
from pelago.core.worker import PelagoWorker, in_process


@pytest.mark.redis
def test_router_jobs_run_in_the_workers_process_and_other_jobs_in_a_work_horse(redis_url):
    from redis import Redis
    from rq import Queue

    redis = Redis.from_url(redis_url)
    name = f"pelago-test-{uuid.uuid4().hex[:8]}"  # a queue of the test's own (others share this Redis)
    intake, other = Queue(f"{name}{INTAKE_SUFFIX}", connection=redis), Queue(name, connection=redis)
    try:
        routers = [intake.enqueue(os.getpid) for _ in range(2)]
        delivery = other.enqueue(os.getpid)
        worker = PelagoWorker([intake, other], connection=redis)
        worker.work(burst=True)
        # Both router jobs ran here, one after the other in the same process: the second finds the first's
        # connections and caches. The other queue's job ran in a child, as rq's Worker runs every job.
        assert [job.return_value() for job in routers] == [os.getpid(), os.getpid()]
        assert delivery.return_value() not in (None, os.getpid())
        assert worker.get_heartbeat_ttl(routers[0]) >= 180  # a long router is not taken for a dead worker
    finally:
        for key in redis.keys(f"*{name}*"):
            redis.delete(key)


def test_only_the_routers_queue_runs_in_process():
    assert in_process(f"pelago{INTAKE_SUFFIX}") and in_process(f"acme{INTAKE_SUFFIX}")
    assert not in_process("pelago") and not in_process("pelago-intake-archive")


def test_warm_opens_a_pooled_connection_before_the_first_job(db_url):
    """``pelago worker`` warms its runtime before taking jobs: the first router finds a connection."""
    from pelago.core.db import make_engine
    from pelago.core.host import PluginHost
    from pelago.core.runtime import Runtime
    from pelago.core.worker import warm

    runtime = Runtime(PluginHost([]), make_engine(db_url))
    try:
        assert runtime.engine.pool.checkedin() == 0
        warm(runtime)
        assert runtime.engine.pool.checkedin() == 1
    finally:
        runtime.engine.dispose()


@pytest.mark.redis
def test_killing_the_horse_while_a_router_runs_in_process_kills_nothing(redis_url, monkeypatch):
    # rq's kill_horse would killpg the worker's own group (horse_pid 0): stop-job on a router must not.
    from redis import Redis

    killed: list[tuple] = []
    monkeypatch.setattr(os, "killpg", lambda *a: killed.append(a))
    worker = PelagoWorker([f"pelago-test{INTAKE_SUFFIX}"], connection=Redis.from_url(redis_url))
    worker.kill_horse()
    assert killed == []
    worker._horse_pid = 4242  # a forked job's horse is killed as rq does
    monkeypatch.setattr(os, "getpgid", lambda pid: pid)
    worker.kill_horse()
    assert killed and killed[0][0] == 4242


def test_warm_with_the_database_down_logs_and_lets_the_worker_start(caplog):
    from pelago.core.db import make_engine
    from pelago.core.host import PluginHost
    from pelago.core.runtime import Runtime
    from pelago.core.worker import warm

    runtime = Runtime(PluginHost([]), make_engine("postgresql+psycopg://postgres@127.0.0.1:1/nothing"))
    try:
        warm(runtime)
    finally:
        runtime.engine.dispose()
    assert "could not open a database connection" in caplog.text
