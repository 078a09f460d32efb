"""The Ocean Engine and Kuaishou adapters, end to end through ``conversions``, against stand-in platforms."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from ad_platforms import Platform
from sqlalchemy import text

from pelago.testing import TenantHandle, new_tenant, run_periodic

PELAGO = str(Path(sys.executable).parent / "pelago")
_phones = itertools.count(13600000000)


@pytest.fixture
def ocean(monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    monkeypatch.setenv("PELAGO_OUTBOUND_ALLOW_PRIVATE", "1")
    p = Platform("ocean").start()
    yield p
    p.stop()


@pytest.fixture
def kuaishou(monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    monkeypatch.setenv("PELAGO_OUTBOUND_ALLOW_PRIVATE", "1")
    p = Platform("kuaishou").start()
    yield p
    p.stop()


def tenant(app: Any) -> TenantHandle:
    t = new_tenant(app)
    for name in ("conversions", "conversions_adapters"):
        assert t.put(f"/api/v1/plugins/{name}", json={"enabled": True}).status_code == 200
    return t


def setup(t: TenantHandle, name: str, adapter: str, url: str, rules: list[tuple[str, str]], **config: str
          ) -> dict[str, Any]:
    """A channel ``name`` whose payloads carry ``clickid``, an account on ``adapter``, and ``rules``."""
    r = t.post("/api/v1/channels", json={"name": name, "mapping": {"name": "name", "phone": "phone",
                                                                   "click_id": "clickid", "external_id": "id"}})
    assert r.status_code == 201, r.get_json()
    ch = r.get_json()
    r = t.post("/api/v1/conversions/accounts", json={"name": name, "adapter": adapter, "url": url, "config": config})
    assert r.status_code == 201, r.get_json()
    account_id = r.get_json()["id"]
    for moment, event_type in rules:
        r = t.post("/api/v1/conversions/rules", json={"name": f"{name}-{moment}", "account_id": account_id,
                                                       "channel": name, "moment": moment, "event_type": event_type})
        assert r.status_code == 201, r.get_json()
    return ch


def submit(t: TenantHandle, ch: dict[str, Any], payload: dict[str, Any]) -> int:
    body = json.dumps(payload, ensure_ascii=False).encode()
    sig = "sha256=" + hmac.new(ch["secret"].encode(), body, hashlib.sha256).hexdigest()
    r = t.client().post(ch["url"], data=body, headers={"Content-Type": "application/json",
                                                       "X-Pelago-Signature": sig})
    assert r.status_code in (200, 202), r.get_json()  # stored, and routed inline by the time it is read
    sub = t.get(f"/api/v1/submissions/{r.get_json()['id']}").get_json()
    assert sub["status"] == "processed", sub
    return int(sub["lead_id"])


def contact_and_win(t: TenantHandle, lead_id: int, clock: Any, amount: str = "4800.00") -> None:
    clock.advance(hours=1)
    assert t.post(f"/api/v1/leads/{lead_id}/activities", json={"kind": "call", "note": "接通"},
                  who="manager").status_code == 201
    clock.advance(days=2)
    assert t.post(f"/api/v1/leads/{lead_id}/deals", json={"amount": amount, "kind": "first_purchase"}
                  ).status_code == 201


def redeliver(t: TenantHandle) -> None:
    """Every event this tenant's conversions already got, delivered again (delivery is at least once)."""
    from pelago.testing import deliver_events

    with t.runtime.engine.begin() as conn:
        conn.execute(text("UPDATE core_event_delivery SET state = 'pending', next_attempt_at = NULL "
                          "WHERE tenant_id = :t AND plugin = 'conversions'"), {"t": t.id})
    deliver_events(t.runtime, t.id)


def statuses(t: TenantHandle) -> list[tuple[str, str]]:
    items = t.get("/api/v1/conversions/conversions", query_string={"limit": 200}).get_json()["items"]
    return sorted((x["event_type"], x["status"]) for x in items)


def test_an_ocean_engine_click_contacted_then_won_reports_exactly_twice(app, clock, ocean):
    t = tenant(app)
    ch = setup(t, "douyin", "ocean_engine", ocean.url, [("first_contact", "phone_connect"),
                                                      ("deal_won", "active_pay")], class_purchase_amount="1")
    lead = submit(t, ch, {"name": "王芳", "phone": str(next(_phones)), "clickid": "EJiw267wvfQCGKf2", "id": "d-1"})
    contact_and_win(t, lead, clock)
    redeliver(t)
    run_periodic(t.runtime, "conversions", "send", t.id)
    assert ocean.problems == []
    bodies = [json.loads(b) for _, b in ocean.received]
    assert bodies == [
        {"event_type": "phone_connect", "context": {"ad": {"callback": "EJiw267wvfQCGKf2"}},
         "timestamp": int(datetime(2026, 3, 2, 3, tzinfo=timezone.utc).timestamp() * 1000)},
        {"event_type": "active_pay", "context": {"ad": {"callback": "EJiw267wvfQCGKf2"}},
         "timestamp": int(datetime(2026, 3, 4, 3, tzinfo=timezone.utc).timestamp() * 1000),
         "properties": {"pay_amount": 4800.0, "class_purchase_amount": 1}},
    ]
    assert b'"pay_amount":4800.00' in ocean.received[1][1]  # the exact decimal, not a float's digits
    assert statuses(t) == [("active_pay", "accepted"), ("phone_connect", "accepted")]


def test_ocean_engine_amounts_in_fen_when_the_account_says_so(app, clock, ocean):
    t = tenant(app)
    ch = setup(t, "douyin", "ocean_engine", ocean.url, [("deal_won", "active_pay")], amount_unit="fen")
    lead = submit(t, ch, {"name": "x", "phone": str(next(_phones)), "clickid": "F", "id": "f-1"})
    contact_and_win(t, lead, clock, amount="19.99")
    assert json.loads(ocean.received[0][1])["properties"] == {"pay_amount": 1999}


def test_an_ocean_engine_rejection_keeps_its_message(app, clock, ocean):
    ocean.reject.add("GONE")
    t = tenant(app)
    ch = setup(t, "douyin", "ocean_engine", ocean.url, [("valid_lead", "form")])
    submit(t, ch, {"name": "x", "phone": str(next(_phones)), "clickid": "GONE", "id": "g-1"})
    clock.advance(hours=1)
    run_periodic(t.runtime, "conversions", "send", t.id)
    [item] = t.get("/api/v1/conversions/conversions").get_json()["items"]
    assert (item["status"], item["message"], item["attempts"]) == ("rejected", "code 40002: callback 无效", 1)
    assert len(ocean.received) == 1


def test_a_kuaishou_click_reports_with_millisecond_time_and_amount(app, clock, kuaishou):
    t = tenant(app)
    ch = setup(t, "kuaishou", "kuaishou", kuaishou.url, [("valid_lead", "9"), ("deal_won", "3")])
    callback = "http://ad.partner.gifshow.com/track/activate?callback=DHAJASALKFyk1uCKBYCyXp-iIDS"
    lead = submit(t, ch, {"name": "x", "phone": str(next(_phones)), "clickid": callback, "id": "k-1"})
    contact_and_win(t, lead, clock, amount="1299.50")
    redeliver(t)
    assert kuaishou.problems == []
    queries = [{k: v[0] for k, v in parse_qs(urlsplit(path).query).items()} for path, _ in kuaishou.received]
    assert queries == [
        {"callback": callback, "event_type": "9",
         "event_time": str(int(datetime(2026, 3, 2, 2, tzinfo=timezone.utc).timestamp() * 1000))},
        {"callback": callback, "event_type": "3", "purchase_amount": "1299.50",
         "event_time": str(int(datetime(2026, 3, 4, 3, tzinfo=timezone.utc).timestamp() * 1000))},
    ]
    assert [body for _, body in kuaishou.received] == [b"{}", b"{}"]
    assert statuses(t) == [("3", "accepted"), ("9", "accepted")]


def test_the_adapters_are_listed_and_an_account_needs_no_url(app, ocean):
    t = tenant(app)
    names = {a["name"]: a for a in t.get("/api/v1/conversions/adapters").get_json()["items"]}
    assert {"generic", "ocean_engine", "kuaishou"} <= set(names)
    assert names["ocean_engine"]["idempotent"] is False and names["ocean_engine"]["personal"] == []
    r = t.post("/api/v1/conversions/accounts", json={"name": "o", "adapter": "ocean_engine"})
    assert r.status_code == 201 and r.get_json()["url"] == ""


def test_switched_off_the_adapters_are_unknown(app, ocean):
    t = tenant(app)
    assert t.put("/api/v1/plugins/conversions_adapters", json={"enabled": False}).status_code == 200
    r = t.post("/api/v1/conversions/accounts", json={"name": "o", "adapter": "ocean_engine"})
    assert r.status_code == 422 and "adapter" in r.get_json()["errors"]["json"]


@pytest.mark.postgres
def test_a_sender_killed_mid_send_to_ocean_engine_does_not_send_twice(app, clock, ocean, db_url):
    t = tenant(app)
    ch = setup(t, "douyin", "ocean_engine", ocean.url, [("valid_lead", "form")])
    ocean.busy = 1  # the first, inline try meets a busy platform: the conversion waits for a worker
    submit(t, ch, {"name": "x", "phone": str(next(_phones)), "clickid": "K1", "id": "kill-1"})
    assert statuses(t) == [("form", "queued")]
    ocean.received.clear()
    ocean.hold()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(DATABASE_URL=db_url, PELAGO_PLUGINS="conversions,conversions_adapters",
               PELAGO_OUTBOUND_ALLOW_PRIVATE="1")
    proc = subprocess.Popen([PELAGO, "conversions", "send", "--tenant", t.slug], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert ocean.held.wait(120), "the worker never reached the platform"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        ocean.release()
    assert len(ocean.received) == 1
    clock.advance(seconds=(datetime.now(timezone.utc) + timedelta(seconds=301) - clock()).total_seconds())
    run_periodic(t.runtime, "conversions", "send", t.id)
    assert statuses(t) == [("form", "in_doubt")] and len(ocean.received) == 1
