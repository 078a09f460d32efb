"""The rules checked at the moment of sending: windows across midnight, validity, caps, suppression, receipts.

The tenant is in Asia/Shanghai; the ``clock`` starts at 2026-03-02 02:00 UTC,
10:00 local.
"""

from __future__ import annotations

from datetime import datetime, time, timezone
from zoneinfo import ZoneInfo

from pelago.plugin import tenant_context
from pelago.plugins.sms_nurture import dispatch as planning
from pelago.plugins.sms_nurture import rules, text

from .sms_helpers import (
    count_rows,
    dispatch,
    enrol,
    enrolments,
    lead,
    messages,
    sequence,
    sms_activities,
    sms_tenant,
    stats,
    webhook,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_a_window_across_midnight():
    start, end = time(22, 0), time(8, 0)
    assert [rules.inside(datetime(2026, 3, 2, h, 30, tzinfo=SHANGHAI), start, end) for h in (21, 22, 23, 0, 7, 8, 12)] \
        == [False, True, True, True, True, False, False]
    at = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)  # 10:00 local
    assert rules.next_opening(at, SHANGHAI, start, end) == datetime(2026, 3, 2, 14, 0, tzinfo=timezone.utc)
    late = datetime(2026, 3, 2, 16, 30, tzinfo=timezone.utc)  # 00:30 local, inside
    assert rules.next_opening(late, SHANGHAI, start, end) == late


def test_a_message_due_in_quiet_hours_waits_for_the_window_across_midnight(app, clock):
    t = sms_tenant(app, window_start="22:00", window_end="08:00", validity_minutes=24 * 60)
    seq = sequence(t, 0)
    a = lead(t)
    enrol(t, seq["id"], a["id"])
    dispatch(t)
    [m] = messages(t, lead_id=a["id"])
    assert m["status"] == "queued" and m["reason"].startswith("quiet hours: waits for 2026-03-02 22:00")
    clock.advance(hours=11, minutes=59)  # 21:59 local: still quiet
    dispatch(t)
    assert messages(t, lead_id=a["id"])[0]["status"] == "queued"
    clock.advance(minutes=1)  # 22:00 local
    dispatch(t)
    [m] = messages(t, lead_id=a["id"])
    assert m["status"] == "sent" and count_rows(t, "sms_nurture_log_sent") == 1


def test_a_message_whose_window_opens_past_its_validity_is_dropped_with_the_reason(app, clock):
    t = sms_tenant(app, window_start="22:00", window_end="08:00")  # validity 4 h by default
    seq = sequence(t, 0)
    a = lead(t)
    enrol(t, seq["id"], a["id"])
    dispatch(t)
    [m] = messages(t, lead_id=a["id"])
    assert m["status"] == "dropped" and "past its validity" in m["reason"]
    clock.advance(hours=12)
    dispatch(t)
    assert messages(t, lead_id=a["id"])[0]["status"] == "dropped" and count_rows(t, "sms_nurture_log_sent") == 0


def test_a_message_not_dispatched_within_its_validity_is_dropped_never_sent_late(app, clock):
    t = sms_tenant(app)
    seq = sequence(t, 0)
    a = lead(t)
    enrol(t, seq["id"], a["id"])
    clock.advance(hours=1)
    dispatch(t)  # plans it (due 10:00), and sends it at 11:00, inside its 4 hours
    assert messages(t, lead_id=a["id"])[0]["status"] == "sent"
    b = lead(t)
    enrol(t, seq["id"], b["id"])
    clock.advance(hours=4, minutes=1)
    dispatch(t)
    [m] = messages(t, lead_id=b["id"])
    assert m["status"] == "dropped" and m["reason"].startswith("past its validity")
    assert count_rows(t, "sms_nurture_log_sent") == 1


def test_caps_count_every_sequence_sending_to_the_phone(app, clock):
    t = sms_tenant(app, weekly_cap=2)
    first, second = sequence(t, 0, 60 * 24, 60 * 24), sequence(t, 0)
    a = lead(t)
    enrol(t, first["id"], a["id"])
    enrol(t, second["id"], a["id"])
    dispatch(t)
    statuses = sorted((m["status"], m["reason"] or "") for m in messages(t, lead_id=a["id"]))
    assert statuses[0][0] == "sent" and statuses[1][0] == "skipped"
    assert statuses[1][1] == "frequency cap: 1 sent today, at most 1 a day"
    clock.advance(days=1)
    dispatch(t)  # day 2: the first sequence's second step, the second message of the week
    clock.advance(days=1)
    dispatch(t)  # day 3: a third this week is past the weekly cap of 2
    last = messages(t, lead_id=a["id"])[-1]
    assert last["status"] == "skipped" and last["reason"] == "frequency cap: 2 sent in 7 days, at most 2 a week"
    assert count_rows(t, "sms_nurture_log_sent") == 2 and len(sms_activities(t, a["id"])) == 2


def test_an_unconsented_phone_is_never_sent_to(app):
    t = sms_tenant(app)
    seq = sequence(t, 0)
    a = lead(t, with_consent=False)
    enrol(t, seq["id"], a["id"])
    dispatch(t)
    [m] = messages(t, lead_id=a["id"])
    assert (m["status"], m["reason"]) == ("skipped", "no consent on record for this phone")


def test_the_opt_out_words_trimmed_any_case_and_full_width():
    for word in ("T", "td", " 退订 ", "R", "STOP", "stop", "Unsubscribe", "ＴＤ", "ｓｔｏｐ", "退订。", "\u3000T\u3000"):
        assert text.is_opt_out(word), word
    for word in ("", "TT", "停", "stop it", "好的", "Tuesday"):
        assert not text.is_opt_out(word), word


def test_a_reply_tuiding_suppresses_the_phone_for_every_sequence(app):
    t = sms_tenant(app)
    first, second = sequence(t, 0, 60 * 24), sequence(t, 60 * 24)
    a = lead(t)
    enrol(t, first["id"], a["id"])
    enrol(t, second["id"], a["id"])
    dispatch(t)
    local = a["phone"].removeprefix("+86")
    r = webhook(t, "inbound", {"messages": [{"from": local, "text": " 退订 "}]})
    assert r.status_code == 200 and r.get_json() == {"accepted": 1, "moved": 1}
    assert {e["reason"] for e in enrolments(t, lead_id=a["id"])} == {"opted_out"}
    assert [m["status"] for m in messages(t, lead_id=a["id"])] == ["sent"]  # the rest never planned
    [s] = t.get("/api/v1/sms_nurture/suppressions").get_json()["items"]
    assert (s["phone"], s["suppressed_source"], s["suppressed_text"]) == (a["phone"], "reply:log", " 退订 ")
    assert stats(t, first["id"])["opted_out"] == 1 and stats(t, second["id"])["opted_out"] == 1
    third = sequence(t, 0)
    enrol(t, third["id"], a["id"])
    dispatch(t)
    assert messages(t, sequence_id=third["id"])[0]["reason"] == "phone opted out (reply:log)"
    r = t.post("/api/v1/sms_nurture/suppressions/remove",
               json={"phone": a["phone"], "source": "call", "text": "客户来电要求恢复"})
    assert r.status_code == 200 and r.get_json()["suppressed_at"] is None
    assert count_rows(t, "sms_nurture_evidence", "kind = 'unsuppress'") == 1


def test_any_other_reply_ends_the_sequence_as_replied(app):
    t = sms_tenant(app)
    seq = sequence(t, 0, 60)
    a = lead(t)
    enrol(t, seq["id"], a["id"])
    dispatch(t)
    assert webhook(t, "inbound", {"messages": [{"from": a["phone"], "text": "好的，周六几点？"}]}).status_code == 200
    assert enrolments(t, lead_id=a["id"])[0]["reason"] == "replied"
    assert stats(t, seq["id"])["replied"] == 1


def test_receipts_move_status_forward_only(app):
    t = sms_tenant(app)
    seq = sequence(t, 0, 60 * 24)
    a = lead(t)
    enrol(t, seq["id"], a["id"])
    dispatch(t)
    [m] = messages(t, lead_id=a["id"])
    r = webhook(t, "receipts", {"receipts": [{"id": m["our_id"], "status": "delivered"}]})
    assert r.get_json() == {"accepted": 1, "moved": 1}
    r = webhook(t, "receipts", {"receipts": [{"id": m["our_id"], "status": "failed", "error": "late"}]})
    assert r.get_json() == {"accepted": 1, "moved": 0}
    assert messages(t, lead_id=a["id"])[0]["status"] == "delivered"
    r = webhook(t, "receipts", {"receipts": [{"id": "nope", "status": "delivered"}]})
    assert r.get_json()["moved"] == 0
    assert stats(t, seq["id"])["delivered"] == 1


def test_an_unsigned_or_badly_signed_webhook_is_refused_and_writes_nothing(app):
    t = sms_tenant(app)
    a = lead(t)
    body = {"messages": [{"from": a["phone"], "text": "T"}]}
    assert webhook(t, "inbound", body, secret=None).status_code == 403
    assert webhook(t, "inbound", body, secret="wrong").status_code == 403
    assert webhook(t, "inbound", body, tenant="no-such-tenant").status_code == 404
    assert webhook(t, "inbound", body, provider="nobody").status_code == 404
    assert count_rows(t, "sms_nurture_inbound") == 0
    assert t.get("/api/v1/sms_nurture/suppressions").get_json()["items"] == []
    off = sms_tenant(app)
    assert off.put("/api/v1/plugins/sms_nurture", json={"enabled": False}).status_code == 200
    assert webhook(off, "inbound", body).status_code == 404


def test_editing_a_live_sequence_does_not_resend_what_was_sent(app, clock):
    t = sms_tenant(app, daily_cap=5)
    seq = sequence(t, 0, 60)
    a = lead(t)
    enrol(t, seq["id"], a["id"])
    dispatch(t)
    step1 = seq["steps"][0]["id"]
    assert t.patch(f"/api/v1/sms_nurture/sequences/{seq['id']}/steps/{step1}",
                   json={"delay_minutes": 5}).status_code == 200
    tpl = seq["steps"][0]["template_id"]
    assert t.patch(f"/api/v1/sms_nurture/templates/{tpl}", json={"body": "新的内容 {name}"}).status_code == 200
    clock.advance(hours=1)
    dispatch(t)
    ms = messages(t, lead_id=a["id"])
    assert [m["step_id"] for m in ms] == [step1, seq["steps"][1]["id"]]
    assert "春季班" in ms[0]["body"] and ms[1]["body"].startswith("新的内容")
    assert count_rows(t, "sms_nurture_log_sent") == 2


def test_a_paused_sequence_plans_and_sends_nothing_until_resumed(app, clock):
    t = sms_tenant(app)
    seq = sequence(t, 30)
    a = lead(t)
    enrol(t, seq["id"], a["id"])
    assert t.patch(f"/api/v1/sms_nurture/sequences/{seq['id']}", json={"status": "paused"}).status_code == 200
    clock.advance(hours=1)
    dispatch(t)
    assert messages(t, lead_id=a["id"]) == []
    assert t.patch(f"/api/v1/sms_nurture/sequences/{seq['id']}", json={"status": "active"}).status_code == 200
    dispatch(t)
    assert [m["status"] for m in messages(t, lead_id=a["id"])] == ["sent"]


def test_a_batch_of_skips_does_not_end_the_run_before_the_rest_is_sent(app):
    t = sms_tenant(app, batch=1)
    seq = sequence(t, 0)
    a, b = lead(t, with_consent=False), lead(t)
    enrol(t, seq["id"], a["id"], b["id"])
    with tenant_context(t.runtime, t.id) as ctx:
        assert planning.plan(ctx, 10) == 2  # both due; the first claim (batch 1) only skips
    dispatch(t)
    assert [m["status"] for m in messages(t, sequence_id=seq["id"])] == ["skipped", "sent"]


def test_a_receipt_never_moves_a_message_that_was_not_sent(app):
    t = sms_tenant(app, window_start="22:00", window_end="08:00", validity_minutes=24 * 60)
    seq = sequence(t, 0)
    a = lead(t)
    enrol(t, seq["id"], a["id"])
    dispatch(t)
    [m] = messages(t, lead_id=a["id"])
    assert m["status"] == "queued"  # waiting for its window
    r = webhook(t, "receipts", {"receipts": [{"id": m["our_id"], "status": "delivered"}]})
    assert r.get_json() == {"accepted": 1, "moved": 0}
    assert messages(t, lead_id=a["id"])[0]["status"] == "queued" and sms_activities(t, a["id"]) == []
