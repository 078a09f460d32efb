"""Webhook channels through the API: the secret shown once, mappings validated, rotation, roles, tenants."""

from __future__ import annotations

import hashlib
import hmac
import json

from pelago.core.services.channels import DEFAULT_MAPPING


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_signed(t, key: str, secret: str, payload: dict) -> object:
    body = json.dumps(payload).encode()
    return t.app.test_client().post(
        f"/api/v1/intake/{key}", data=body,
        headers={"Content-Type": "application/json", "X-Pelago-Signature": sign(secret, body)},
    )


def test_create_shows_the_secret_once(tenant):
    r = tenant.post("/api/v1/channels", json={"name": "douyin", "source": "douyin"})
    assert r.status_code == 201, r.get_json()
    created = r.get_json()
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 40
    assert created["key"].startswith("ch_") and created["url"] == f"/api/v1/intake/{created['key']}"
    assert created["mapping"] == DEFAULT_MAPPING and created["active"] is True
    shown = tenant.get(f"/api/v1/channels/{created['id']}").get_json()
    assert "secret" not in shown and shown["key"] == created["key"]
    listed = tenant.get("/api/v1/channels").get_json()["items"]
    assert [c["id"] for c in listed] == [created["id"]]
    assert all("secret" not in c for c in listed)
    assert tenant.post("/api/v1/channels", json={"name": "douyin"}).status_code == 409


def test_mapping_overlays_the_defaults_and_null_unmaps(tenant):
    mapping = {"phone": "data.mobile", "external_id": None, "attributes": {"grade": "data.extra.grade"}}
    channel = tenant.post("/api/v1/channels", json={"name": "baidu", "mapping": mapping}).get_json()
    assert channel["mapping"]["phone"] == "data.mobile"
    assert channel["mapping"]["external_id"] is None
    assert channel["mapping"]["name"] == "name"  # a default kept
    assert channel["mapping"]["attributes"] == {"grade": "data.extra.grade"}


def test_invalid_mappings_are_field_errors(tenant):
    for mapping, field in (
        ({"phone": "data..mobile"}, "phone"),
        ({"phone": ""}, "phone"),
        ({"phone": ".".join(["a"] * 11)}, "phone"),
        ({"phone": 5}, "phone"),
        ({"mobile": "x"}, "mobile"),
        ({"attributes": {"grade": "a..b"}}, "attributes"),
        ({"attributes": ["grade"]}, "attributes"),
    ):
        r = tenant.post("/api/v1/channels", json={"name": "x", "mapping": mapping})
        assert r.status_code == 422, (mapping, r.get_json())
        assert field in r.get_json()["errors"]["json"]["mapping"], (mapping, r.get_json())
    assert tenant.get("/api/v1/channels").get_json()["items"] == []


def test_patch_renames_remaps_and_deactivates(tenant):
    channel = tenant.post("/api/v1/channels", json={"name": "site"}).get_json()
    other = tenant.post("/api/v1/channels", json={"name": "other"}).get_json()
    r = tenant.patch(f"/api/v1/channels/{channel['id']}",
                     json={"name": "own site", "mapping": {"phone": "tel"}, "source": "site"})
    assert r.status_code == 200, r.get_json()
    got = r.get_json()
    assert (got["name"], got["source"], got["mapping"]["phone"], got["mapping"]["email"]) == \
        ("own site", "site", "tel", "email")
    assert tenant.patch(f"/api/v1/channels/{channel['id']}", json={"name": other["name"]}).status_code == 409
    r = tenant.patch(f"/api/v1/channels/{channel['id']}", json={"mapping": {"tel": "x"}})
    assert r.status_code == 422 and "tel" in r.get_json()["errors"]["json"]["mapping"]
    assert post_signed(tenant, channel["key"], channel["secret"], {"tel": "13800138000"}).status_code == 202
    assert tenant.patch(f"/api/v1/channels/{channel['id']}", json={"active": False}).get_json()["active"] is False
    assert post_signed(tenant, channel["key"], channel["secret"], {"tel": "13800138001"}).status_code == 404


def test_rotating_the_secret_retires_the_old_one(tenant):
    channel = tenant.post("/api/v1/channels", json={"name": "site"}).get_json()
    r = tenant.post(f"/api/v1/channels/{channel['id']}/rotate-secret")
    assert r.status_code == 200
    rotated = r.get_json()
    assert rotated["secret"] != channel["secret"] and rotated["key"] == channel["key"]
    assert post_signed(tenant, channel["key"], channel["secret"], {"phone": "13800138002"}).status_code == 401
    assert post_signed(tenant, channel["key"], rotated["secret"], {"phone": "13800138002"}).status_code == 202


def test_delete_keeps_the_touches(tenant):
    channel = tenant.post("/api/v1/channels", json={"name": "site"}).get_json()
    sid = post_signed(tenant, channel["key"], channel["secret"], {"phone": "13800138003"}).get_json()["id"]
    lead_id = tenant.get(f"/api/v1/submissions/{sid}").get_json()["lead_id"]
    assert tenant.call("DELETE", f"/api/v1/channels/{channel['id']}").status_code == 204
    assert tenant.get(f"/api/v1/channels/{channel['id']}").status_code == 404
    assert post_signed(tenant, channel["key"], channel["secret"], {"phone": "13800138004"}).status_code == 404
    assert tenant.get(f"/api/v1/leads/{lead_id}").status_code == 200
    assert tenant.get(f"/api/v1/submissions/{sid}").get_json()["channel_id"] is None  # it stays, unlinked


def test_only_admins_manage_channels(tenant):
    channel = tenant.post("/api/v1/channels", json={"name": "site"}).get_json()
    for who in ("manager", "rep"):
        assert tenant.post("/api/v1/channels", who, json={"name": "mine"}).status_code == 403
        assert tenant.get("/api/v1/channels", who).status_code == 403
        assert tenant.get(f"/api/v1/channels/{channel['id']}", who).status_code == 403
        assert tenant.post(f"/api/v1/channels/{channel['id']}/rotate-secret", who).status_code == 403


def test_another_tenants_channel_is_not_found(tenant, other_tenant):
    channel = tenant.post("/api/v1/channels", json={"name": "site"}).get_json()
    url = f"/api/v1/channels/{channel['id']}"
    assert other_tenant.get(url).status_code == 404
    assert other_tenant.patch(url, json={"name": "mine"}).status_code == 404
    assert other_tenant.post(f"{url}/rotate-secret").status_code == 404
    assert other_tenant.call("DELETE", url).status_code == 404
    assert other_tenant.get("/api/v1/channels").get_json()["items"] == []
    assert tenant.get(url).get_json()["name"] == "site"
    # the same name is free in another tenant
    assert other_tenant.post("/api/v1/channels", json={"name": "site"}).status_code == 201
