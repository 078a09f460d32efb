"""sms_nurture's console pages: sequences (create, steps, pause/resume), templates with the preview, messages."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import event

from pelago.plugin import tenant_context
from pelago.plugins.sms_nurture.console import week
from pelago.testing import ConsoleClient

from .sms_helpers import dispatch, enrol, lead, messages, sequence, sms_tenant, template

P = "/console/p/sms_nurture"
A = "/api/v1/sms_nurture"


def test_pages_follow_the_switch_and_the_roles(app):
    t = sms_tenant(app)
    seq = sequence(t, 0)
    rep, manager = ConsoleClient(t, "rep"), ConsoleClient(t, "manager")
    home = rep.text(f"{P}/")
    assert seq["name"] in home and 'id="new-sequence"' not in home
    assert 'id="toggle"' not in rep.text(f"{P}/sequences/{seq['id']}")
    assert rep.get(f"{P}/templates/new").status_code == 403
    assert rep.post(f"{P}/sequences", {"name": "x"}).status_code == 403
    assert rep.post(f"{P}/sequences/{seq['id']}/status", {"status": "paused"}).status_code == 403
    for page in ("/", "/templates", "/messages"):
        assert f"{P}{page}" in rep.text("/console/")
    assert 'id="new-sequence"' in manager.text(f"{P}/")
    assert "短信培育序列" in manager.text(f"{P}/", query_string={"lang": "zh-CN"})
    assert rep.get(f"{P}/sequences/999999").status_code == 404
    assert t.put("/api/v1/plugins/sms_nurture", json={"enabled": False}).status_code == 200
    assert rep.get(f"{P}/").status_code == 404 and rep.get(f"{P}/messages").status_code == 404
    assert f"{P}/" not in rep.text("/console/")


def test_sequence_forms(app):
    t = sms_tenant(app)
    tpl = template(t)
    manager = ConsoleClient(t, "manager")
    bad = manager.post(f"{P}/sequences", {"name": "Spring", "trigger": "not_contacted"})
    assert bad.status_code == 422 and 'id="f-trigger_hours-error"' in bad.get_data(as_text=True)
    assert manager.post(f"{P}/sequences", {"name": "Spring"}, csrf=False).status_code == 403
    r = manager.post(f"{P}/sequences", {"name": "Spring", "trigger": "not_contacted", "trigger_hours": "24"})
    assert r.status_code == 302
    seq = t.get(f"{A}/sequences").get_json()["items"][0]
    assert (seq["name"], seq["trigger"], seq["trigger_hours"]) == ("Spring", "not_contacted", 24)
    window = manager.post(f"{P}/sequences/{seq['id']}/steps", {"template_id": str(tpl), "delay_minutes": "30",
                                                               "window_start": "09:00"})
    assert window.status_code == 422 and "field-error" in window.get_data(as_text=True)
    assert manager.post(f"{P}/sequences/{seq['id']}/steps", {"template_id": str(tpl), "delay_minutes": "30",
                                                             "delay_from": "enrolment"}).status_code == 302
    steps = t.get(f"{A}/sequences/{seq['id']}").get_json()["steps"]
    assert [(s["template_id"], s["delay_minutes"], s["delay_from"]) for s in steps] == [(tpl, 30, "enrolment")]
    assert manager.post(f"{P}/sequences/{seq['id']}/status", {"status": "paused"}).status_code == 302
    assert t.get(f"{A}/sequences/{seq['id']}").get_json()["status"] == "paused"
    assert manager.post(f"{P}/sequences/{seq['id']}/status", {"status": "gone"}).status_code == 422
    assert manager.post(f"{P}/sequences/{seq['id']}/status", {"status": "active"}).status_code == 302
    assert t.get(f"{A}/sequences/{seq['id']}").get_json()["status"] == "active"


def test_template_preview_and_unknown_variable(app):
    t = sms_tenant(app)
    manager = ConsoleClient(t, "manager")
    preview = manager.post(f"{P}/templates", {"name": "Hi", "body": "{name}您好", "action": "preview"})
    html = preview.get_data(as_text=True)
    assert preview.status_code == 200 and 'id="preview-segments">1<' in html and "{name}您好" in html
    assert t.get(f"{A}/templates").get_json()["items"] == []  # a preview writes nothing
    unknown = manager.post(f"{P}/templates", {"name": "Hi", "body": "{nmae}您好", "action": "save"})
    assert unknown.status_code == 422
    html = unknown.get_data(as_text=True)
    assert 'id="f-body-error"' in html and "nmae" in html
    assert manager.post(f"{P}/templates", {"name": "Hi", "body": "{nmae}", "action": "preview"}).status_code == 422
    assert manager.post(f"{P}/templates", {"name": "Hi", "body": "{name}您好", "action": "save"}).status_code == 302
    tpl = t.get(f"{A}/templates").get_json()["items"][0]
    someone = lead(t, name="王芳")
    shown = ConsoleClient(t, "rep").text(f"{P}/templates/{tpl['id']}", query_string={"lead_id": someone["id"]})
    assert "王芳您好" in shown and 'id="preview-characters"' in shown
    long = "春" * 71
    page = manager.post(f"{P}/templates/{tpl['id']}", {"name": "Hi", "body": long, "action": "preview"})
    assert 'id="preview-segments">2<' in page.get_data(as_text=True)
    assert manager.post(f"{P}/templates/{tpl['id']}", {"name": "Hi", "body": "{name}，再见", "action": "save"}
                        ).status_code == 302
    assert t.get(f"{A}/templates/{tpl['id']}").get_json()["body"] == "{name}，再见"
    assert ConsoleClient(t, "rep").post(f"{P}/templates/{tpl['id']}", {"name": "x", "body": "y"}).status_code == 403


def _sent_and_silent(app):
    """A tenant whose sequence messaged two leads: one with consent (sent), one without (skipped, with a reason)."""
    t = sms_tenant(app)
    seq = sequence(t, 0)
    ok, silent = lead(t), lead(t, with_consent=False)
    enrol(t, seq["id"], ok["id"], silent["id"])
    dispatch(t)
    return t, seq, ok, silent, {m["lead_id"]: m for m in messages(t)}


def test_messages_with_status_reason_and_filters(app):
    t, _seq, ok, silent, by_lead = _sent_and_silent(app)
    assert by_lead[silent["id"]]["reason"]
    rep = ConsoleClient(t, "rep")
    page = rep.text(f"{P}/messages")
    assert by_lead[silent["id"]]["reason"] in page
    only = rep.text(f"{P}/messages", query_string={"lead_id": ok["id"]})
    assert by_lead[silent["id"]]["reason"] not in only
    status = by_lead[silent["id"]]["status"]
    filtered = rep.text(f"{P}/messages", query_string={"status": status})
    assert by_lead[silent["id"]]["reason"] in filtered
    bad = rep.get(f"{P}/messages", query_string={"status": "lost-in-space"})
    assert bad.status_code == 200 and 'id="f-status-error"' in bad.get_data(as_text=True)


def test_dashboard_panel_and_the_leads_timeline(app):
    t, seq, ok, silent, by_lead = _sent_and_silent(app)
    manager = ConsoleClient(t, "manager")
    manager.post("/console/language", {"locale": "en", "next": "/console/"})
    home = manager.text("/console/")
    panel = home[home.index('id="panel-sms_nurture-week"'):]
    assert 'id="sms-week-total">2<' in panel and 'id="sms-week-opt-outs">0<' in panel
    assert f"<th>{by_lead[ok['id']]['status']}</th><td>1</td>" in panel
    assert 'id="panel-sms_nurture-week"' not in ConsoleClient(t, "rep").text("/console/")
    other = sms_tenant(app)
    assert 'id="sms-week-total">0<' in ConsoleClient(other, "manager").text("/console/")
    # the lead's page: its message, with the sequence, status and text, merged into the timeline
    page = manager.text(f"/console/leads/{ok['id']}")
    timeline = page[page.index('id="timeline"'):]
    status = by_lead[ok["id"]]["status"]
    assert timeline.count('data-plugin="sms_nurture"') == 2  # the message and the phone's consent
    assert f"SMS {status} ({seq['name']})" in timeline and "SMS consent recorded" in timeline
    manager.post("/console/language", {"locale": "zh-CN", "next": "/console/"})
    page = manager.text(f"/console/leads/{silent['id']}")
    assert "短信未发送" in page and by_lead[silent["id"]]["reason"] in page
    assert ConsoleClient(other, "manager").get(f"/console/leads/{ok['id']}").status_code == 404
    assert t.put("/api/v1/plugins/sms_nurture", json={"enabled": False}).status_code == 200
    assert 'data-plugin="sms_nurture"' not in manager.text(f"/console/leads/{ok['id']}")
    assert 'id="panel-sms_nurture-week"' not in manager.text("/console/")


@pytest.mark.postgres
def test_the_dashboard_panels_count_can_use_the_planned_at_index(app):
    """The panel counts the tenant's messages planned in the last 7 days; ``sms_nurture_0004`` added the index
    ``(tenant_id, planned_at)`` for it. The statement the panel really sends (with the core's tenant filter),
    planned with sequential scans off: PostgreSQL reaches the rows through that index (a range on its
    second column after an equality on its first), not through another index that only has the tenant."""
    t, *_ = _sent_and_silent(app)
    runtime = t.runtime
    sent: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if "FROM sms_nurture_message" in statement:
            sent.append((statement, parameters))

    with tenant_context(runtime, t.id) as ctx:
        event.listen(runtime.engine, "before_cursor_execute", grab)
        try:
            assert week(ctx)["total"] == 2
        finally:
            event.remove(runtime.engine, "before_cursor_execute", grab)
        [(statement, parameters)] = sent
        assert "tenant_id" in statement and "planned_at" in statement
        conn = ctx.session.connection()
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar()
        columns = conn.exec_driver_sql(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_sms_nurture_message_planned'").scalar()
    assert columns is not None and columns.endswith("(tenant_id, planned_at)")
    used = set(_index_names(plan))
    assert used == {"ix_sms_nurture_message_planned"}, json.dumps(plan, indent=1)


def _index_names(node: Any) -> list[str]:
    """Every ``Index Name`` in an EXPLAIN (FORMAT JSON) plan."""
    if isinstance(node, list):
        return [name for item in node for name in _index_names(item)]
    if isinstance(node, dict):
        own = [node["Index Name"]] if "Index Name" in node else []
        return own + [name for value in node.values() for name in _index_names(value)]
    return []
