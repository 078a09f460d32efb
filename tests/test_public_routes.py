"""``pelago.plugin.public_route`` and ``webhook_context``: a plugin's signed webhooks without an API key."""

from __future__ import annotations

from typing import Any

from flask import request

from pelago.plugin import Blueprint, Forbidden, PluginSpec, commit, public_route, webhook_context
from pelago.testing import new_tenant

blp = Blueprint("hooked", __name__)
SEEN: list[tuple[int, str]] = []


@blp.route("/in/<string:tenant>", methods=["POST"])
@blp.response(200)
@public_route
def receive(tenant: str) -> Any:
    if request.headers.get("X-Secret") != "yes":
        raise Forbidden("unsigned")
    c = webhook_context(tenant)
    SEEN.append((c.tenant.id, c.tenant.slug))
    commit()
    return {"tenant": c.tenant.slug, "actor": c.actor}


@blp.route("/private", methods=["GET"])
@blp.response(200)
def private() -> Any:
    return {"ok": True}


SPEC = PluginSpec(name="hooked", title="Hooked", blueprint=blp)


def test_a_public_route_needs_no_key_names_its_tenant_and_is_404_where_the_plugin_is_off(make_app):
    app = make_app(("hooked",), extra=[SPEC])
    on, off = new_tenant(app), new_tenant(app)
    assert on.put("/api/v1/plugins/hooked", json={"enabled": True}).status_code == 200
    anonymous = app.test_client()
    r = anonymous.post(f"/api/v1/hooked/in/{on.slug}", headers={"X-Secret": "yes"})
    assert r.status_code == 200 and r.get_json() == {"tenant": on.slug, "actor": None}
    r = anonymous.post(f"/api/v1/hooked/in/{on.id}", headers={"X-Secret": "yes"})
    assert r.status_code == 404  # a slug, or an int id from code: the path gives a string
    assert anonymous.post(f"/api/v1/hooked/in/{on.slug}").status_code == 403
    r = anonymous.post(f"/api/v1/hooked/in/{off.slug}", headers={"X-Secret": "yes"})
    assert r.status_code == 404 and "hooked" in r.get_json()["message"]
    assert anonymous.post("/api/v1/hooked/in/no-such-tenant", headers={"X-Secret": "yes"}).status_code == 404
    assert anonymous.post("/api/v1/hooked/in/BAD%20SLUG", headers={"X-Secret": "yes"}).status_code == 404
    assert anonymous.get("/api/v1/hooked/private").status_code == 401  # the others still need a key
    assert SEEN == [(on.id, on.slug)]
