"""conversions: rules, the outbox (once per lead and rule), the generic adapter, statuses, switching, bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from pelago.plugin import StageChange, Touch, sign_body
from pelago.testing import assert_models_match_migrations, check_routes, deliver_events, run_periodic

from .conv_helpers import account, channel, conversions, count, on, phone, rule, submit
from .stand_in import StandIn


@pytest.fixture
def platform(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    monkeypatch.setenv("PELAGO_OUTBOUND_ALLOW_PRIVATE", "1")
    p = StandIn().start()
    yield p
    p.stop()


def redeliver(t, names: tuple[str, ...]) -> dict[str, int]:
    """Deliver the tenant's already delivered events ``names`` to conversions again (at least once means twice)."""
    with t.runtime.engine.begin() as conn:
        conn.execute(text(
            "UPDATE core_event_delivery SET state = 'pending', next_attempt_at = NULL WHERE tenant_id = :t "
            "AND plugin = 'conversions' AND event_id IN (SELECT id FROM core_event WHERE tenant_id = :t "
            "AND name IN (" + ",".join(f"'{n}'" for n in names) + "))"), {"t": t.id})
    return deliver_events(t.runtime, t.id)


def test_models_match_migrations(engine, pelago_migration_host):
    assert_models_match_migrations(engine, pelago_migration_host)


def test_a_click_contacted_then_won_reaches_the_platform_exactly_twice(app, clock, platform):
    t = on(app)
    ch = channel(t)
    acct = account(t, platform.url, secret="s3cret")
    rule(t, acct["id"], "first_contact", "phone_connect", click_key="clickid")
    rule(t, acct["id"], "deal_won", "purchase")
    p = phone()
    lead = submit(t, ch, {"name": "王芳", "phone": p, "clickid": "CB-1", "id": "f-1", "campaign": "暑期"})
    assert platform.received == []  # a valid lead is not one of this tenant's rules
    clock.advance(hours=2)
    assert t.post(f"/api/v1/leads/{lead['lead_id']}/activities", json={"kind": "call", "note": "接通"},
                  who="manager").status_code == 201
    assert t.post(f"/api/v1/leads/{lead['lead_id']}/activities", json={"kind": "wechat", "note": "加微信"},
                  who="manager").status_code == 201  # a second contact: not a second conversion
    clock.advance(days=3)
    r = t.post(f"/api/v1/leads/{lead['lead_id']}/deals", json={"amount": "4800.00", "product": "60 课时",
                                      "kind": "first_purchase"})
    assert r.status_code == 201, r.get_json()
    t.post(f"/api/v1/leads/{lead['lead_id']}/deals", json={"amount": "1200.00", "product": "续费",
                                  "kind": "repurchase"})
    assert redeliver(t, ("lead_created", "activity_logged", "deal_won"))["delivered"] >= 3
    assert run_periodic(t.runtime, "conversions", "send", t.id) == {t.id: "done"}
    assert [(r.json["event_type"], r.json["click_id"], r.json["value"]) for r in platform.received] == [
        ("phone_connect", "CB-1", None), ("purchase", "CB-1", "4800.00")]
    first = platform.received[0]
    assert first.headers["x-pelago-signature"] == sign_body("s3cret", first.body)
    assert first.headers["idempotency-key"] == first.json["idempotency_key"]
    assert all(p[3:] not in r.body.decode() and "王芳" not in r.body.decode() for r in platform.received)  # no personal data
    assert first.json["occurred_at"] == "2026-03-02T04:00:00+00:00"
    rows = conversions(t, lead_id=lead["lead_id"])
    assert [(x["moment"], x["status"], x["attempts"]) for x in rows] == [
        ("first_contact", "accepted", 1), ("deal_won", "accepted", 1)]
    assert count(t, "conversions_conversion") == 2


def test_a_merged_lead_reports_once_for_the_click_the_rule_names(app, clock, platform):
    t = on(app)
    ch = channel(t)
    acct = account(t, platform.url)
    rule(t, acct["id"], "qualified", "first_touch_q", touch="first")
    rule(t, acct["id"], "qualified", "last_touch_q", touch="last")
    p = phone()
    lead = submit(t, ch, {"name": "赵", "phone": p, "clickid": "A", "id": "m-1"})
    clock.advance(hours=1)
    again = submit(t, ch, {"name": "赵", "phone": p, "clickid": "B", "id": "m-2"})
    assert again["status"] == "merged" and again["lead_id"] == lead["lead_id"]
    clock.advance(hours=1)
    assert t.post(f"/api/v1/leads/{lead['lead_id']}/stage", json={"stage": "qualified"}).status_code == 200
    redeliver(t, ("lead_stage_changed",))
    assert sorted((r.json["event_type"], r.json["click_id"]) for r in platform.received) == [
        ("first_touch_q", "A"), ("last_touch_q", "B")]


def test_an_old_click_expires_and_is_never_sent(app, clock, platform):
    t = on(app)
    ch = channel(t)
    acct = account(t, platform.url)
    rule(t, acct["id"], "deal_won", "purchase", window_days=7)
    lead = submit(t, ch, {"name": "钱", "phone": phone(), "clickid": "OLD", "id": "e-1"})
    clock.advance(days=7, seconds=1)
    t.post(f"/api/v1/leads/{lead['lead_id']}/deals", json={"amount": "100.00", "kind": "first_purchase"})
    run_periodic(t.runtime, "conversions", "send", t.id)
    [row] = conversions(t)
    assert row["status"] == "expired" and "7-day window" in row["message"] and row["attempts"] == 0
    assert platform.received == []


def test_a_rejection_keeps_the_message_and_is_not_retried_blindly(app, clock, platform):
    platform.answer = lambda r: (400, {"message": "callback 不存在"})
    t = on(app)
    ch = channel(t)
    acct = account(t, platform.url)
    rule(t, acct["id"], "valid_lead", "form")
    submit(t, ch, {"name": "孙", "phone": phone(), "clickid": "BAD", "id": "r-1"})
    clock.advance(days=2)
    run_periodic(t.runtime, "conversions", "send", t.id)
    [row] = conversions(t)
    assert (row["status"], row["answer_status"], row["attempts"]) == ("rejected", 400, 1)
    assert row["message"] == "HTTP 400: callback 不存在"
    assert len(platform.received) == 1
    # a user fixed it on the platform's side and asks again: sent once more, now accepted
    platform.answer = lambda r: (200, {"message": "ok"})
    r = t.post(f"/api/v1/conversions/conversions/{row['id']}/decision", json={"decision": "resend"})
    assert r.status_code == 200, r.get_json()
    [row] = conversions(t)
    assert row["status"] == "accepted" and len(platform.received) == 2
    r = t.post(f"/api/v1/conversions/conversions/{row['id']}/decision", json={"decision": "resend"})
    assert r.status_code == 409  # an accepted conversion is final


def test_transient_errors_back_off_then_fail(app, clock, platform):
    platform.answer = lambda r: (503, {"message": "busy"})
    t = on(app, max_attempts=3)
    ch = channel(t)
    acct = account(t, platform.url)
    rule(t, acct["id"], "valid_lead", "form")
    submit(t, ch, {"name": "李", "phone": phone(), "clickid": "T", "id": "t-1"})
    [row] = conversions(t)
    assert (row["status"], row["attempts"]) == ("queued", 1)
    assert row["next_attempt_at"] == "2026-03-02T10:01:00+08:00"  # one minute, in the tenant's timezone
    run_periodic(t.runtime, "conversions", "send", t.id)
    assert len(platform.received) == 1  # not due yet: the backoff holds
    clock.advance(minutes=1)
    run_periodic(t.runtime, "conversions", "send", t.id)
    clock.advance(minutes=2)
    run_periodic(t.runtime, "conversions", "send", t.id)
    [row] = conversions(t)
    assert (row["status"], row["attempts"], len(platform.received)) == ("failed", 3, 3)
    assert row["message"].startswith("gave up after 3 attempts")


def test_an_unreachable_platform_is_retried(app, clock, monkeypatch):
    monkeypatch.setenv("PELAGO_OUTBOUND_ALLOW_PRIVATE", "1")
    down = StandIn().start()
    url = down.url
    down.stop()  # nothing listens there any more
    t = on(app)
    ch = channel(t)
    rule(t, account(t, url)["id"], "valid_lead", "form")
    submit(t, ch, {"name": "周", "phone": phone(), "clickid": "U", "id": "u-1"})
    [row] = conversions(t)
    assert row["status"] == "queued" and row["message"].startswith("no answer: ConnectionRefusedError")


def test_deal_value_is_net_of_refunds_made_before_sending(app, clock, platform):
    platform.answer = lambda r: (503, {"message": "busy"})
    t = on(app)
    ch = channel(t)
    rule(t, account(t, platform.url)["id"], "deal_won", "purchase")
    lead = submit(t, ch, {"name": "吴", "phone": phone(), "clickid": "V", "id": "v-1"})
    deal = t.post(f"/api/v1/leads/{lead['lead_id']}/deals", json={"amount": "4800.00",
                                         "kind": "first_purchase"}).get_json()
    r = t.post(f"/api/v1/deals/{deal['id']}/refunds", json={"amount": "1200.50", "reason": "unused hours"})
    assert r.status_code == 201, r.get_json()
    platform.answer = lambda r: (200, {"message": "ok"})
    clock.advance(minutes=1)
    run_periodic(t.runtime, "conversions", "send", t.id)
    assert [r.json["value"] for r in platform.received] == ["4800.00", "3599.50"]
    assert platform.received[1].json["currency"] == "CNY"


def test_switched_off_nothing_is_queued_and_routes_404(app, clock, platform):
    t = on(app)
    ch = channel(t)
    rule(t, account(t, platform.url)["id"], "valid_lead", "form")
    assert t.put("/api/v1/plugins/conversions", json={"enabled": False}).status_code == 200
    submit(t, ch, {"name": "郑", "phone": phone(), "clickid": "OFF", "id": "o-1"})
    assert count(t, "conversions_conversion") == 0 and platform.received == []
    r = t.get("/api/v1/conversions/rules")
    assert r.status_code == 404 and "conversions" in r.get_json()["message"]
    assert t.get("/api/v1/conversions/funnel", query_string={"start": "2026-03-01", "end": "2026-03-02"}
                 ).status_code == 404


@pytest.mark.parametrize(("body", "field"), [
    ({"moment": "trial_booked"}, "moment"),
    ({"moment": "lead_born"}, "moment"),
    ({"window_days": -1}, "window_days"),
    ({"window_days": 0}, "window_days"),
    ({"touch": "middle"}, "touch"),
    ({"click_key": "a b"}, "click_key"),
    ({"account_id": 999999999}, "account_id"),
])
def test_bad_rules_are_422_with_the_field_and_write_nothing(app, platform, body, field):
    t = on(app)
    acct = account(t, platform.url)
    good = {"name": "r", "account_id": acct["id"], "channel": "ocean", "moment": "valid_lead", "event_type": "form"}
    r = t.post("/api/v1/conversions/rules", json={**good, **body})
    assert r.status_code == 422 and field in json.dumps(r.get_json()["errors"]), r.get_json()
    assert count(t, "conversions_rule") == 0


def test_bad_accounts_are_422(app, platform):
    t = on(app)
    for body, field in [
        ({"name": "a", "adapter": "nope", "url": platform.url}, "adapter"),
        ({"name": "a", "adapter": "generic"}, "url"),
        ({"name": "a", "adapter": "generic", "url": "ftp://x.example/"}, "url"),
        ({"name": "a", "adapter": "generic", "url": platform.url, "in_doubt": "maybe"}, "in_doubt"),
    ]:
        r = t.post("/api/v1/conversions/accounts", json=body)
        assert r.status_code == 422 and field in json.dumps(r.get_json()["errors"]), (body, r.get_json())
    assert count(t, "conversions_account") == 0


def test_another_tenants_objects_are_404_and_its_account_is_refused(app, platform):
    a, b = on(app), on(app)
    acct = account(a, platform.url)
    ru = rule(a, acct["id"], "valid_lead", "form")
    assert b.get(f"/api/v1/conversions/rules/{ru['id']}").status_code == 404
    assert b.patch(f"/api/v1/conversions/accounts/{acct['id']}", json={"name": "x"}).status_code == 404
    assert b.call("DELETE", f"/api/v1/conversions/rules/{ru['id']}").status_code == 404
    r = b.post("/api/v1/conversions/rules", json={"name": "r", "account_id": acct["id"], "channel": "c",
                                                   "moment": "valid_lead", "event_type": "form"})
    assert r.status_code == 422 and "account_id" in r.get_json()["errors"]["json"]
    assert b.get("/api/v1/conversions/rules").get_json()["items"] == []
    assert a.get("/api/v1/conversions/accounts").get_json()["items"][0]["has_secret"] is False


def test_status_per_lead_and_per_channel(app, clock, platform):
    t = on(app)
    ch, other = channel(t), channel(t, "kuai")
    acct = account(t, platform.url)
    r1 = rule(t, acct["id"], "valid_lead", "form")
    r2 = rule(t, acct["id"], "valid_lead", "form", channel="kuai", window_days=1)
    submit(t, ch, {"name": "a", "phone": phone(), "clickid": "1", "id": "s-1"})
    submit(t, other, {"name": "b", "phone": phone(), "clickid": "2", "id": "s-2"})
    submit(t, ch, {"name": "c", "phone": phone(), "id": "s-3"})  # no click: nothing to report
    summary = t.get("/api/v1/conversions/conversions/summary").get_json()["items"]
    assert summary == [{"channel": "kuai", "rule_id": r2["id"], "counts": {"accepted": 1}},
                       {"channel": "ocean", "rule_id": r1["id"], "counts": {"accepted": 1}}]
    assert [x["channel"] for x in conversions(t, channel="kuai")] == ["kuai"]
    assert conversions(t, status="queued") == []


def test_touch_and_stage_change_are_on_the_surface(app):
    t = on(app)
    lead = t.lead(phone(), source="site")
    with t.runtime.tenant_session(t.id) as s:
        [touch] = s.scalars(select(Touch).where(Touch.lead_id == lead["id"])).all()
        assert touch.merged is False and touch.source == "site"
        assert [c.new for c in s.scalars(select(StageChange).where(StageChange.lead_id == lead["id"]))] == ["new"]


def test_the_send_command(app, clock, platform, pelago_cli):
    platform.answer = lambda r: (503, {"message": "busy"})
    t = on(app)
    ch = channel(t)
    rule(t, account(t, platform.url)["id"], "valid_lead", "form")
    submit(t, ch, {"name": "a", "phone": phone(), "clickid": "1", "id": "cli-1"})
    platform.answer = lambda r: (200, {})
    clock.advance(minutes=1)
    out = pelago_cli("conversions", "send", "--tenant", t.slug, env={"PELAGO_OUTBOUND_ALLOW_PRIVATE": "1"}).output
    assert out.strip() == f"{t.slug}: claimed 1; accepted 1"


def test_generated_requests(app, platform):
    t = on(app)
    acct = account(t, platform.url)
    ru = rule(t, acct["id"], "valid_lead", "form")
    check_routes(app, "/api/v1/conversions", t.headers("admin"),
                 values={"account_id": [acct["id"]], "conversion_rule_id": [ru["id"]], "rule_id": [ru["id"]]}, max_examples=5)


def test_rule_changes_and_deletes(app, platform):
    t = on(app)
    acct = account(t, platform.url)
    ru = rule(t, acct["id"], "valid_lead", "form")
    r = t.patch(f"/api/v1/conversions/rules/{ru['id']}", json={"active": False, "window_days": 3})
    assert r.status_code == 200 and (r.get_json()["active"], r.get_json()["window_days"]) == (False, 3)
    assert t.patch(f"/api/v1/conversions/rules/{ru['id']}", json={"window_days": -3}).status_code == 422
    assert t.call("DELETE", f"/api/v1/conversions/accounts/{acct['id']}").status_code == 204
    assert count(t, "conversions_rule") == 0  # its rules went with it
    assert t.get("/api/v1/conversions/rules", who="rep").status_code == 403


def test_adapters_list(app):
    t = on(app)
    names = [a["name"] for a in t.get("/api/v1/conversions/adapters").get_json()["items"]]
    assert "generic" in names


def test_backoff_doubles_and_stops_at_six_hours():
    from pelago.plugins.conversions.sending import backoff

    assert [backoff(n) for n in (1, 2, 3)] == [timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=4)]
    assert backoff(20) == timedelta(hours=6)
