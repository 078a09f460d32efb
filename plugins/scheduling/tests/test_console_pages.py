"""Scheduling's console pages: the week timetable, roll-call as a form, students' accounts."""

from __future__ import annotations

from pelago.testing import ConsoleClient

from .helpers import ok, school

P = "/console/p/scheduling"


def _lesson(s, day: str, hour: int = 9) -> int:
    return int(ok(s.lesson(f"2026-03-{day}T{hour:02d}:00:00+08:00", f"2026-03-{day}T{hour + 1:02d}:00:00+08:00"),
                  201)["id"])


def _enrolled(s, phone: str, who: str = "admin", **fields) -> tuple[int, dict]:
    lead = int(s.t.lead(phone, who=who, **fields)["id"])
    account = s.buy(lead)
    ok(s.post(f"/classes/{s.klass}/students", {"lead_id": lead, "account_id": account["id"]}), 201)
    return lead, account


def test_week_timetable_per_teacher_room_class(app, tenant, clock):
    s = school(tenant)
    this_week, next_week = _lesson(s, "03", 16), _lesson(s, "10", 16)
    rep = ConsoleClient(tenant, "rep")
    page = rep.text(f"{P}/", query_string={"kind": "teacher", "id": s.teacher})
    assert f"/lessons/{this_week}" in page and f"/lessons/{next_week}" not in page
    assert "16:00–17:00" in page and "Maths G5" in page and 'week=2026-03-09' in page and 'week=2026-02-23' in page
    following = rep.text(f"{P}/", query_string={"kind": "room", "id": s.room, "week": "2026-03-11"})
    assert f"/lessons/{next_week}" in following and f"/lessons/{this_week}" not in following
    assert "2026-03-09" in following  # a Wednesday shows its week, from Monday
    assert f"/lessons/{this_week}" in rep.text(f"{P}/", query_string={"kind": "class", "id": s.klass,
                                                                       "week": "2026-03-02"})
    bad = rep.get(f"{P}/", query_string={"kind": "teacher", "week": "next tuesday"})
    assert bad.status_code == 200 and 'id="f-week-error"' in bad.get_data(as_text=True)
    assert "课表" in rep.text(f"{P}/", query_string={"lang": "zh-CN"})
    assert f"{P}/" in rep.text("/console/") and f"{P}/accounts" in rep.text("/console/")
    assert tenant.put("/api/v1/plugins/scheduling", json={"enabled": False}).status_code == 200
    assert rep.get(f"{P}/").status_code == 404 and rep.get(f"{P}/lessons/{this_week}").status_code == 404
    assert f"{P}/" not in rep.text("/console/")


def test_roll_call_form_charges_the_ledger(app, tenant, clock):
    s = school(tenant, hours="10")
    mine, _ = _enrolled(s, "13800000201", who="rep", name="小明")
    theirs, account = _enrolled(s, "13800000202", who="rep2", name="小红")
    lesson = _lesson(s, "02", 10)
    rep = ConsoleClient(tenant, "rep")
    page = rep.text(f"{P}/lessons/{lesson}")
    assert "小明" in page and "小红" not in page and f"#{theirs}" in page  # a rep sees her own students' names
    assert rep.post(f"{P}/lessons/{lesson}/attendance", {f"mark-{mine}": "present"}, csrf=False).status_code == 403
    bad = rep.post(f"{P}/lessons/{lesson}/attendance", {f"mark-{mine}": "asleep"})
    assert bad.status_code == 422 and f'id="mark-{mine}-error"' in bad.get_data(as_text=True)
    r = rep.post(f"{P}/lessons/{lesson}/attendance", {f"mark-{mine}": "present", f"mark-{theirs}": "late"})
    assert r.status_code == 302
    assert ok(s.get(f"/accounts/{account['id']}"))["remaining_hours"] == "9.00"
    # the same marks again charge nothing; an undo reverses the charge
    assert rep.post(f"{P}/lessons/{lesson}/attendance", {f"mark-{mine}": "present", f"mark-{theirs}": "late"}
                    ).status_code == 302
    assert ok(s.get(f"/accounts/{account['id']}"))["remaining_hours"] == "9.00"
    assert rep.post(f"{P}/lessons/{lesson}/attendance", {f"mark-{mine}": "present", f"mark-{theirs}": ""}
                    ).status_code == 302
    assert ok(s.get(f"/accounts/{account['id']}"))["remaining_hours"] == "10.00"
    later = _lesson(s, "05", 10)
    early = rep.post(f"{P}/lessons/{later}/attendance", {f"mark-{mine}": "present"})
    assert early.status_code == 422 and "errorlist" in early.get_data(as_text=True)
    assert rep.post(f"{P}/lessons/{later}/cancel", {"reason": "teacher ill"}).status_code == 403
    manager = ConsoleClient(tenant, "manager")
    assert manager.post(f"{P}/lessons/{later}/cancel", {"reason": ""}).status_code == 422
    assert manager.post(f"{P}/lessons/{later}/cancel", {"reason": "teacher ill"}).status_code == 302
    assert ok(s.get(f"/lessons/{later}"))["status"] == "cancelled"
    assert rep.get(f"{P}/lessons/999999").status_code == 404


def test_accounts_show_balances(app, tenant, clock):
    s = school(tenant, hours="20", gift="2")
    lead, account = _enrolled(s, "13800000301", who="rep", name="小刚")
    rep = ConsoleClient(tenant, "rep")
    page = rep.text(f"{P}/accounts")
    assert "小刚" in page and "20.00" in page and "2.00" in page
    one = rep.text(f"{P}/accounts/{account['id']}")
    assert 'id="remaining">22.00<' in one and "2027-03-02" in one
    assert f'/accounts/{account["id"]}' in rep.text(f"{P}/accounts", query_string={"lead_id": lead})
    bad = rep.get(f"{P}/accounts", query_string={"lead_id": "abc"})
    assert bad.status_code == 200 and 'id="f-lead_id-error"' in bad.get_data(as_text=True)
    assert rep.get(f"{P}/accounts/999999").status_code == 404


def test_the_leads_timeline_shows_trials_and_roll_calls(app, tenant, clock):
    s = school(tenant)
    student, _ = _enrolled(s, "13800000401", who="rep", name="小丽")
    prospect = int(tenant.lead("13800000402", who="rep", name="小亮")["id"])
    lesson = _lesson(s, "02", 10)
    trial = ok(s.post("/trials", {"lead_id": prospect, "lesson_id": lesson}), 201)
    ok(s.post(f"/trials/{trial['id']}/outcome", {"outcome": "attended"}))
    rep = ConsoleClient(tenant, "rep")
    assert rep.post(f"{P}/lessons/{lesson}/attendance", {f"mark-{student}": "late"}).status_code == 302
    page = rep.text(f"/console/leads/{prospect}")
    timeline = page[page.index('id="timeline"'):]
    assert timeline.count('data-plugin="scheduling"') == 2
    assert "已预约试听（Maths G5）" in timeline and "2026-03-02 10:00" in timeline and "已参加试听（Maths G5）" in timeline
    page = rep.text(f"/console/leads/{student}")
    timeline = page[page.index('id="timeline"'):]
    assert timeline.count('data-plugin="scheduling"') == 1 and "上课迟到（Maths G5）" in timeline
    assert tenant.put("/api/v1/plugins/scheduling", json={"enabled": False}).status_code == 200
    assert 'data-plugin="scheduling"' not in rep.text(f"/console/leads/{student}")
