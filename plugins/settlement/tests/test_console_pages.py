"""Settlement's console pages: branches, policy versions, statements with the lock, a deal's credits."""

from __future__ import annotations

from pelago.testing import ConsoleClient

from .money_helpers import FLAT_10, S, branch, on, owned, plan, team, won

P = "/console/p/settlement"


def test_pages_follow_the_switch_and_the_roles(app):
    t = on(app)
    b = branch(t, team_id=t.team_id)
    rep, admin = ConsoleClient(t, "rep"), ConsoleClient(t, "admin")
    home = rep.text(f"{P}/")
    assert "Shanghai" in home and 'action="/console/p/settlement/branches"' not in home  # no create form for a rep
    assert rep.text(f"{P}/branches/{b}").count("Sales") == 1
    for page in ("/policies", "/statements"):
        assert rep.get(P + page).status_code == 403
    assert rep.post(f"{P}/branches", {"name": "X", "timezone": "UTC"}).status_code == 403
    menu = admin.text("/console/")
    assert f"{P}/" in menu and f"{P}/policies" in menu
    assert f"{P}/policies" not in rep.text("/console/")  # a manager's entry
    zh = ConsoleClient(t, "manager")
    zh.get("/console/?lang=zh-CN")
    assert "分公司" in zh.text(f"{P}/", query_string={"lang": "zh-CN"})
    assert t.put("/api/v1/plugins/settlement", json={"enabled": False}).status_code == 200
    assert admin.get(f"{P}/").status_code == 404 and admin.get(f"{P}/statements").status_code == 404
    assert f"{P}/" not in admin.text("/console/")


def test_branch_forms_with_field_errors_and_csrf(app):
    t = on(app)
    admin = ConsoleClient(t, "admin")
    bad = admin.post(f"{P}/branches", {"name": "Beijing", "timezone": "Mars/Olympus"})
    assert bad.status_code == 422
    html = bad.get_data(as_text=True)
    assert 'id="f-timezone-error"' in html and 'value="Beijing"' in html
    r = admin.post(f"{P}/branches", {"name": "Beijing", "timezone": "Asia/Shanghai", "currency": "CNY"})
    assert r.status_code == 302
    b = t.get(f"{S}/branches").get_json()["items"][0]["id"]
    taken = admin.post(f"{P}/branches", {"name": "Beijing", "timezone": "UTC"})
    assert taken.status_code == 409 and 'id="f-name-error"' in taken.get_data(as_text=True)
    assert admin.post(f"{P}/branches", {"name": "Nanjing", "timezone": "UTC"}, csrf=False).status_code == 403
    assert len(t.get(f"{S}/branches").get_json()["items"]) == 1
    assert admin.post(f"{P}/branches/{b}/teams", {"team_id": str(t.team_id)}).status_code == 302
    assert t.get(f"{S}/branches/{b}").get_json()["team_ids"] == [t.team_id]
    assert admin.post(f"{P}/branches/{b}", {"name": "北京", "timezone": "Asia/Shanghai", "currency": "cny",
                                             "active": "1"}).status_code == 422
    assert admin.post(f"{P}/branches/{b}", {"name": "北京", "timezone": "Asia/Shanghai", "currency": "CNY"}
                      ).status_code == 302
    shown = t.get(f"{S}/branches/{b}").get_json()
    assert shown["name"] == "北京" and shown["active"] is False
    assert admin.post(f"{P}/branches/{b}/teams/{t.team_id}/remove").status_code == 302
    assert t.get(f"{S}/branches/{b}").get_json()["team_ids"] == []
    assert admin.get(f"{P}/branches/999999").status_code == 404


def test_policy_versions_from_the_form(app):
    t = on(app)
    b1 = branch(t, "Shanghai", team_id=t.team_id)
    b2 = branch(t, "Beijing", team_id=team(t, "North"))
    admin = ConsoleClient(t, "admin")
    north = t.get(f"{S}/branches/{b2}").get_json()["team_ids"][0]
    wrong = admin.post(f"{P}/policies", {f"weight-{b1}": "3", f"team-{b1}": str(north)})
    assert wrong.status_code == 422 and f'id="f-team-{b1}-error"' in wrong.get_data(as_text=True)
    zero = admin.post(f"{P}/policies", {f"weight-{b1}": "0", f"team-{b1}": str(t.team_id)})
    assert zero.status_code == 422 and f'id="f-weight-{b1}-error"' in zero.get_data(as_text=True)
    ok = admin.post(f"{P}/policies", {f"weight-{b1}": "3", f"team-{b1}": str(t.team_id), f"weight-{b2}": "1",
                                      f"team-{b2}": str(north), f"cap-{b2}": "20", "note": "spring"})
    assert ok.status_code == 302, ok.get_data(as_text=True)
    policies = t.get(f"{S}/policies").get_json()["items"]
    assert [(e["branch_id"], e["weight"], e["daily_cap"]) for e in policies[0]["entries"]] == [(b1, 3, None), (b2, 1, 20)]
    page = ConsoleClient(t, "manager").text(f"{P}/policies")
    assert "spring" in page and 'id="new-policy"' not in page


def test_statement_lock_and_credits(app, clock):
    t = on(app)
    b = branch(t, team_id=t.team_id)
    plan(t, b, FLAT_10)
    deal = won(t, owned(t, "13800149001", "rep")["id"], "1000.00")
    manager, admin = ConsoleClient(t, "manager"), ConsoleClient(t, "admin")
    page = manager.text(f"{P}/statements", query_string={"branch_id": b, "period": "2026-03"})
    assert "1000.00" in page and "100.00" in page and 'id="lock"' not in page
    assert manager.post(f"{P}/periods/lock", {"period": "2026-03"}).status_code == 403
    other = branch(t, "Beijing", team_id=team(t, "North"))  # not the manager's branch
    assert manager.get(f"{P}/statements", query_string={"branch_id": other, "period": "2026-13"}).status_code == 404
    assert admin.get(f"{P}/statements", query_string={"branch_id": other}).status_code == 200
    bad = manager.get(f"{P}/statements", query_string={"branch_id": b, "period": "2026-13"})
    assert bad.status_code == 200 and 'id="f-period-error"' in bad.get_data(as_text=True)
    early = admin.post(f"{P}/periods/lock", {"period": "2026-03"})  # not ended yet
    assert early.status_code == 409
    assert admin.post(f"{P}/periods/lock", {"period": "March"}).status_code == 422
    clock.advance(days=31)
    manager, admin = ConsoleClient(t, "manager"), ConsoleClient(t, "admin")  # the old sessions expired
    r = admin.post(f"{P}/periods/lock", {"period": "2026-03", "branch_id": str(b)})
    assert r.status_code == 302 and "/statements" in r.headers["Location"]
    assert t.get(f"{S}/periods", query_string={"key": "2026-03"}).get_json()["items"][0]["state"] == "locked"
    credits = manager.text(f"{P}/deals/{deal['id']}/credits")
    assert "1000.00" in credits and 'id="credit-version-1"' in credits
    assert ConsoleClient(t, "rep").get(f"{P}/deals/{deal['id']}/credits").status_code == 403
    assert manager.get(f"{P}/deals/999999/credits").status_code == 404
    assert manager.get(f"{P}/deals", query_string={"deal_id": str(deal["id"])}).status_code == 302


def test_dashboard_panel_counts_todays_division_by_branch(app):
    from .division_helpers import policy, two_branches

    s = two_branches(app)
    policy(s, 60, 40)
    for i in range(5):
        s.t.lead(f"1380013{i:04d}", source="web")
    admin = ConsoleClient(s.t, "admin")
    admin.post("/console/language", {"locale": "en", "next": "/console/"})
    home = admin.text("/console/")
    panel = home[home.index('id="panel-settlement-today"'):]
    assert "Leads divided today by branch" in panel and 'id="settlement-today-total">5<' in panel
    assert "<th>Shanghai</th><td>3</td>" in panel and "<th>Wuhan</th><td>2</td>" in panel
    assert 'id="panel-settlement-today"' not in ConsoleClient(s.t, "rep").text("/console/")  # managers and up
    other = two_branches(app)  # another tenant's branches of the same names: its own counts only
    assert 'id="settlement-today-total">0<' in ConsoleClient(other.t, "admin").text("/console/")
    assert s.t.put("/api/v1/plugins/settlement", json={"enabled": False}).status_code == 200
    assert 'id="panel-settlement-today"' not in admin.text("/console/")
