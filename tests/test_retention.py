"""Retention: done webhook submissions and outbound posts are deleted after their days, in bounded batches.

Rows are written straight into the tables with the ages each test needs;
the sweep is called with the test's clock. The run's database is shared,
so assertions look at the test's tenants' rows, and a sweep with the
default policy first clears what earlier tests left past their days.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select

from pelago.core import scheduler
from pelago.core.models import OutboundPost, StoredSubmission
from pelago.core.retention import Retention, sweep
from pelago.hostapp import Settings, build_runtime

DAY = timedelta(days=1)


def submission(t: Any, status: str, received_at: datetime) -> int:
    with t.runtime.sessions() as s:
        sid = s.execute(insert(StoredSubmission).values(
            tenant_id=t.id, key=f"k-{status}-{received_at.isoformat()}-{id(s)}", data={"phone": "+8613800138000"},
            touch={}, raw={"phone": "13800138000"}, status=status, attempts=1, received_at=received_at,
            processed_at=None if status == "accepted" else received_at,
        ).returning(StoredSubmission.id)).scalar_one()
        s.commit()
    return int(sid)


def post(t: Any, status: str, created_at: datetime) -> int:
    with t.runtime.sessions() as s:
        pid = s.execute(insert(OutboundPost).values(
            tenant_id=t.id, plugin="core", url="https://hooks.example.com/h", body=b'{"phone":"13800138000"}',
            headers={}, timeout=10, status=status, attempts=1, created_at=created_at,
        ).returning(OutboundPost.id)).scalar_one()
        s.commit()
    return int(pid)


def left(t: Any, model: Any) -> set[int]:
    with t.runtime.sessions() as s:
        return set(s.scalars(select(model.id).where(model.tenant_id == t.id)))


@pytest.fixture
def now(tenant: Any) -> datetime:
    moment = tenant.runtime.clock()
    sweep(tenant.runtime, Retention(), moment)  # earlier tests' rows past their days
    return moment


def test_done_rows_past_their_days_go_and_the_rest_stay(tenant, other_tenant, now):
    runtime = tenant.runtime
    gone_subs = [submission(tenant, "processed", now - 31 * DAY), submission(tenant, "failed", now - 91 * DAY)]
    kept_subs = [
        submission(tenant, "processed", now - 29 * DAY),  # recent
        submission(tenant, "failed", now - 60 * DAY),  # failed rows are kept longer
        submission(tenant, "accepted", now - 200 * DAY),  # still to route: never deleted
    ]
    gone_posts = [post(tenant, "sent", now - 31 * DAY), post(tenant, "failed", now - 91 * DAY)]
    kept_posts = [post(tenant, "sent", now - 29 * DAY), post(tenant, "failed", now - 60 * DAY),
                  post(tenant, "queued", now - 200 * DAY), post(tenant, "sending", now - 200 * DAY)]
    others = (submission(other_tenant, "processed", now - 31 * DAY), post(other_tenant, "sent", now - 31 * DAY))

    counts = sweep(runtime, Retention(), now)

    assert counts == {"submissions_processed": 2, "submissions_failed": 1, "posts_sent": 2, "posts_failed": 1}
    assert left(tenant, StoredSubmission) == set(kept_subs) and not set(gone_subs) & left(tenant, StoredSubmission)
    assert left(tenant, OutboundPost) == set(kept_posts) and not set(gone_posts) & left(tenant, OutboundPost)
    assert others[0] not in left(other_tenant, StoredSubmission)  # every tenant's old rows go
    assert others[1] not in left(other_tenant, OutboundPost)
    assert sweep(runtime, Retention(), now) == dict.fromkeys(counts, 0)


def test_a_sweep_deletes_at_most_batch_times_rounds_rows_per_kind(tenant, now):
    old = [submission(tenant, "processed", now - (40 + i) * DAY) for i in range(5)]
    policy = Retention(batch=2, rounds=1)
    assert sweep(tenant.runtime, policy, now)["submissions_processed"] == 2
    assert left(tenant, StoredSubmission) == set(old[2:])  # oldest ids first
    assert sweep(tenant.runtime, Retention(batch=2, rounds=2), now)["submissions_processed"] == 3
    assert left(tenant, StoredSubmission) == set()


def test_zero_days_keeps_forever(tenant, now):
    kept = {submission(tenant, "processed", now - 400 * DAY), submission(tenant, "failed", now - 400 * DAY)}
    counts = sweep(tenant.runtime, Retention(done_days=0, failed_days=0), now)
    assert kept <= left(tenant, StoredSubmission) and not any(counts.values())


def test_the_tick_starts_the_sweep_once_per_period(tenant, now, clock):
    runtime = tenant.runtime
    first = submission(tenant, "processed", now - 31 * DAY)
    scheduler.tick(runtime)
    assert first in left(tenant, StoredSubmission)  # a runtime built by hand (tests) has no retention
    assert runtime.retention_started_at is None
    runtime.retention = Retention()
    scheduler.tick(runtime)
    assert first not in left(tenant, StoredSubmission)
    second = submission(tenant, "processed", now - 31 * DAY)
    clock.advance(minutes=59)
    scheduler.tick(runtime)
    assert second in left(tenant, StoredSubmission)  # not due again yet
    clock.advance(minutes=1)
    scheduler.tick(runtime)
    assert second not in left(tenant, StoredSubmission)


def test_the_days_come_from_the_environment():
    settings = Settings.from_env({"PELAGO_RETENTION_DAYS": "7", "PELAGO_RETENTION_FAILED_DAYS": "0"})
    assert (settings.retention_days, settings.retention_failed_days) == (7, 0)
    assert (Settings.from_env({}).retention_days, Settings.from_env({}).retention_failed_days) == (30, 90)
    with pytest.raises(ValueError, match="PELAGO_RETENTION_DAYS"):
        Settings.from_env({"PELAGO_RETENTION_DAYS": "-1"})
    runtime = build_runtime(Settings(database_url="sqlite:///:memory:", retention_days=7, retention_failed_days=0))
    assert runtime.retention is not None
    assert (runtime.retention.done_days, runtime.retention.failed_days) == (7, 0)
