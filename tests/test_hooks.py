"""One test per hook (named ``test_hook_<name>``): when it is called and with what.

tests/test_hook_docs.py fails the build if a hookspec has no such test.
"""

from __future__ import annotations

import pytest

from pelago.testing import ConsoleClient
from tests.conftest import new_tenant
from tests.plugins import recorder


@pytest.fixture
def t(make_app):
    recorder.CALLS.clear()
    app = make_app(("recorder",))
    handle = new_tenant(app)
    assert handle.put("/api/v1/plugins/recorder", json={"enabled": True}).status_code == 200
    yield handle
    recorder.CALLS.clear()


def items(name, t):
    return [i for call in recorder.calls(name, t.id) for i in call["items"]]


def test_hook_choose_team(t):
    t.put("/api/v1/plugins/recorder", json={"settings": {"team_id": t.team_id}})
    lead = t.lead("13800138700")
    assert recorder.calls("choose_team", t.id) == [[lead["phone"]]]
    assert lead["team_id"] == t.team_id
    # Asked before the insert, with the id the lead was then written with.
    assert recorder.calls("choose_team_ids", t.id) == [[(None, lead["id"])]]
    # A team given by the caller is not asked for.
    t.lead("13800138701", team_id=t.team_id)
    assert len(recorder.calls("choose_team", t.id)) == 1


def test_hook_exclude_candidates(t):
    t.put("/api/v1/plugins/recorder", json={"settings": {"team_id": t.team_id, "exclude_user_id": t.users["rep"]}})
    t.lead("13800138702")
    candidates = recorder.calls("exclude_candidates", t.id)[0]
    assert set(candidates) == {t.users["manager"], t.users["rep"], t.users["rep2"]}
    assert t.users["rep"] not in recorder.calls("choose_owner", t.id)[0]


def test_hook_choose_owner(t):
    t.put("/api/v1/plugins/recorder", json={"settings": {"team_id": t.team_id, "owner_user_id": t.users["rep2"]}})
    lead = t.lead("13800138703")
    assert lead["owner_id"] == t.users["rep2"]
    t.put("/api/v1/plugins/recorder", json={"settings": {"owner_user_id": None}})
    other = t.lead("13800138704")  # no plugin chose: the core's team strategy does
    history = t.get(f"/api/v1/leads/{other['id']}/history").get_json()["items"]
    owner = [h for h in history if h["type"] == "ownership"][0]
    assert owner["rule"] == "round_robin" and owner["to_user_id"] == other["owner_id"] is not None


def test_hook_check_assign(t):
    lead = t.lead("13800138705")
    t.put("/api/v1/plugins/recorder", json={"settings": {"veto_user_id": t.users["rep"]}})
    r = t.post(f"/api/v1/leads/{lead['id']}/assign", "manager", json={"user_id": t.users["rep"]})
    assert r.status_code == 409 and "vetoes" in r.get_json()["message"]
    assert t.users["rep"] in recorder.calls("check_assign", t.id)
    assert t.post(f"/api/v1/leads/{lead['id']}/assign", "manager", json={"user_id": t.users["rep2"]}).status_code == 200


def test_hook_check_stage_change(t):
    lead = t.lead("13800138706")
    t.put("/api/v1/plugins/recorder", json={"settings": {"veto_stage": "qualified"}})
    assert t.post(f"/api/v1/leads/{lead['id']}/stage", json={"stage": "contacted"}).status_code == 200
    assert t.post(f"/api/v1/leads/{lead['id']}/stage", json={"stage": "qualified"}).status_code == 409
    assert recorder.calls("check_stage_change", t.id) == [("new", "contacted"), ("contacted", "qualified")]


def test_hook_lead_created(t):
    lead = t.lead("13800138707", source="baidu")
    [item] = items("lead_created", t)
    assert item["lead_id"] == lead["id"] and item["phone"] == "+8613800138707" and item["source"] == "baidu"
    assert recorder.calls("lead_created", t.id)[0]["event_id"] is not None


def test_hook_lead_merged(t):
    lead = t.lead("13800138708")
    t.lead("+86 138 0013 8708", email="m@example.com")
    [item] = items("lead_merged", t)
    assert item["lead_id"] == lead["id"] and item["matched_on"] == "phone" and item["filled"] == ["email"]
    assert len(items("lead_created", t)) == 1


def test_hook_lead_assigned(t):
    lead = t.lead("13800138709")
    t.post(f"/api/v1/leads/{lead['id']}/assign", "manager", json={"user_id": t.users["rep"]})
    [item] = items("lead_assigned", t)
    assert item == {"lead_id": lead["id"], "from_user_id": None, "to_user_id": t.users["rep"],
                    "team_id": t.team_id, "reason": "manual", "rule": None}


def test_hook_lead_released(t):
    lead = t.lead("13800138710", owner_id=t.users["rep"])
    t.post(f"/api/v1/leads/{lead['id']}/assign", "manager", json={"user_id": None})
    [item] = items("lead_released", t)
    assert item["lead_id"] == lead["id"] and item["from_user_id"] == t.users["rep"] and item["reason"] == "manual"


def test_hook_lead_stage_changed(t):
    lead = t.lead("13800138711")
    t.post(f"/api/v1/leads/{lead['id']}/stage", json={"stage": "lost", "lost_reason": "moved away"})
    [item] = items("lead_stage_changed", t)
    assert item == {"lead_id": lead["id"], "old": "new", "new": "lost", "lost_reason": "moved away"}


def test_hook_activity_logged(t):
    lead = t.lead("13800138712")
    activity = t.post(f"/api/v1/leads/{lead['id']}/activities", "manager", json={"kind": "wechat"}).get_json()
    [item] = items("activity_logged", t)
    assert item["activity_id"] == activity["id"] and item["kind"] == "wechat" and item["user_id"] == t.users["manager"]


def test_hook_deal_won(t):
    lead = t.lead("13800138713")
    deal = t.post(f"/api/v1/leads/{lead['id']}/deals", json={"amount": "12.345"}).get_json()
    [item] = items("deal_won", t)
    assert item["deal_id"] == deal["id"] and item["amount"] == "12.35" and item["currency"] == "CNY"
    assert [i["new"] for i in items("lead_stage_changed", t)] == ["won"]


def test_hook_deal_refunded(t):
    lead = t.lead("13800138714")
    deal = t.post(f"/api/v1/leads/{lead['id']}/deals", json={"amount": "10"}).get_json()
    t.post(f"/api/v1/deals/{deal['id']}/refunds", json={"amount": "2.5", "reason": "r"})
    [item] = items("deal_refunded", t)
    assert item["deal_id"] == deal["id"] and item["amount"] == "2.50" and item["refunded_total"] == "2.50"


def test_hook_plugin_enabled(t):
    # The plugin itself receives its own switch-on (it is on when delivered).
    assert items("plugin_enabled", t) == [{"plugin": "recorder"}]


def test_hook_plugin_disabled(make_app):
    recorder.CALLS.clear()
    app = make_app(("recorder", "failing"))
    t = new_tenant(app)
    t.put("/api/v1/plugins/recorder", json={"enabled": True})
    t.put("/api/v1/plugins/failing", json={"enabled": True})
    t.put("/api/v1/plugins/failing", json={"enabled": False})
    assert items("plugin_disabled", t) == [{"plugin": "failing"}]
    t.put("/api/v1/plugins/recorder", json={"enabled": False})
    assert items("plugin_disabled", t) == [{"plugin": "failing"}]  # the switched-off plugin is not called


def test_hook_person_erased(make_app):
    recorder.CALLS.clear()
    app = make_app(("recorder",))
    t = new_tenant(app)
    t.put("/api/v1/plugins/recorder", json={"enabled": True})
    first = t.lead("13800138730", email="erased@example.com")
    second = t.lead("13800138732", email="erased@example.com")  # the same person's second phone
    t.put("/api/v1/plugins/recorder", json={"enabled": False})  # off: still told, it keeps data
    r = t.post("/api/v1/privacy/erasures", json={"email": "Erased@Example.com", "reason": "asked"})
    assert r.status_code == 200, r.get_json()
    [call] = recorder.calls("person_erased", t.id)
    assert call["items"] == [{"lead_id": first["id"]}, {"lead_id": second["id"]}]
    assert call["event_id"] == r.get_json()["event_id"] is not None
    # Nothing left to erase: no second event.
    assert t.post("/api/v1/privacy/erasures", json={"email": "erased@example.com", "reason": "again"}).status_code == 200
    assert len(recorder.calls("person_erased", t.id)) == 1


def test_hook_privacy_export(t):
    lead = t.lead("13800138731")
    r = t.post("/api/v1/privacy/exports", json={"phone": "138-0013-8731"})
    assert r.status_code == 200, r.get_json()
    assert recorder.calls("privacy_export", t.id) == [[lead["id"]]]
    assert r.get_json()["plugins"] == {"recorder": {"seen_leads": [lead["id"]]}}
    # Switched off: not asked, and nothing of it in the export.
    t.put("/api/v1/plugins/recorder", json={"enabled": False})
    r = t.post("/api/v1/privacy/exports", json={"phone": "13800138731"})
    assert r.get_json()["plugins"] == {} and len(recorder.calls("privacy_export", t.id)) == 1
    # Nobody found: plugins are not asked.
    t.put("/api/v1/plugins/recorder", json={"enabled": True})
    assert t.post("/api/v1/privacy/exports", json={"phone": "13900139000"}).get_json()["leads"] == []
    assert len(recorder.calls("privacy_export", t.id)) == 1


def test_hook_lead_timeline(t):
    lead = t.lead("13800138733")
    c = ConsoleClient(t, "admin")
    html = c.get(f"/console/leads/{lead['id']}", query_string={"lang": "en"}).get_data(as_text=True)
    assert recorder.calls("lead_timeline", t.id) == [lead["id"]]  # once per page, with the lead's id
    timeline = html[html.index('id="timeline"'):]
    entry = timeline.index('data-plugin="recorder"')
    assert timeline.count('data-plugin="recorder"') == 1 and "a detail" in timeline[entry:]
    assert "<li" in timeline[:entry]  # merged by time: after the core's creation steps (one second earlier)
    assert ("已记录线索" in timeline or f"Recorded lead {lead['id']}" in timeline)
    # Switched off: not asked, and nothing of it on the page.
    t.put("/api/v1/plugins/recorder", json={"enabled": False})
    html = c.get(f"/console/leads/{lead['id']}").get_data(as_text=True)
    assert 'data-plugin="recorder"' not in html and len(recorder.calls("lead_timeline", t.id)) == 1


def test_lead_timeline_in_the_api_history_only_when_included(t):
    lead = t.lead("13800138734")
    url = f"/api/v1/leads/{lead['id']}/history"
    # Without include=plugins: the core's entries only, and the plugins are not asked (backward compatible).
    plain = t.get(url).get_json()["items"]
    assert plain and {i["type"] for i in plain} <= {"ownership", "stage", "activity"}
    assert recorder.calls("lead_timeline", t.id) == []
    r = t.get(url, query_string={"include": "plugins"})
    assert r.status_code == 200, r.get_json()
    items = r.get_json()["items"]
    assert recorder.calls("lead_timeline", t.id) == [lead["id"]]
    plugin = [i for i in items if i["type"] == "plugin"]
    assert [{k: i[k] for k in ("plugin", "kind", "title", "values", "text")} for i in plugin] == [
        {"plugin": "recorder", "kind": "recorder", "title": f"Recorded lead {lead['id']}",
         "values": {"lead": lead["id"]}, "text": "a detail"}]
    assert [i for i in items if i["type"] != "plugin"] == plain  # the core's unchanged, in their order
    assert items.index(plugin[0]) == len(plain)  # merged by time: one second after the lead's creation
    # A rep sees it on her own lead like the rest of the history; another tenant's lead is not found.
    other = new_tenant(t.app)
    assert other.get(url, query_string={"include": "plugins"}).status_code == 404
    assert len(recorder.calls("lead_timeline", other.id)) == 0
    assert t.get(url, query_string={"include": "everything"}).status_code == 422
    # Switched off for the tenant: not asked, nothing of it.
    t.put("/api/v1/plugins/recorder", json={"enabled": False})
    assert t.get(url, query_string={"include": "plugins"}).get_json()["items"] == plain
    assert len(recorder.calls("lead_timeline", t.id)) == 1


def test_timeline_entries_must_be_timezone_aware():
    from datetime import datetime

    from pelago.plugin import TimelineEntry

    with pytest.raises(ValueError, match="timezone-aware"):
        TimelineEntry(datetime(2026, 1, 1, 9, 0), "sms", "SMS sent")


def test_a_veto_names_the_plugin_that_refused(t):
    lead = t.lead("13800138720")
    t.put("/api/v1/plugins/recorder", json={"settings": {"veto_user_id": t.users["rep"]}})
    r = t.post(f"/api/v1/leads/{lead['id']}/assign", "manager", json={"user_id": t.users["rep"]})
    assert r.status_code == 409 and r.get_json()["errors"] == {"plugin": "recorder"}


def test_a_vetoed_routing_choice_leaves_the_lead_unowned_with_the_reason(t):
    t.put("/api/v1/plugins/recorder", json={"settings": {
        "team_id": t.team_id, "owner_user_id": t.users["rep"], "veto_user_id": t.users["rep"],
    }})
    r = t.post("/api/v1/leads", json={"phone": "13800138721"})
    assert r.status_code == 201 and r.get_json()["owner_id"] is None
    history = t.get(f"/api/v1/leads/{r.get_json()['id']}/history").get_json()["items"]
    owner = [h for h in history if h["type"] == "ownership"][0]["detail"]["owner"]
    assert owner["vetoed_user_id"] == t.users["rep"] and owner["plugin"] == "recorder"
    assert items("lead_assigned", t) == []


def test_hook_plugin_settings_changed(t):
    t.put("/api/v1/plugins/recorder", json={"settings": {"threshold": 11, "token": "x"}})
    t.put("/api/v1/plugins/recorder", json={"settings": {"threshold": 11}})  # no change: no event
    t.put("/api/v1/plugins/recorder", json={"settings": {"token": "********", "threshold": 12}})
    assert items("plugin_settings_changed", t) == [
        {"plugin": "recorder", "changed": ["threshold", "token"]},
        {"plugin": "recorder", "changed": ["threshold"]},
    ]


def test_a_team_chosen_by_a_plugin_must_exist_and_be_active(t):
    t.put("/api/v1/plugins/recorder", json={"settings": {"team_id": 987654321}})
    lead = t.lead("13800138730")
    assert lead["team_id"] is None and lead["owner_id"] is None
    history = t.get(f"/api/v1/leads/{lead['id']}/history").get_json()["items"]
    team = [h for h in history if h["type"] == "ownership"][0]["detail"]["team"]
    assert team["team_id"] is None and "does not exist" in team["reason"]


def test_a_caller_given_team_is_kept_when_an_owner_is_given_too(t):
    other = t.post("/api/v1/teams", json={"name": "Repurchase"}).get_json()
    lead = t.lead("13800138731", team_id=other["id"], owner_id=t.users["rep"])
    assert lead["team_id"] == other["id"] and lead["owner_id"] == t.users["rep"]


def test_event_times_are_utc(t):
    lead = t.lead("13800138732")
    t.post(f"/api/v1/leads/{lead['id']}/activities", json={"kind": "call", "occurred_at": "2026-03-02T09:00:00+08:00"})
    [item] = items("activity_logged", t)
    assert item["occurred_at"] == "2026-03-02T01:00:00+00:00"
