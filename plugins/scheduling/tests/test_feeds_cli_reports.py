"""The iCalendar feeds behind revocable tokens, ``pelago scheduling generate``, and the monthly report."""

from __future__ import annotations

from pelago.testing import invoke_cli

from .helpers import BASE, ok, school


def test_a_teachers_feed_is_public_behind_its_token_and_revocable(app, tenant, clock):
    s = school(tenant)
    ok(s.post("/series", {"class_id": s.klass, "rrule": "FREQ=WEEKLY;BYDAY=TU;COUNT=3", "start": "2026-03-03T18:00",
                          "duration_minutes": 60}), 201)
    lessons = sorted(ok(s.get("/lessons", query_string={"class_id": s.klass}))["items"], key=lambda x: x["starts_at"])
    ok(s.post(f"/lessons/{lessons[1]['id']}/cancel", {"reason": "sports day"}))
    feed = ok(s.post(f"/teachers/{s.teacher}/feed", {}), 201)
    client = tenant.client()  # no API key: the token is the credential
    r = client.get(feed["path"])
    assert r.status_code == 200 and r.mimetype == "text/calendar"
    body = r.get_data(as_text=True)
    assert body.startswith("BEGIN:VCALENDAR\r\n") and body.count("BEGIN:VEVENT") == 3
    assert "DTSTART:20260303T100000Z" in body and "RECURRENCE-ID:20260310T100000Z" in body
    assert "STATUS:CANCELLED" in body and "sports day" in body and "LOCATION:A101" in body
    assert client.get(f"{BASE}/feeds/not-a-token.ics").status_code == 404
    assert s.t.call("DELETE", f"{BASE}/feeds/{feed['id']}").status_code == 204
    assert client.get(feed["path"]).status_code == 404
    # a student's feed, and a tenant that switched scheduling off answers 404 to its feeds
    lead = s.student("13800000401")
    ok(s.post(f"/classes/{s.klass}/students", {"lead_id": lead}), 201)
    student = ok(s.post(f"/students/{lead}/feed", {}), 201)
    assert client.get(student["path"]).get_data(as_text=True).count("BEGIN:VEVENT") == 3
    ok(tenant.put("/api/v1/plugins/scheduling", json={"enabled": False}))
    assert client.get(student["path"]).status_code == 404


def test_generate_a_term_from_the_shell(app, tenant, clock):
    s = school(tenant)
    second = s.new_class("Maths G6", teacher=tenant.users["rep2"], room=None)
    result = invoke_cli(tenant.runtime, "scheduling", "generate", "--tenant", tenant.slug,
                        "--rrule", "FREQ=WEEKLY;BYDAY=TU,SA;COUNT=10", "--start", "2026-09-15T09:00",
                        "--duration", "90")
    assert result.exit_code == 0, result.output
    assert f"{tenant.slug}: 2 series, 12 lessons" in result.output
    assert len(ok(s.get("/lessons", query_string={"class_id": second}))["items"]) == 6
    again = invoke_cli(tenant.runtime, "scheduling", "generate", "--tenant", tenant.slug, "--class", str(s.klass),
                       "--rrule", "FREQ=WEEKLY;BYDAY=TU;COUNT=2", "--start", "2026-09-15T09:30",
                       "--duration", "60", catch_exceptions=True)
    assert again.exit_code != 0 and "busy" in again.output


def test_the_monthly_report_counts_hours_and_revenue_in_the_tenants_months(app, tenant, clock):
    s = school(tenant, hours="10", price="1000.00")
    lead = s.student("13800000411")
    account = s.buy(lead)
    ok(s.post(f"/classes/{s.klass}/students", {"lead_id": lead, "account_id": account["id"]}), 201)
    lesson = ok(s.lesson("2026-03-02T08:00:00+08:00", "2026-03-02T09:30:00+08:00"), 201)
    ok(s.post(f"/lessons/{lesson['id']}/attendance", {"marks": [{"lead_id": lead, "status": "present"}]}))
    ok(s.post(f"/accounts/{account['id']}/refund", {"reason": "leaving"}))
    rows = ok(s.get("/reports/consumption", query_string={"month_from": "2026-02", "month_to": "2026-03"}))["items"]
    assert rows == [
        {"month": "2026-02", "hours": "0.00", "gift_hours": "0.00", "recognised": "0.00", "refunded": "0.00",
         "expired": "0.00"},
        {"month": "2026-03", "hours": "1.00", "gift_hours": "0.00", "recognised": "100.00", "refunded": "900.00",
         "expired": "0.00"},
    ]
    r = s.get("/reports/consumption", query_string={"month_from": "2026-03", "month_to": "2026-01"})
    assert r.status_code == 422 and "month_to" in r.get_json()["errors"]["query"]
