"""Templates, sequences, enrolment and the dispatch on the ``log`` provider, end to end through the API."""

from __future__ import annotations

from pelago.testing import assert_models_match_migrations, new_tenant

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
    template,
)


def test_models_match_migrations(engine, pelago_migration_host):
    assert_models_match_migrations(engine, pelago_migration_host)


def test_a_step_is_sent_once_through_the_log_provider_and_shows_in_the_leads_history(app, clock):
    t = sms_tenant(app, signature="学而思")
    seq = sequence(t, 0, 60 * 24)
    a = lead(t, name="张三")
    assert enrol(t, seq["id"], a["id"]) == {"enrolled": [a["id"]], "refused": {}}
    dispatch(t)
    [m] = messages(t, lead_id=a["id"])
    assert m["status"] == "sent" and m["body"] == "【学而思】张三您好，春季班开课啦，回T退订"
    assert m["our_id"] == f"{t.id}-{enrolments(t, lead_id=a['id'])[0]['id']}-{seq['steps'][0]['id']}"
    assert count_rows(t, "sms_nurture_log_sent") == 1
    [act] = sms_activities(t, a["id"])
    assert "春季班" in act["note"]
    dispatch(t)  # nothing more is due: nothing more is sent
    assert count_rows(t, "sms_nurture_log_sent") == 1 and len(messages(t, lead_id=a["id"])) == 1
    clock.advance(days=1)
    dispatch(t)
    assert [m["status"] for m in messages(t, lead_id=a["id"])] == ["sent", "sent"]
    assert count_rows(t, "sms_nurture_log_sent") == 2
    s = stats(t, seq["id"])
    assert (s["enrolled"], s["sent"], s["active"]) == (1, 2, 0)


def test_a_second_enrolment_in_the_same_pass_is_refused_and_another_pass_waits_for_the_first(app):
    t = sms_tenant(app)
    seq = sequence(t, 60)
    a = lead(t)
    enrol(t, seq["id"], a["id"])
    again = enrol(t, seq["id"], a["id"])
    assert again["enrolled"] == [] and "already enrolled" in again["refused"][str(a["id"])]
    other_pass = enrol(t, seq["id"], a["id"], pass_key="spring")
    assert other_pass["enrolled"] == []  # one active enrolment per (lead, sequence)
    r = t.post(f"/api/v1/sms_nurture/enrolments/{enrolments(t, lead_id=a['id'])[0]['id']}/exit", json={})
    assert r.status_code == 200 and r.get_json()["status"] == "exited"
    assert enrol(t, seq["id"], a["id"], pass_key="spring")["enrolled"] == [a["id"]]
    assert enrol(t, seq["id"], a["id"])["enrolled"] == []  # the first pass, still refused
    assert count_rows(t, "sms_nurture_enrolment") == 2


def test_bad_input_is_a_422_naming_the_field_and_writes_nothing(app):
    t = sms_tenant(app)
    r = t.post("/api/v1/sms_nurture/templates", json={"name": "x", "body": "{name}，{coupon_code} 到期"})
    assert r.status_code == 422 and "coupon_code" in str(r.get_json()["errors"]["json"]["body"])
    r = t.post("/api/v1/sms_nurture/templates", json={"name": "x", "body": "{name"})
    assert r.status_code == 422
    tpl = template(t)
    r = t.post("/api/v1/sms_nurture/sequences", json={"name": "s", "steps": [
        {"template_id": tpl, "delay_minutes": 0, "window_start": "10:00", "window_end": "10:00"}]})
    assert r.status_code == 422 and "window_end" in r.get_json()["errors"]["json"]["steps"]["0"]
    r = t.post("/api/v1/sms_nurture/sequences", json={"name": "s", "steps": [{"template_id": tpl, "delay_minutes": -5}]})
    assert r.status_code == 422 and "delay_minutes" in r.get_json()["errors"]["json"]["steps"]["0"]
    r = t.put("/api/v1/plugins/sms_nurture", json={"settings": {"window_start": "09:00", "window_end": "09:00"}})
    assert r.status_code == 422
    assert count_rows(t, "sms_nurture_sequence") == 0 and count_rows(t, "sms_nurture_template") == 1


def test_preview_counts_characters_and_segments(app):
    t = sms_tenant(app, signature="ABC")
    a = lead(t, name="李四")
    tpl = template(t, "{name}" + "好" * 64)
    r = t.get(f"/api/v1/sms_nurture/templates/{tpl}/preview", query_string={"lead_id": a["id"]})
    p = r.get_json()
    assert (p["encoding"], p["characters"], p["segments"], p["per_segment"]) == ("UCS-2", 71, 2, 67)
    r = t.get(f"/api/v1/sms_nurture/templates/{tpl}/preview", query_string={"body": "x" * 155})
    assert (r.get_json()["encoding"], r.get_json()["units"], r.get_json()["segments"]) == ("UCS-2", 160, 3)  # 【】
    r = t.get(f"/api/v1/sms_nurture/templates/{tpl}/preview")
    assert r.get_json()["text"].startswith("【ABC】{name}")
    plain = sms_tenant(app)
    tpl = template(plain, "x")
    for body, expected in (("x" * 160, ("GSM-7", 1, 160)), ("x" * 161, ("GSM-7", 2, 153)),
                           ("€" * 80, ("GSM-7", 1, 160)), ("€" * 81, ("GSM-7", 2, 153)),
                           ("好" * 70, ("UCS-2", 1, 70)), ("好" * 68, ("UCS-2", 1, 70)), ("好" * 135, ("UCS-2", 3, 67))):
        p = plain.get(f"/api/v1/sms_nurture/templates/{tpl}/preview", query_string={"body": body}).get_json()
        assert (p["encoding"], p["segments"], p["per_segment"]) == expected, body


def test_another_tenants_objects_are_404_and_a_tenant_with_the_plugin_off_gets_404(app):
    t = sms_tenant(app)
    seq = sequence(t, 0)
    other = sms_tenant(app)
    assert other.get(f"/api/v1/sms_nurture/sequences/{seq['id']}").status_code == 404
    assert other.post(f"/api/v1/sms_nurture/sequences/{seq['id']}/enrolments",
                      json={"lead_ids": [1]}).status_code == 404
    off = new_tenant(app)
    r = off.get("/api/v1/sms_nurture/sequences")
    assert r.status_code == 404 and "sms_nurture" in r.get_json()["message"]
