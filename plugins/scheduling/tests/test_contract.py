"""Generated requests (Schemathesis) against every scheduling route: no 5xx, every answer as documented."""

from __future__ import annotations

from pelago.testing import check_routes

from .helpers import ok, school


def test_every_route_answers_within_its_contract(app, tenant, clock):
    s = school(tenant)
    lead = s.student("13800000501")
    account = s.buy(lead)
    ok(s.post(f"/classes/{s.klass}/students", {"lead_id": lead, "account_id": account["id"]}), 201)
    lesson = ok(s.lesson("2026-03-02T08:00:00+08:00", "2026-03-02T09:00:00+08:00"), 201)
    trial = ok(s.post("/trials", {"lead_id": s.student("13800000502"), "lesson_id": lesson["id"]}), 201)
    feed = ok(s.post(f"/teachers/{s.teacher}/feed", {}), 201)
    values = {"account_id": [account["id"]], "class_id": [s.klass], "lesson_id": [lesson["id"]],
              "trial_id": [trial["id"]], "user_id": [s.teacher], "lead_id": [lead], "feed_id": [feed["id"]],
              "token": [feed["token"]]}
    checked = check_routes(app, "/api/v1/scheduling", tenant.headers("admin"), values=values, max_examples=3)
    assert len(checked) >= 35  # it raises, naming them, if any operation fails
