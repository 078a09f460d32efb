"""conversions' part of privacy requests: its rows in an export; after an erasure, nothing more sent about the person."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from pelago.testing import run_periodic

from .conv_helpers import account, channel, conversions, on, phone, rule, submit
from .stand_in import StandIn


@pytest.fixture
def platform(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    monkeypatch.setenv("PELAGO_OUTBOUND_ALLOW_PRIVATE", "1")
    p = StandIn().start()
    yield p
    p.stop()


def test_export_then_erasure_blanks_the_click_and_nothing_is_sent_about_the_person(app, clock, platform):
    platform.answer = lambda r: (503, {"message": "busy"})  # both wait in the outbox, to be retried
    t = on(app)
    ch = channel(t)
    rule(t, account(t, platform.url)["id"], "valid_lead", "form")
    mine, other = phone(), phone()
    submit(t, ch, {"name": "周", "phone": mine, "clickid": "CLICK-OF-THE-PERSON", "id": "p-1"})
    submit(t, ch, {"name": "吴", "phone": other, "clickid": "CLICK-OF-ANOTHER", "id": "p-2"})
    assert [c["status"] for c in conversions(t)] == ["queued", "queued"]  # retried later

    r = t.post("/api/v1/privacy/exports", json={"phone": mine})
    assert r.status_code == 200, r.get_json()
    [row] = r.get_json()["plugins"]["conversions"]["conversions"]
    assert (row["click_id"], row["status"], row["event_type"]) == ("CLICK-OF-THE-PERSON", "queued", "form")

    ok = t.put("/api/v1/plugins/conversions", json={"enabled": False})  # the erasure reaches it off too
    assert ok.status_code == 200
    r = t.post("/api/v1/privacy/erasures", json={"phone": mine, "reason": "the person asked"})
    assert r.status_code == 200, r.get_json()
    assert t.put("/api/v1/plugins/conversions", json={"enabled": True}).status_code == 200
    erased, kept = conversions(t)
    assert (erased["status"], erased["click_id"]) == ("expired", "")
    assert "erased" in erased["message"]
    assert (kept["status"], kept["click_id"]) == ("queued", "CLICK-OF-ANOTHER")
    r = t.post(f"/api/v1/conversions/conversions/{erased['id']}/decision", json={"decision": "resend"})
    assert r.status_code == 409  # cannot be sent again by hand either

    before = len(platform.received)
    platform.answer = lambda r: (200, {"message": "ok"})
    clock.advance(days=2)
    run_periodic(t.runtime, "conversions", "send", t.id)
    sent = [json.dumps(x.json, ensure_ascii=False) for x in platform.received[before:]]
    assert len(sent) == 1 and "CLICK-OF-ANOTHER" in sent[0]
    assert not [x for x in sent if "CLICK-OF-THE-PERSON" in x]
    assert "conversions" not in t.post("/api/v1/privacy/exports", json={"phone": phone()}).get_json()["plugins"]
