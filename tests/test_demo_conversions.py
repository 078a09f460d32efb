"""The demo's conversions seed: an ad channel carrying click ids, and its deals reported on the generic adapter."""

from __future__ import annotations

import hashlib
import hmac
import json

from pelago.hostapp.demo import CONVERSIONS_CHANNEL, CONVERSIONS_URL, _conversions
from pelago.plugin import tenant_context
from pelago.testing import new_tenant


def test_the_conversions_seed_reports_a_won_click_lead_to_the_generic_account(make_app):
    app = make_app(("pool", "conversions"))
    t = new_tenant(app)
    assert t.put("/api/v1/plugins/conversions", json={"enabled": True}).status_code == 200
    with tenant_context(t.runtime, t.id) as ctx:
        _conversions(ctx)
    [account] = t.get("/api/v1/conversions/accounts").get_json()["items"]
    assert (account["adapter"], account["url"]) == ("generic", CONVERSIONS_URL)
    [rule] = t.get("/api/v1/conversions/rules").get_json()["items"]
    assert (rule["channel"], rule["moment"], rule["account_id"]) == (CONVERSIONS_CHANNEL, "deal_won", account["id"])
    [channel] = [c for c in t.get("/api/v1/channels").get_json()["items"] if c["name"] == CONVERSIONS_CHANNEL]
    secret = t.post(f"/api/v1/channels/{channel['id']}/rotate-secret").get_json()["secret"]
    body = json.dumps({"name": "周杰", "phone": "13912345670", "clue_id": "c-1", "clickid": "dy-1"}).encode()
    r = t.client().post(f"/api/v1/intake/{channel['key']}", data=body, headers={
        "Content-Type": "application/json",
        "X-Pelago-Signature": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()})
    assert r.status_code == 202, r.get_json()
    lead_id = t.get(f"/api/v1/submissions/{r.get_json()['id']}").get_json()["lead_id"]
    assert t.get("/api/v1/conversions/conversions").get_json()["items"] == []  # only a deal counts
    assert t.post(f"/api/v1/leads/{lead_id}/deals", json={"amount": "4980.00"}).status_code == 201
    [conversion] = t.get("/api/v1/conversions/conversions").get_json()["items"]
    assert (conversion["click_id"], conversion["event_type"], conversion["lead_id"]) == ("dy-1", "active_pay", lead_id)
    # hooks.example.com is refused as a private target or unreachable here: never accepted
    assert conversion["status"] in ("queued", "failed")
