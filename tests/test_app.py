"""The app around the API: health, interactive docs that work offline, JSON as people read it."""

from __future__ import annotations


def test_health_lists_the_deployed_plugins(app):
    body = app.test_client().get("/healthz").get_json()
    assert body["status"] == "ok" and body["plugins"] == ["pool", "scheduling", "sms_nurture", "settlement"]


def test_docs_are_served_with_local_assets(app):
    client = app.test_client()
    assert client.get("/").headers["Location"].endswith("/api/docs")
    page = client.get("/api/docs").get_data(as_text=True)
    assert "/api/swagger-ui/swagger-ui-bundle.js" in page and "https://" not in page.split("<body")[0]
    asset = client.get("/api/swagger-ui/swagger-ui-bundle.js")
    assert asset.status_code == 200 and len(asset.data) > 100_000
    spec = client.get("/api/openapi.json").get_json()
    assert spec["openapi"].startswith("3.") and spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_chinese_text_is_not_escaped(tenant):
    r = tenant.post("/api/v1/leads", json={"name": "张伟", "phone": "13800138990"})
    assert "张伟" in r.get_data(as_text=True)
