"""Exactly once with real processes on PostgreSQL: four dispatch workers, and a worker killed mid-send.

The workers are ``pelago sms dispatch --tenant SLUG`` processes on the run's
database, sending to the stand-in gateway of this process, which counts every
send by our id. They use the real clock, so the messages are made due now and
the send window is opened around now; the lease expiry is then reached by
moving this process's frozen clock, never by waiting.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from pelago.plugin import Submission, ingest, tenant_context
from pelago.plugins.sms_nurture import enrolling
from pelago.plugins.sms_nurture.models import Message, SmsSequence

from .gateway import Gateway
from .sms_helpers import SECRET, count_rows, dispatch, phone, sequence, sms_tenant

pytestmark = pytest.mark.postgres
PELAGO = str(Path(sys.executable).parent / "pelago")


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    monkeypatch.setenv("PELAGO_OUTBOUND_ALLOW_PRIVATE", "1")
    gw = Gateway(SECRET).start()
    yield gw
    gw.stop()


def due_now(app, clock, gateway: Gateway, n: int, **settings):
    """A tenant with ``n`` leads enrolled in a one-step sequence, due at the real time now."""
    now = datetime.now(timezone.utc)
    clock.advance(seconds=(now - clock()).total_seconds())
    local = now.astimezone(ZoneInfo("Asia/Shanghai"))
    t = sms_tenant(app, **gateway.settings(), require_consent=False, validity_minutes=24 * 60, daily_cap=5,
                   window_start=(local - timedelta(hours=1)).strftime("%H:%M"),
                   window_end=(local + timedelta(hours=3)).strftime("%H:%M"), **settings)
    seq = sequence(t, 0)
    with tenant_context(t.runtime, t.id) as ctx:
        outcomes = ingest(ctx, [Submission({"name": f"w{i}", "phone": phone()}) for i in range(n)], routing=False)
        done = enrolling.enrol(ctx, ctx.session.get(SmsSequence, seq["id"]), [o.lead_id for o in outcomes],
                               "manual", "manual")
        assert len(done.enrolled) == n
    return t


def worker(db_url: str, slug: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(DATABASE_URL=db_url, PELAGO_PLUGINS="pool,sms_nurture", PELAGO_OUTBOUND_ALLOW_PRIVATE="1")
    return subprocess.Popen([PELAGO, "sms", "dispatch", "--tenant", slug], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_four_workers_over_2000_due_messages_send_each_exactly_once(app, clock, gateway, db_url):
    t = due_now(app, clock, gateway, 2000, batch=50)
    procs = [worker(db_url, t.slug) for _ in range(4)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
    assert len(gateway.received) == 2000 and not gateway.doubles() and gateway.unsigned == 0
    assert count_rows(t, "sms_nurture_message", "status = 'sent'") == 2000
    assert count_rows(t, "core_activity", "kind = 'sms'") == 2000
    sent_by = [int(o.rsplit("sent ", 1)[1].split(",")[0]) for o in outputs]
    assert sum(sent_by) == 2000 and sum(1 for s in sent_by if s) >= 2, outputs  # the work was shared


def test_a_worker_killed_after_the_gateway_accepted_is_reconciled_not_sent_again(app, clock, gateway, db_url):
    t = due_now(app, clock, gateway, 50, batch=50, lease_seconds=60)
    gateway.hold()
    proc = worker(db_url, t.slug)
    try:
        assert gateway.held.wait(120), "the worker never reached the gateway"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        gateway.release()
    [held] = list(gateway.received)
    with t.runtime.tenant_session(t.id) as s:
        row = s.scalars(select(Message).where(Message.our_id == held)).one()
        assert (row.status, row.sent_at) == ("sending", None)  # accepted by the gateway, never recorded
    dispatch(t)  # the lease has not run out: nothing is touched
    assert count_rows(t, "sms_nurture_message", "status = 'sending'") == 50 and sum(gateway.received.values()) == 1
    clock.advance(seconds=(datetime.now(timezone.utc) + timedelta(seconds=61) - clock()).total_seconds())
    dispatch(t)
    assert count_rows(t, "sms_nurture_message", "status = 'sent'") == 50
    assert len(gateway.received) == 50 and not gateway.doubles()
    with t.runtime.tenant_session(t.id) as s:
        row = s.scalars(select(Message).where(Message.our_id == held)).one()
        assert (row.status, row.attempts) == ("sent", 1)  # reconciled: asked about, not sent again
        assert s.scalar(select(Message.attempts).where(Message.our_id != held).limit(1)) == 2
    assert count_rows(t, "core_activity", "kind = 'sms'") == 50
