"""Conversions' console pages: accounts (the secret never shown), rules, conversions sent, the funnel."""

from __future__ import annotations

from pelago.testing import ConsoleClient, run_periodic

from .conv_helpers import account, channel, conversions, on, phone, rule, submit

P = "/console/p/conversions"
A = "/api/v1/conversions"


def test_pages_follow_the_switch_and_the_roles(app):
    t = on(app)
    rep, manager, admin = ConsoleClient(t, "rep"), ConsoleClient(t, "manager"), ConsoleClient(t, "admin")
    for page in ("/", "/sent", "/funnel", "/accounts"):
        assert rep.get(P + page).status_code == 403
    assert manager.get(f"{P}/accounts").status_code == 403  # accounts are admins', as in the API
    assert manager.post(f"{P}/rules", {"name": "x"}).status_code == 403
    assert 'id="new-rule"' not in manager.text(f"{P}/") and 'id="new-rule"' in admin.text(f"{P}/")
    assert f"{P}/" not in rep.text("/console/") and f"{P}/funnel" in manager.text("/console/")
    assert "回传规则" in manager.text(f"{P}/", query_string={"lang": "zh-CN"})
    assert t.put("/api/v1/plugins/conversions", json={"enabled": False}).status_code == 200
    assert admin.get(f"{P}/").status_code == 404 and admin.get(f"{P}/accounts").status_code == 404
    assert f"{P}/" not in admin.text("/console/")


def test_accounts_keep_the_secret_and_rules_name_their_field(app):
    t = on(app)
    admin = ConsoleClient(t, "admin")
    no_url = admin.post(f"{P}/accounts", {"name": "Ocean", "adapter": "generic", "secret": "tok-123456"})
    html = no_url.get_data(as_text=True)
    assert no_url.status_code == 422 and 'id="f-url-error"' in html and "tok-123456" not in html
    assert admin.post(f"{P}/accounts", {"name": "Ocean", "adapter": "generic", "config": "no equals"}
                      ).status_code == 422
    assert admin.post(f"{P}/accounts", {"name": "Ocean", "adapter": "generic", "url": "https://ads.example.com/cb"},
                      csrf=False).status_code == 403
    ok = admin.post(f"{P}/accounts", {"name": "Ocean", "adapter": "generic", "url": "https://ads.example.com/cb",
                                      "secret": "tok-123456", "config": "advertiser_id = 42\n"})
    assert ok.status_code == 302, ok.get_data(as_text=True)
    [acct] = t.get(f"{A}/accounts").get_json()["items"]
    assert acct["has_secret"] and acct["config"] == {"advertiser_id": "42"}
    listed = admin.text(f"{P}/accounts")
    assert "Ocean" in listed and "tok-123456" not in listed and "••••" in listed
    bad = admin.post(f"{P}/rules", {"name": "won", "account_id": str(acct["id"]), "channel": "ocean",
                                    "moment": "signed", "event_type": "purchase"})
    assert bad.status_code == 422 and 'id="f-moment-error"' in bad.get_data(as_text=True)
    short = admin.post(f"{P}/rules", {"name": "won", "account_id": str(acct["id"]), "channel": "ocean",
                                      "moment": "deal_won", "event_type": "purchase", "window_days": "0"})
    assert short.status_code == 422 and 'id="f-window_days-error"' in short.get_data(as_text=True)
    assert admin.post(f"{P}/rules", {"name": "won", "account_id": str(acct["id"]), "channel": "ocean",
                                     "moment": "deal_won", "event_type": "purchase", "window_days": "7"}
                      ).status_code == 302
    [r] = t.get(f"{A}/rules").get_json()["items"]
    assert (r["moment"], r["window_days"], r["send_value"]) == ("deal_won", 7, False)
    taken = admin.post(f"{P}/rules", {"name": "won", "account_id": str(acct["id"]), "channel": "ocean",
                                      "moment": "deal_won", "event_type": "purchase", "send_value": "1"})
    assert taken.status_code == 422 and 'id="f-name-error"' in taken.get_data(as_text=True)


def test_conversions_sent_and_the_funnel(app, clock):
    t = on(app)
    ch = channel(t)
    acct = account(t, "https://ads.example.com/cb")
    rule(t, acct["id"], "deal_won", "purchase", window_days=7)
    lead = submit(t, ch, {"name": "钱", "phone": phone(), "clickid": "OLD", "id": "e-1"})
    clock.advance(days=7, seconds=1)
    t.post(f"/api/v1/leads/{lead['lead_id']}/deals", json={"amount": "100.00", "kind": "first_purchase"})
    run_periodic(t.runtime, "conversions", "send", t.id)
    [row] = conversions(t)
    manager = ConsoleClient(t, "manager")
    page = manager.text(f"{P}/sent")
    assert row["message"] in page and "expired" in page
    assert row["message"] in manager.text(f"{P}/sent", query_string={"status": "expired"})
    assert row["message"] not in manager.text(f"{P}/sent", query_string={"status": "accepted"})
    bad = manager.get(f"{P}/sent", query_string={"status": "lost"})
    assert bad.status_code == 200 and 'id="f-status-error"' in bad.get_data(as_text=True)
    funnel = manager.text(f"{P}/funnel", query_string={"start": "2026-03-01", "end": "2026-03-31"})
    assert 'id="funnel"' in funnel and "ocean" in funnel and "100.00" in funnel
    wrong = manager.get(f"{P}/funnel", query_string={"start": "2026-03-31", "end": "2026-03-01"})
    assert 'id="f-end-error"' in wrong.get_data(as_text=True)
    assert 'id="f-group_by-error"' in manager.text(f"{P}/funnel", query_string={"group_by": "colour"})
    # the lead's page: the conversion, with its status, rule, event type and the platform's answer
    timeline = manager.text(f"/console/leads/{lead['lead_id']}")
    timeline = timeline[timeline.index('id="timeline"'):]
    assert timeline.count('data-plugin="conversions"') == 1
    assert "回传已过期（" in timeline and "ocean · purchase" in timeline and row["message"] in timeline
    assert t.put("/api/v1/plugins/conversions", json={"enabled": False}).status_code == 200
    assert 'data-plugin="conversions"' not in manager.text(f"/console/leads/{lead['lead_id']}")
