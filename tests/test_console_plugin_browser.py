"""The bundled plugins' console pages in real headless Chromium: each renders in zh-CN, every form control has
a label, nothing is cut off at phone width, and its zh-CN screenshot goes to docs/screenshots/plugin-*.png.

Uses the browser fixtures of tests/test_console_browser.py (SQLite pass only; skipped without the browser
unless ``PELAGO_REQUIRE_SERVICES=1``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from pelago.testing import TenantHandle, new_tenant
from tests.console_kit import set_passwords
from tests.test_console_browser import _named, _shot, _sign_in, _text, browser, serve  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser

PLUGINS = ("pool", "settlement", "sms_nurture", "scheduling", "conversions")

#: every form control without a label (or aria-label), and how much wider than the window the page is
CHECK = """
const bad = [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.name || e.id);
return [bad, document.documentElement.scrollWidth - window.innerWidth];
"""


def _ok(r: Any, status: int = 201) -> Any:
    assert r.status_code == status, r.get_json()
    return r.get_json()


def _seed(t: TenantHandle) -> dict[str, int]:
    """A little of everything, through the plugins' APIs, so each page has something to show."""
    for name in PLUGINS:
        _ok(t.put(f"/api/v1/plugins/{name}", json={"enabled": True}), 200)
    ids: dict[str, int] = {}
    b = _ok(t.post("/api/v1/settlement/branches", json={"name": "上海分公司", "timezone": "Asia/Shanghai"}))["id"]
    _ok(t.put(f"/api/v1/settlement/branches/{b}/teams/{t.team_id}"), 200)
    _ok(t.post("/api/v1/settlement/policies", json={"entries": [{"branch_id": b, "team_id": t.team_id,
                                                                 "weight": 3, "daily_cap": 50}], "note": "春季"}))
    ids["branch"] = b
    tpl = _ok(t.post("/api/v1/sms_nurture/templates", json={"name": "开课提醒", "body": "{name}您好，春季班开课啦"}))
    seq = _ok(t.post("/api/v1/sms_nurture/sequences", json={"name": "新线索培育", "trigger": "not_contacted",
                                                             "trigger_hours": 24, "steps": [
                                                                 {"template_id": tpl["id"], "delay_minutes": 0}]}))
    ids["template"], ids["sequence"] = tpl["id"], seq["id"]
    base = "/api/v1/scheduling"
    campus = _ok(t.post(f"{base}/campuses", json={"name": "徐汇校区", "timezone": "Asia/Shanghai"}))["id"]
    room = _ok(t.post(f"{base}/rooms", json={"campus_id": campus, "name": "A101", "capacity": 12}))["id"]
    _ok(t.post(f"{base}/teachers", json={"user_id": t.users["rep"]}))
    course = _ok(t.post(f"{base}/courses", json={"name": "数学", "subject": True}))["id"]
    package = _ok(t.post(f"{base}/packages", json={"course_id": course, "name": "数学 20 课时", "hours": "20",
                                                   "gift_hours": "2", "price": "4000.00", "validity_days": 365}))["id"]
    klass = _ok(t.post(f"{base}/classes", json={"name": "五年级数学", "kind": "small_group", "campus_id": campus,
                                                 "course_id": course, "teacher_id": t.users["rep"],
                                                 "room_id": room, "capacity": 8}))["id"]
    student = t.lead("13800138901", who="admin", name="王小明")["id"]
    account = _ok(t.post(f"{base}/accounts", json={"lead_id": student, "package_id": package}))["id"]
    _ok(t.post(f"{base}/classes/{klass}/students", json={"lead_id": student, "account_id": account}))
    lesson = _ok(t.post(f"{base}/lessons", json={"class_id": klass, "starts_at": "2026-03-02T09:30:00+08:00",
                                                 "ends_at": "2026-03-02T11:00:00+08:00"}))["id"]
    ids.update(teacher=t.users["rep"], lesson=lesson, account=account)
    acct = _ok(t.post("/api/v1/conversions/accounts", json={"name": "巨量引擎", "adapter": "generic",
                                                            "url": "https://ads.example.com/cb", "secret": "tok"}))
    _ok(t.post("/api/v1/conversions/rules", json={"name": "成交回传", "account_id": acct["id"], "channel": "ocean",
                                                  "moment": "deal_won", "event_type": "purchase"}))
    return ids


def test_plugin_pages_in_zh_cn(browser: Any, serve: Callable[[Flask], str],  # noqa: F811 - the fixtures
                               make_app: Callable[..., Flask]) -> None:
    app = make_app(plugins=PLUGINS)
    tenant = new_tenant(app)
    _named(tenant, "示例教育")
    set_passwords(tenant)
    ids = _seed(tenant)
    base = serve(app)
    driver = browser
    _sign_in(driver, base, tenant, "admin")
    pages = {
        "settlement-branches": ("/console/p/settlement/", "上海分公司"),
        "settlement-policy": ("/console/p/settlement/policies", "春季"),
        "settlement-statement": (f"/console/p/settlement/statements?branch_id={ids['branch']}", "结算单"),
        "sms-sequences": ("/console/p/sms_nurture/", "新线索培育"),
        "sms-sequence": (f"/console/p/sms_nurture/sequences/{ids['sequence']}", "开课提醒"),
        "sms-template": (f"/console/p/sms_nurture/templates/{ids['template']}", "条数"),
        "sms-messages": ("/console/p/sms_nurture/messages", "短信记录"),
        "scheduling-week": (f"/console/p/scheduling/?kind=teacher&id={ids['teacher']}&week=2026-03-02", "五年级数学"),
        "scheduling-roll-call": (f"/console/p/scheduling/lessons/{ids['lesson']}", "王小明"),
        "scheduling-accounts": ("/console/p/scheduling/accounts", "王小明"),
        "scheduling-account": (f"/console/p/scheduling/accounts/{ids['account']}", "22.00"),
        "conversions-accounts": ("/console/p/conversions/accounts", "巨量引擎"),
        "conversions-rules": ("/console/p/conversions/", "成交回传"),
        "conversions-sent": ("/console/p/conversions/sent", "回传记录"),
        "conversions-funnel": ("/console/p/conversions/funnel?start=2026-03-01&end=2026-03-31", "渠道漏斗"),
    }
    for name, (path, expected) in pages.items():
        driver.get(base + path)
        assert expected in _text(driver), (name, _text(driver)[:500])
        unlabelled, _ = driver.execute_script(CHECK)
        assert unlabelled == [], (name, unlabelled)
        _shot(driver, f"plugin-{name}")
    driver.set_window_size(390, 844)  # a phone: wide tables scroll inside their box, the page itself does not
    try:
        for name, (path, _expected) in pages.items():
            driver.get(base + path)
            _, overflow = driver.execute_script(CHECK)
            assert overflow <= 0, (name, overflow)
    finally:
        driver.set_window_size(1280, 900)
