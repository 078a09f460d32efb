"""The ``http`` provider against a local stand-in gateway: signed sends, refusals, and reconciliation in one process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .gateway import Gateway
from .sms_helpers import (
    SECRET,
    count_rows,
    dispatch,
    enrol,
    enrolments,
    lead,
    messages,
    sequence,
    sms_activities,
    sms_tenant,
)


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    monkeypatch.setenv("PELAGO_OUTBOUND_ALLOW_PRIVATE", "1")
    gw = Gateway(SECRET).start()
    yield gw
    gw.stop()


def test_sends_are_signed_carry_our_id_and_record_the_gateways_id(app, gateway):
    t = sms_tenant(app, **gateway.settings())
    seq = sequence(t, 0)
    a, b = lead(t), lead(t)
    enrol(t, seq["id"], a["id"], b["id"])
    dispatch(t)
    sent = messages(t, sequence_id=seq["id"])
    assert [m["status"] for m in sent] == ["sent", "sent"] and gateway.unsigned == 0
    assert set(gateway.received) == {m["our_id"] for m in sent} and not gateway.doubles()
    assert {m["provider_id"] for m in sent} == {"gw-1", "gw-2"}
    assert gateway.bodies[sent[0]["our_id"]]["to"] in (a["phone"], b["phone"])
    assert len(sms_activities(t, a["id"])) == 1


def test_a_refusal_is_a_failure_with_the_reason_and_frees_the_cap(app, gateway):
    t = sms_tenant(app, **gateway.settings())
    seq = sequence(t, 0)
    a = lead(t)
    enrol(t, seq["id"], a["id"])
    [e] = enrolments(t, lead_id=a["id"])
    gateway.refuse.add(f"{t.id}-{e['id']}-{seq['steps'][0]['id']}")
    dispatch(t)
    [m] = messages(t, lead_id=a["id"])
    assert (m["status"], m["reason"]) == ("failed", "gateway answered 400")
    assert sms_activities(t, a["id"]) == []


def test_a_send_without_an_answer_is_reconciled_by_our_id_after_the_lease_not_sent_again(app, gateway, clock):
    t = sms_tenant(app, **gateway.settings())
    seq = sequence(t, 0)
    a = lead(t)
    enrol(t, seq["id"], a["id"])
    gateway.answer = 503  # it took the message, but answered an error
    dispatch(t)
    [m] = messages(t, lead_id=a["id"])
    assert m["status"] == "sending" and "no answer" in m["reason"]
    gateway.answer = None
    dispatch(t)  # the lease has not run out: nobody touches it
    assert messages(t, lead_id=a["id"])[0]["status"] == "sending"
    clock.advance(seconds=301)
    dispatch(t)
    [m] = messages(t, lead_id=a["id"])
    assert (m["status"], m["attempts"]) == ("sent", 1)
    assert gateway.received[m["our_id"]] == 1 and len(sms_activities(t, a["id"])) == 1


def test_a_message_the_gateway_never_got_is_queued_again_and_sent_once(app, gateway, clock):
    t = sms_tenant(app, **gateway.settings())
    seq = sequence(t, 0)
    a = lead(t)
    enrol(t, seq["id"], a["id"])
    t.put("/api/v1/plugins/sms_nurture", json={"settings": {"http_send_url": "http://127.0.0.1:9/send"}})
    dispatch(t)  # nothing listens there: no answer
    assert messages(t, lead_id=a["id"])[0]["status"] == "sending"
    t.put("/api/v1/plugins/sms_nurture", json={"settings": {"http_send_url": f"{gateway.url}/send"}})
    clock.advance(seconds=301)
    dispatch(t)
    [m] = messages(t, lead_id=a["id"])
    assert (m["status"], m["attempts"]) == ("sent", 2)
    assert gateway.received[m["our_id"]] == 1 and count_rows(t, "sms_nurture_message", "status = 'sent'") == 1
