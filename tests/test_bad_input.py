"""Bad input gets a 422 with field errors and changes nothing; never a 500."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from pelago.core.models import Deal, Lead, OutboxEvent, Refund, Touch


def snapshot(t):
    with t.runtime.sessions() as s:
        return tuple(
            s.scalar(select(func.count()).select_from(m).where(m.tenant_id == t.id))
            for m in (Lead, Touch, Deal, Refund, OutboxEvent)
        )


@pytest.mark.parametrize(("body", "field"), [
    ({"phone": "12345"}, "phone"),
    ({"phone": "not a phone"}, "phone"),
    ({"phone": 13800138000}, "phone"),
    ({"name": "no contact"}, "phone"),
    ({"email": "not-an-email"}, "email"),
    ({"phone": "13800138000", "unknown": 1}, "unknown"),
    ({"phone": "13800138000", "owner_id": "me"}, "owner_id"),
    ({"phone": "13800138000", "owner_id": 987654321}, "owner_id"),
    ({"phone": "13800138000", "team_id": -1}, "team_id"),
    ({"phone": "13800138000", "team_id": 987654321}, "team_id"),
    ({"phone": "13800138000", "attributes": "x"}, "attributes"),
    ({"phone": "13800138000", "name": "x" * 201}, "name"),
])
def test_bad_lead_bodies(tenant, body, field):
    before = snapshot(tenant)
    r = tenant.post("/api/v1/leads", json=body)
    assert r.status_code == 422, r.get_json()
    assert field in r.get_json()["errors"]["json"]
    assert snapshot(tenant) == before


@pytest.mark.parametrize("raw", ['{"phone": ', "[1, 2]", "null", '"text"', "\xff\xfe"])
def test_malformed_json(tenant, raw):
    before = snapshot(tenant)
    r = tenant.post("/api/v1/leads", data=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert r.get_json()["code"] == 422
    assert snapshot(tenant) == before


@pytest.mark.parametrize(("body", "field"), [
    ({"amount": "-5"}, "amount"),
    ({"amount": 10.5}, "amount"),
    ({"amount": 10}, "amount"),
    ({"amount": "0"}, "amount"),
    ({"amount": "abc"}, "amount"),
    ({"amount": "NaN"}, "amount"),
    ({"amount": "Infinity"}, "amount"),
    ({}, "amount"),
    ({"amount": "10", "kind": "gift"}, "kind"),
    ({"amount": "10", "currency": "RMBX"}, "currency"),
    ({"amount": "10", "currency": "XYZ"}, "currency"),  # was a 201: three letters, but no currency
    ({"amount": "10", "currency": "XXX"}, "currency"),
])
def test_bad_deals(tenant, body, field):
    lead = tenant.lead("13800138600")
    before = snapshot(tenant)
    r = tenant.post(f"/api/v1/leads/{lead['id']}/deals", json=body)
    assert r.status_code == 422, r.get_json()
    assert field in r.get_json()["errors"]["json"]
    assert snapshot(tenant) == before


@pytest.mark.parametrize(("body", "field"), [
    ({"amount": "100.01", "reason": "too much"}, "amount"),
    ({"amount": "-1", "reason": "negative"}, "amount"),
    ({"amount": "x", "reason": "nan"}, "amount"),
    ({"amount": "1"}, "reason"),
    ({"amount": "1", "reason": ""}, "reason"),
])
def test_bad_refunds(tenant, body, field):
    lead = tenant.lead("13800138601")
    deal = tenant.post(f"/api/v1/leads/{lead['id']}/deals", json={"amount": "100"}).get_json()
    before = snapshot(tenant)
    r = tenant.post(f"/api/v1/deals/{deal['id']}/refunds", json=body)
    assert r.status_code == 422, r.get_json()
    assert field in r.get_json()["errors"]["json"]
    assert snapshot(tenant) == before
    assert tenant.get(f"/api/v1/deals/{deal['id']}").get_json()["refunded"] == "0.00"


def test_lost_without_reason_changes_nothing(tenant):
    lead = tenant.lead("13800138602")
    before = snapshot(tenant)
    for body in ({"stage": "lost"}, {"stage": "lost", "lost_reason": "  "}, {"stage": "gone"}, {"stage": 3}):
        r = tenant.post(f"/api/v1/leads/{lead['id']}/stage", json=body)
        assert r.status_code == 422
    assert snapshot(tenant) == before
    assert tenant.get(f"/api/v1/leads/{lead['id']}").get_json()["stage"] == "new"


def test_oversize_body_is_413(tenant):
    r = tenant.post("/api/v1/leads", data="x" * (2 * 1024 * 1024), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_admin_inputs(tenant):
    assert tenant.post("/api/v1/users", json={"email": "x", "role": "rep"}).status_code == 422
    assert tenant.post("/api/v1/users", json={"email": "a@b.co", "role": "operator"}).status_code == 422
    assert tenant.post("/api/v1/users", json={"email": "a@b.co", "role": "rep", "team_id": 99999999}).status_code == 422
    assert tenant.post("/api/v1/users", "manager", json={"email": "a@b.co", "role": "rep"}).status_code == 403
    ok = tenant.post("/api/v1/users", json={"email": "new@b.co", "role": "rep", "team_id": tenant.team_id})
    assert ok.status_code == 201
    assert tenant.post("/api/v1/users", json={"email": "NEW@b.co", "role": "rep"}).status_code == 409
    assert tenant.post("/api/v1/teams", json={"name": ""}).status_code == 422
    assert tenant.post("/api/v1/teams", json={"name": "Sales"}).status_code == 409


def test_every_error_body_has_code_status_and_message(tenant):
    for r in (
        tenant.post("/api/v1/leads", json={"phone": "13800138000", "zzz": 1}),
        tenant.get("/api/v1/leads?limit=0"),
        tenant.get("/api/v1/leads?cursor=garbage"),
        tenant.get("/api/v1/leads/99999999999999999999"),
        tenant.get("/api/v1/leads/12345678"),
        tenant.client().get("/api/v1/leads"),
    ):
        body = r.get_json()
        assert {"code", "status", "message"} <= set(body), body
        assert r.status_code in (401, 404, 422)
    cursor = tenant.get("/api/v1/leads?cursor=garbage").get_json()
    assert "cursor" in cursor["errors"]["query"]


def test_currencies_are_iso_4217(tenant, operator_key):
    lead = tenant.lead("13800138602")
    r = tenant.post(f"/api/v1/leads/{lead['id']}/deals", json={"amount": "10", "currency": "usd"})
    assert r.status_code == 201 and r.get_json()["currency"] == "USD"
    r = tenant.app.test_client().post("/api/v1/tenants", json={"slug": "cur-xyz", "currency": "XYZ"},
                                      headers={"Authorization": f"Bearer {operator_key}"})
    assert r.status_code == 422 and "ISO 4217" in r.get_json()["errors"]["json"]["currency"][0]


def _attributes_cases():
    from pelago.core.attributes import MAX_KEY_LENGTH, MAX_KEYS, MAX_VALUE_LENGTH

    return [
        pytest.param({f"k{i}": i for i in range(MAX_KEYS + 1)}, id="too many keys"),
        pytest.param({"k": "x" * MAX_VALUE_LENGTH}, id="value too large"),
        pytest.param({"k": ["x"] * (MAX_VALUE_LENGTH // 3)}, id="nested value too large"),
        pytest.param({"k" * (MAX_KEY_LENGTH + 1): 1}, id="key too long"),
        pytest.param({"": 1}, id="empty key"),
    ]


@pytest.mark.parametrize("attributes", _attributes_cases())
def test_lead_attributes_are_limited(tenant, attributes):
    """Was a 201 with 50,000 keys or a 900 KB value."""
    before = snapshot(tenant)
    r = tenant.post("/api/v1/leads", json={"phone": "13800138603", "attributes": attributes})
    assert r.status_code == 422, r.get_json()
    assert "attributes" in r.get_json()["errors"]["json"]
    assert snapshot(tenant) == before
    lead = tenant.lead("13800138604", attributes={"a": 1})
    r = tenant.patch(f"/api/v1/leads/{lead['id']}", json={"attributes": attributes})
    assert r.status_code == 422 and "attributes" in r.get_json()["errors"]["json"], r.get_json()
    assert tenant.get(f"/api/v1/leads/{lead['id']}").get_json()["attributes"] == {"a": 1}


def test_attributes_at_the_limits_are_kept(tenant):
    from pelago.core.attributes import MAX_KEY_LENGTH, MAX_KEYS, MAX_VALUE_LENGTH

    most = {f"k{i}": i for i in range(MAX_KEYS - 1)} | {"k" * MAX_KEY_LENGTH: "x" * (MAX_VALUE_LENGTH - 2)}
    lead = tenant.lead("13800138605", attributes=most)
    assert lead["attributes"] == most
    r = tenant.patch(f"/api/v1/leads/{lead['id']}", json={"attributes": {"k0": "changed"}})
    assert r.status_code == 200 and r.get_json()["attributes"]["k0"] == "changed"
    r = tenant.patch(f"/api/v1/leads/{lead['id']}", json={"attributes": {"one more": 1}})
    assert r.status_code == 422 and "at most 50 keys" in r.get_json()["errors"]["json"]["attributes"][0]
