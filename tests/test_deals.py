"""Deals and refunds: Decimal money, half-up rounding, refunds as new entries."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pelago.core.money import to_money


@pytest.mark.parametrize(("given", "stored"), [
    ("0.125", "0.13"), ("2.675", "2.68"), ("2.665", "2.67"), ("1", "1.00"), ("1999.994", "1999.99"),
])
def test_amounts_round_half_up_to_the_cent(tenant, given, stored):
    lead = tenant.lead("13800138500")
    r = tenant.post(f"/api/v1/leads/{lead['id']}/deals", json={"amount": given})
    assert r.status_code == 201 and r.get_json()["amount"] == stored
    assert to_money(given) == Decimal(stored)


def test_deal_makes_a_customer_and_kinds_follow(tenant):
    lead = tenant.lead("13800138501", owner_id=tenant.users["rep"])
    first = tenant.post(f"/api/v1/leads/{lead['id']}/deals", json={"amount": "4980.00", "product": "数学"}).get_json()
    assert first["kind"] == "first_purchase" and first["currency"] == "CNY" and first["owner_id"] == tenant.users["rep"]
    got = tenant.get(f"/api/v1/leads/{lead['id']}").get_json()
    assert got["stage"] == "won" and got["is_customer"] is True
    again = tenant.post(f"/api/v1/leads/{lead['id']}/deals", json={"amount": "100"}).get_json()
    assert again["kind"] == "repurchase"
    r = tenant.get(f"/api/v1/deals?lead_id={lead['id']}")
    assert r.status_code == 200, r.get_json()
    listed = r.get_json()["items"]
    assert [d["id"] for d in listed] == [again["id"], first["id"]]
    assert [d["id"] for d in tenant.get("/api/v1/deals", "rep").get_json()["items"]] == [again["id"], first["id"]]
    assert tenant.get("/api/v1/deals", "rep2").get_json()["items"] == []


def test_refunds_are_new_entries_and_never_exceed_the_deal(tenant):
    lead = tenant.lead("13800138502")
    deal = tenant.post(f"/api/v1/leads/{lead['id']}/deals", json={"amount": "0.30"}).get_json()
    url = f"/api/v1/deals/{deal['id']}/refunds"
    assert tenant.post(url, json={"amount": "0.10", "reason": "a"}).status_code == 201
    assert tenant.post(url, json={"amount": "0.20", "reason": "b"}).status_code == 201  # exact, no float drift
    r = tenant.post(url, json={"amount": "0.01", "reason": "c"})
    assert r.status_code == 422 and "at most 0.00" in r.get_json()["errors"]["json"]["amount"][0]
    got = tenant.get(f"/api/v1/deals/{deal['id']}").get_json()
    assert got["amount"] == "0.30" and got["refunded"] == "0.30"


def test_refund_events_carry_the_totals(make_app):
    from tests.conftest import new_tenant
    from tests.plugins import recorder

    recorder.CALLS.clear()
    app = make_app(("recorder",))
    t = new_tenant(app)
    t.put("/api/v1/plugins/recorder", json={"enabled": True})
    lead = t.lead("13800138503")
    deal = t.post(f"/api/v1/leads/{lead['id']}/deals", json={"amount": "50"}).get_json()
    t.post(f"/api/v1/deals/{deal['id']}/refunds", json={"amount": "20", "reason": "partial"})
    won = recorder.calls("deal_won", t.id)[0]["items"][0]
    refunded = recorder.calls("deal_refunded", t.id)[0]["items"][0]
    assert won["amount"] == "50.00" and won["kind"] == "first_purchase"
    assert refunded["amount"] == "20.00" and refunded["refunded_total"] == "20.00" and refunded["reason"] == "partial"
    recorder.CALLS.clear()
