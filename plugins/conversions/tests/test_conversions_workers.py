"""Real worker processes on PostgreSQL: concurrent senders, and a sender killed while the platform has the request.

The workers are ``pelago conversions send --tenant SLUG`` processes on the
run's database, sending to this process's stand-in platform. They use the
real clock, so rows are made due by the frozen clock being in the past;
the lease expiry is then reached by moving this process's frozen clock past
the real time, never by waiting.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pelago.testing import run_periodic

from .conv_helpers import account, channel, conversions, count, on, phone, rule, submit
from .stand_in import StandIn

pytestmark = pytest.mark.postgres
PELAGO = str(Path(sys.executable).parent / "pelago")


@pytest.fixture
def platform(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    monkeypatch.setenv("PELAGO_OUTBOUND_ALLOW_PRIVATE", "1")
    p = StandIn().start()
    yield p
    p.stop()


def worker(db_url: str, slug: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(DATABASE_URL=db_url, PELAGO_PLUGINS="pool,conversions", PELAGO_OUTBOUND_ALLOW_PRIVATE="1")
    return subprocess.Popen([PELAGO, "conversions", "send", "--tenant", slug], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def contacted_and_won(t, platform: StandIn, in_doubt: str) -> int:
    """A lead from a click, contacted, then won, on a platform that is busy at first: two queued conversions."""
    platform.answer = lambda r: (503, {"message": "busy"})
    ch = channel(t)
    acct = account(t, platform.url, in_doubt=in_doubt)
    rule(t, acct["id"], "first_contact", "phone_connect")
    rule(t, acct["id"], "deal_won", "purchase")
    lead = submit(t, ch, {"name": "王芳", "phone": phone(), "clickid": "CB-9", "id": "k-1"})
    t.post(f"/api/v1/leads/{lead['lead_id']}/activities", json={"kind": "call", "note": "接通"}, who="manager")
    t.post(f"/api/v1/leads/{lead['lead_id']}/deals", json={"amount": "4800.00", "kind": "first_purchase"})
    assert [x["status"] for x in conversions(t)] == ["queued", "queued"]
    platform.answer = lambda r: (200, {"message": "ok"})
    platform.received.clear()
    return int(lead["lead_id"])


def kill_mid_send(db_url: str, t, platform: StandIn) -> None:
    platform.hold()
    proc = worker(db_url, t.slug)
    try:
        assert platform.held.wait(120), "the worker never reached the platform"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        platform.release()
    assert proc.returncode == -signal.SIGKILL


def past_the_lease(clock) -> None:
    clock.advance(seconds=(datetime.now(timezone.utc) + timedelta(seconds=301) - clock()).total_seconds())


def test_a_killed_sender_is_held_in_doubt_not_sent_twice(app, clock, platform, db_url):
    t = on(app)
    contacted_and_won(t, platform, "hold")
    kill_mid_send(db_url, t, platform)
    # the worker had claimed both (one batch) and dispatched one
    assert len(platform.received) == 1 and count(t, "conversions_conversion", "status = 'sending'") == 2
    assert count(t, "conversions_conversion", "dispatched_at IS NOT NULL") == 1
    run_periodic(t.runtime, "conversions", "send", t.id)  # the lease still runs: the rows are left alone
    assert count(t, "conversions_conversion", "status = 'sending'") == 2 and len(platform.received) == 1
    past_the_lease(clock)
    run_periodic(t.runtime, "conversions", "send", t.id)
    rows = conversions(t)
    assert sorted(x["status"] for x in rows) == ["accepted", "in_doubt"]
    assert len(platform.received) == 2  # the other one; the one in doubt was not sent again
    assert len({r.json["event_type"] for r in platform.received}) == 2
    [doubt] = [x for x in rows if x["status"] == "in_doubt"]
    assert "check the platform" in doubt["message"]
    r = t.post(f"/api/v1/conversions/conversions/{doubt['id']}/decision", json={"decision": "accepted"})
    assert r.status_code == 200 and r.get_json()["status"] == "accepted"
    assert len(platform.received) == 2


def test_a_killed_sender_resends_with_the_same_key_where_the_platform_deduplicates(app, clock, platform, db_url):
    t = on(app)
    contacted_and_won(t, platform, "resend")
    kill_mid_send(db_url, t, platform)
    [held] = platform.received
    past_the_lease(clock)
    run_periodic(t.runtime, "conversions", "send", t.id)
    assert sorted(x["status"] for x in conversions(t)) == ["accepted", "accepted"]
    again = [r for r in platform.received if r.headers["idempotency-key"] == held.headers["idempotency-key"]]
    assert len(again) == 2 and platform.keys[held.headers["idempotency-key"]] == 2  # the platform kept one
    assert len(platform.keys) == 2  # exactly two conversions at the platform: contact and deal


def test_four_workers_send_each_conversion_once(app, clock, platform, db_url):
    t = on(app, batch=10)
    platform.answer = lambda r: (503, {"message": "busy"})
    ch = channel(t)
    rule(t, account(t, platform.url)["id"], "valid_lead", "form")
    for i in range(120):
        submit(t, ch, {"name": f"n{i}", "phone": phone(), "clickid": f"W{i}", "id": f"w-{i}"})
    assert count(t, "conversions_conversion", "status = 'queued'") == 120
    platform.answer = lambda r: (200, {"message": "ok"})
    platform.received.clear()
    procs = [worker(db_url, t.slug) for _ in range(4)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
    clicks = [r.json["click_id"] for r in platform.received]
    assert len(clicks) == 120 and len(set(clicks)) == 120
    assert count(t, "conversions_conversion", "status = 'accepted' AND attempts = 2") == 120
