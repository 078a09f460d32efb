"""An import whose worker dies is resumed after its lease, not left ``running`` forever (issue 14, finding 12).

Crashes here are a ``BaseException`` out of the worker's progress callback
(nothing of the import catches it, as nothing catches SIGKILL); the real
``pelago worker`` with its rq work horse SIGKILLed in the middle of a batch
is in tests/test_faults.py.
"""

from __future__ import annotations

from sqlalchemy import func, select

from pelago.core.models import Import, Lead
from pelago.core.services import imports as svc
from pelago.testing import scheduler_tick


class WorkerDied(BaseException):
    """Stands for the process vanishing: not an ``Exception``, so no handler of the import sees it."""


def csv_of(n: int, prefix: str) -> bytes:
    return ("name,phone\n" + "".join(f"n{i},{prefix}{i:04d}\n" for i in range(n))).encode()


def new_import(t, content: bytes) -> int:
    with t.runtime.tenant_context(t.id) as ctx:
        return svc.create_import(ctx, filename="x.csv", content=content).id


def state(t, import_id: int) -> dict:
    with t.runtime.tenant_session(t.id) as s:
        imp = s.get(Import, import_id)
        leads = s.scalar(select(func.count()).select_from(Lead).where(Lead.tenant_id == t.id))
        return {"status": imp.status, "processed": imp.processed_rows, "created": imp.created_leads,
                "resume_after": imp.resume_after_row, "attempts": imp.attempts, "error": imp.error, "leads": leads}


def die_after(batches: int):
    """A progress callback that kills the worker once it committed ``batches`` batches of its own."""
    seen: dict[str, int] = {}

    def progress(done: int, total: int) -> None:
        start = seen.setdefault("start", done)  # the first call reports where this worker starts
        if done > start:
            seen["n"] = seen.get("n", 0) + 1
            if seen["n"] >= batches:
                raise WorkerDied

    return progress


def test_a_dead_workers_import_is_resumed_after_its_lease_and_counts_once(tenant, clock, monkeypatch):
    monkeypatch.setattr(svc, "BATCH", 4)
    import_id = new_import(tenant, csv_of(10, "1390015"))
    try:
        svc.run_import(tenant.runtime, tenant.id, import_id, progress=die_after(1))
    except WorkerDied:
        pass
    assert state(tenant, import_id) == {"status": "running", "processed": 4, "created": 4, "resume_after": 4,
                                        "attempts": 1, "error": None, "leads": 4}
    scheduler_tick(tenant.runtime, tenant.id)  # within the lease: the worker may be alive
    assert state(tenant, import_id)["status"] == "running"
    assert svc.run_import(tenant.runtime, tenant.id, import_id)["status"] == "running"  # nor may a job take it
    clock.advance(minutes=6)
    scheduler_tick(tenant.runtime, tenant.id)  # the lease expired: resumed after row 4
    assert state(tenant, import_id) == {"status": "done", "processed": 10, "created": 10, "resume_after": 10,
                                        "attempts": 2, "error": None, "leads": 10}


def test_an_import_whose_workers_keep_dying_is_failed_with_its_rows_kept(tenant, clock, monkeypatch):
    monkeypatch.setattr(svc, "BATCH", 2)
    import_id = new_import(tenant, csv_of(12, "1390016"))
    for _ in range(svc.MAX_ATTEMPTS):
        try:
            svc.run_import(tenant.runtime, tenant.id, import_id, progress=die_after(1))
        except WorkerDied:
            pass
        clock.advance(minutes=6)
    assert state(tenant, import_id)["attempts"] == svc.MAX_ATTEMPTS
    scheduler_tick(tenant.runtime, tenant.id)
    got = state(tenant, import_id)
    assert got["status"] == "failed" and "stopped 3 times" in got["error"] and got["leads"] == 6
    assert got["processed"] == 6  # each worker committed one batch before it died


def test_a_worker_whose_lease_was_taken_writes_nothing_more(tenant, clock, monkeypatch):
    """A slow worker (not dead) past its lease: the next one takes over; the slow one's batch rolls back."""
    monkeypatch.setattr(svc, "BATCH", 3)
    import_id = new_import(tenant, csv_of(9, "1390017"))
    resumed = {"done": False}

    def slow_then_overtaken(done: int, total: int) -> None:
        if done == 3 and not resumed["done"]:
            resumed["done"] = True
            clock.advance(minutes=6)  # this worker stalls past its lease ...
            svc.run_import(tenant.runtime, tenant.id, import_id)  # ... and another finishes the import

    result = svc.run_import(tenant.runtime, tenant.id, import_id, progress=slow_then_overtaken)
    assert result["status"] == "done"
    assert state(tenant, import_id) == {"status": "done", "processed": 9, "created": 9, "resume_after": 9,
                                        "attempts": 2, "error": None, "leads": 9}


def test_a_queued_import_whose_job_was_lost_is_queued_again(tenant, clock):
    """Issue 14 review: the embedded server's in-memory queue dies with it; its queued imports did too.

    ``new_import`` stores a queued import and enqueues nothing: the job that
    would have run it is gone, as after the embedded server stopped first.
    """
    lost = new_import(tenant, csv_of(3, "1390017"))
    scheduler_tick(tenant.runtime, tenant.id)  # within its hand-off lease: a worker may be about to take it
    assert state(tenant, lost)["status"] == "queued"
    clock.advance(minutes=6)
    scheduler_tick(tenant.runtime, tenant.id)  # the lease passed: handed to the queue again, and run
    assert state(tenant, lost) == {"status": "done", "processed": 3, "created": 3, "resume_after": 3,
                                   "attempts": 1, "error": None, "leads": 3}
    # The embedded server, starting, hands over every queued import at once (its queue is new).
    second = new_import(tenant, csv_of(2, "1390018"))
    assert svc.resume_stalled(tenant.runtime, lost_queue=True) >= 1
    assert state(tenant, second)["status"] == "done" and state(tenant, second)["created"] == 2


def test_a_queued_import_is_handed_over_once_per_lease(tenant, clock):
    """Two schedulers' ticks in one lease hand a lost queued import over once (a conditional update)."""
    from pelago.core.jobs import InlineQueue

    handed: list[dict] = []

    class Recording(InlineQueue):
        def enqueue(self, name, **kwargs):
            if name == "import":
                handed.append(kwargs)
                return None
            return super().enqueue(name, **kwargs)

    lost = new_import(tenant, csv_of(1, "1390019"))
    clock.advance(minutes=6)
    rt = tenant.runtime
    original, rt.queue = rt.queue, Recording(rt)
    try:
        svc.resume_stalled(rt)
        svc.resume_stalled(rt)
    finally:
        rt.queue = original
    assert [h for h in handed if h["import_id"] == lost] == [{"tenant_id": tenant.id, "import_id": lost}]


def test_an_import_waits_out_a_busy_database_instead_of_failing(tenant, monkeypatch, pelago_db):
    """Issue 14 review: the embedded mode's write gate full past its wait (``Busy``) failed the import.

    Another writer holds SQLite's write gate longer than the gate lets a
    transaction wait; the import's write finds the database busy, pauses
    (the pause is where the other writer finishes) and goes on.
    """
    import pytest
    from sqlalchemy import text

    from pelago.core.db import gate_of

    if pelago_db != "sqlite":
        pytest.skip("the write gate is the embedded mode's (SQLite)")
    import_id = new_import(tenant, csv_of(5, "1390021"))
    gate = gate_of(tenant.runtime.engine)
    monkeypatch.setattr(gate, "wait", 0.2)
    holder = tenant.runtime.engine.connect()
    holder.execute(text("SELECT 1"))  # a transaction: the gate is held
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 2:  # the other writer finishes while the import waits its second pause
            holder.rollback()
            holder.close()

    monkeypatch.setattr(svc, "_pause", pause)
    try:
        summary = svc.run_import(tenant.runtime, tenant.id, import_id)
    finally:
        holder.close()
    assert pauses == list(svc.BUSY_BACKOFF[:2])
    assert summary["status"] == "done" and summary["created_leads"] == 5, summary


def test_an_import_gives_up_on_a_database_busy_for_good(tenant, monkeypatch, pelago_db):
    """Bounded: past ``BUSY_BACKOFF`` (some 15 s of pauses) the ``Busy`` stands and the import fails with it."""
    import pytest

    from pelago.core.errors import Busy

    if pelago_db != "sqlite":
        pytest.skip("the write gate is the embedded mode's (SQLite)")
    calls: list[float] = []
    monkeypatch.setattr(svc, "_pause", calls.append)

    def always_busy():
        raise Busy("the database is busy")

    with pytest.raises(Busy):
        svc._when_free(tenant.runtime, "a test", always_busy)
    assert calls == list(svc.BUSY_BACKOFF)
