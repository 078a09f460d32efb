"""``sms_nurture``'s part of privacy requests: its data in an export, and gone after an erasure.

The phone of an erased person leaves every sms table; a phone that had opted
out stays suppressed (as a keyed hash), so a new lead with it is never texted.
"""

from __future__ import annotations

import uuid
from types import MappingProxyType
from typing import Any

from sqlalchemy import select, text

from pelago.plugin import Base, Event, tenant_context
from pelago.plugins.sms_nurture import hooks

from .sms_helpers import (
    count_rows,
    dispatch,
    enrol,
    enrolments,
    lead,
    messages,
    phone,
    sequence,
    sms_tenant,
    webhook,
)

REPLY = "周六上午可以吗？我家在朝阳区"
STOP = "退订"


def texted_and_replied(t: Any, reply: str = REPLY, number: str | None = None,
                       ) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
    """A lead with consent, sent the first step of a two-step sequence through the log provider, who replied."""
    number, name = number or phone(), f"王小明{uuid.uuid4().hex[:6]}"
    seq = sequence(t, 0, 60 * 24)
    a = lead(t, number, name=name)
    enrol(t, seq["id"], a["id"])
    dispatch(t)
    [m] = messages(t, lead_id=a["id"])
    assert m["status"] == "sent" and name in m["body"]
    r = webhook(t, "inbound", {"messages": [{"from": number, "text": reply}]})
    assert r.status_code == 200 and r.get_json()["accepted"] == 1
    return number, name, a, seq


def sms_cells(t: Any) -> list[str]:
    """Every value of every ``sms_nurture_*`` row of the tenant, as text."""
    out = []
    with t.runtime.sessions() as s:
        for name, table in Base.metadata.tables.items():
            if name.startswith("sms_nurture_"):
                for row in s.execute(select(table).where(table.c.tenant_id == t.id)):
                    out.extend(str(v) for v in row)
    return out


def assert_forgotten(t: Any, *secrets: str) -> None:
    cells = sms_cells(t)
    assert cells  # the rows are there, their personal values are not
    for secret in secrets:
        assert not [c for c in cells if secret in c], secret


def erase(t: Any, number: str) -> dict[str, Any]:
    r = t.post("/api/v1/privacy/erasures", json={"phone": number, "reason": "the person asked"})
    assert r.status_code == 200, r.get_json()
    return r.get_json()  # type: ignore[no-any-return]


def test_an_export_carries_enrolments_messages_replies_and_the_phones_evidence(app):
    t = sms_tenant(app)
    number, name, a, seq = texted_and_replied(t)
    r = t.post("/api/v1/privacy/exports", json={"phone": number})
    assert r.status_code == 200, r.get_json()
    part = r.get_json()["plugins"]["sms_nurture"]
    [e] = part["enrolments"]
    assert (e["lead_id"], e["sequence_id"], e["status"], e["reason"]) == (a["id"], seq["id"], "exited", "replied")
    [m] = part["messages"]
    assert (m["lead_id"], m["phone"], m["status"]) == (a["id"], number, "sent") and name in m["body"]
    [p] = part["phones"]
    assert p["phone"] == number and p["suppression"] is None
    assert (p["consent"]["source"], p["consent"]["text"]) == ("web form", "我同意接收课程短信")
    assert [(x["kind"], x["text"]) for x in p["evidence"]] == [("consent", "我同意接收课程短信")]
    assert [(x["text"], x["opt_out"]) for x in p["replies"]] == [(REPLY, False)]
    [sent] = p["log_sent"]
    assert sent["our_id"] == m["our_id"] and name in sent["body"]
    # A person the plugin holds nothing about: no sms part at all.
    other = t.lead(phone(), name="Never texted")
    assert "sms_nurture" not in t.post("/api/v1/privacy/exports", json={"phone": other["phone"]}).get_json()["plugins"]


def test_an_erasure_removes_the_phone_and_the_texts_from_every_sms_table(app, clock):
    t = sms_tenant(app)
    number, name, a, seq = texted_and_replied(t)
    bystander = lead(t)
    enrol(t, seq["id"], bystander["id"])
    dispatch(t)
    done = erase(t, number)
    assert done["lead_ids"] == [a["id"]]
    assert_forgotten(t, number, number.removeprefix("+86"), name, REPLY)  # (the bystander has the same consent text)
    assert count_rows(t, "sms_nurture_evidence", "text = '' AND phone = ''") == 1
    [m] = messages(t, lead_id=a["id"])
    assert (m["status"], m["body"]) == ("sent", None)  # the row and its status stay
    assert {e["status"] for e in enrolments(t, lead_id=a["id"])} == {"exited"}
    assert count_rows(t, "sms_nurture_erased_suppression") == 0  # it had not opted out
    # The bystander keeps everything.
    [b] = messages(t, lead_id=bystander["id"])
    assert b["phone"] == bystander["phone"] and b["body"]
    assert count_rows(t, "sms_nurture_phone", "phone = :p", p=bystander["phone"]) == 1
    deliveries = t.get("/api/v1/deliveries", query_string={"plugin": "sms_nurture"}).get_json()["items"]
    assert [d["state"] for d in deliveries if d["event"] == "person_erased"] == ["delivered"]
    # A new lead with the freed number is a new person: texted again once consent is given.
    again = lead(t, number)
    enrol(t, seq["id"], again["id"])
    dispatch(t)
    assert [m["status"] for m in messages(t, lead_id=again["id"])] == ["sent"]


def test_an_erasure_leaves_another_tenants_rows_of_the_same_phone_alone(app):
    t, u = sms_tenant(app), sms_tenant(app)
    number, *_ = texted_and_replied(t, reply=STOP)
    _, name, theirs, seq = texted_and_replied(u, reply=STOP, number=number)
    erase(t, number)
    assert count_rows(t, "sms_nurture_phone") == 0 and count_rows(t, "sms_nurture_erased_suppression") == 1
    [m] = messages(u, lead_id=theirs["id"])
    assert m["phone"] == number and name in m["body"]
    for table in ("sms_nurture_phone", "sms_nurture_evidence", "sms_nurture_inbound", "sms_nurture_log_sent"):
        assert count_rows(u, table, "phone = :p", p=number) >= 1, table
    assert count_rows(u, "sms_nurture_phone", "phone = :p AND suppressed_at IS NOT NULL", p=number) == 1
    assert count_rows(u, "sms_nurture_erased_suppression") == 0


def test_an_erasure_ends_active_enrolments_and_drops_queued_messages(app, clock):
    t = sms_tenant(app, window_start="12:00", window_end="13:00")  # the clock is at 10:00 in Shanghai
    seq = sequence(t, 0)
    number = phone()
    a = lead(t, number)
    enrol(t, seq["id"], a["id"])
    dispatch(t)  # outside the window: planned, queued until it opens (within its validity)
    [m] = messages(t, lead_id=a["id"])
    assert m["status"] == "queued"
    erase(t, number)
    [m] = messages(t, lead_id=a["id"])
    assert (m["status"], m["phone"], m["body"]) == ("dropped", None, None)
    [e] = enrolments(t, lead_id=a["id"])
    assert (e["status"], e["reason"]) == ("exited", "erased")
    clock.advance(hours=3)
    dispatch(t)
    assert count_rows(t, "sms_nurture_log_sent") == 0
    assert [m["status"] for m in messages(t, lead_id=a["id"])] == ["dropped"]


def test_an_opted_out_person_stays_suppressed_after_the_erasure(app):
    t = sms_tenant(app)
    number, name, a, seq = texted_and_replied(t, reply=STOP)
    free_number, *_ = texted_and_replied(t)  # another person, who never opted out
    erase(t, number)
    erase(t, free_number)
    assert_forgotten(t, number, number.removeprefix("+86"), name)
    assert count_rows(t, "sms_nurture_erased_suppression") == 1
    sent_before = count_rows(t, "sms_nurture_log_sent")
    # New leads with the numbers, consent and all: the opted-out one is never texted, the other one is.
    b, c = lead(t, number), lead(t, free_number)
    enrol(t, seq["id"], b["id"], c["id"])
    dispatch(t)
    [m] = messages(t, lead_id=b["id"])
    assert (m["status"], m["reason"]) == ("skipped", "phone opted out (before an erasure)")
    assert [m["status"] for m in messages(t, lead_id=c["id"])] == ["sent"]
    assert count_rows(t, "sms_nurture_log_sent") == sent_before + 1
    # The person opts in again: the hashed suppression is lifted with the evidence why.
    r = t.post("/api/v1/sms_nurture/suppressions/remove",
               json={"phone": number, "source": "call", "text": "客户来电要求恢复"})
    assert r.status_code == 200 and r.get_json()["suppressed_at"] is None
    assert count_rows(t, "sms_nurture_erased_suppression") == 0
    other = sequence(t, 0)
    enrol(t, other["id"], b["id"])
    dispatch(t)
    assert [m["status"] for m in messages(t, sequence_id=other["id"])] == ["sent"]


def test_the_plugin_erases_while_switched_off_and_twice(app):
    t = sms_tenant(app)
    number, name, a, seq = texted_and_replied(t, reply=STOP)
    assert t.put("/api/v1/plugins/sms_nurture", json={"enabled": False}).status_code == 200
    done = erase(t, number)
    assert_forgotten(t, number, number.removeprefix("+86"), name)
    assert count_rows(t, "sms_nurture_erased_suppression") == 1
    with t.runtime.sessions() as s:
        before = sorted(map(tuple, s.execute(text(
            "SELECT phone_hash, suppressed_at FROM sms_nurture_erased_suppression WHERE tenant_id = :t"),
            {"t": t.id})))
    # Delivered again (at least once): it finds nothing left and succeeds, the suppression kept as it was.
    event = Event(id=done["event_id"], name="person_erased", tenant_id=t.id, created_at=t.runtime.clock(),
                  actor_id=None, items=(MappingProxyType({"lead_id": a["id"]}),))
    with tenant_context(t.runtime, t.id) as ctx:
        hooks.person_erased(ctx, event)
        ctx.session.commit()
    assert_forgotten(t, number, number.removeprefix("+86"), name)
    with t.runtime.sessions() as s:
        after = sorted(map(tuple, s.execute(text(
            "SELECT phone_hash, suppressed_at FROM sms_nurture_erased_suppression WHERE tenant_id = :t"),
            {"t": t.id})))
    assert after == before and len(after) == 1
    # Back on, a new lead with the number is still never texted.
    assert t.put("/api/v1/plugins/sms_nurture", json={"enabled": True}).status_code == 200
    b = lead(t, number)
    enrol(t, seq["id"], b["id"])
    dispatch(t)
    assert [m["status"] for m in messages(t, lead_id=b["id"])] == ["skipped"]
