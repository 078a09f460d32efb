"""Branches: CRUD, team membership, roles, bad input, tenancy, switching, the schema."""

from __future__ import annotations

from sqlalchemy import func, select

from pelago.plugin import PluginSpec
from pelago.plugins.settlement import plugin
from pelago.plugins.settlement.models import Branch, BranchTeam
from pelago.testing import assert_models_match_migrations, check_routes, new_tenant

B = "/api/v1/settlement/branches"


def on(app):
    t = new_tenant(app)
    assert t.put("/api/v1/plugins/settlement", json={"enabled": True}).status_code == 200
    return t


def branch(t, name="Shanghai", **kw):
    r = t.post(B, json={"name": name, "timezone": kw.pop("timezone", "Asia/Shanghai"), **kw})
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def rows(t, model):
    with t.runtime.sessions() as s:
        return s.scalar(select(func.count()).select_from(model).where(model.tenant_id == t.id))


def test_the_plugin_has_the_standard_shape(engine, pelago_migration_host):
    assert isinstance(plugin, PluginSpec) and plugin.name == "settlement" and not plugin.default_enabled
    assert plugin.blueprint is not None and plugin.commands is not None and plugin.settings is not None
    assert (plugin.migrations / "versions").is_dir()
    assert_models_match_migrations(engine, pelago_migration_host)


def test_create_read_patch_list(app):
    t = on(app)
    sh = branch(t, "Shanghai")
    assert sh["currency"] == "CNY" and sh["active"] and sh["timezone"] == "Asia/Shanghai" and sh["team_ids"] == []
    wh = branch(t, "Wuhan", currency="USD")
    assert wh["currency"] == "USD"
    assert t.get(f"{B}/{sh['id']}").get_json()["name"] == "Shanghai"
    r = t.patch(f"{B}/{wh['id']}", json={"name": "Wuhan East", "timezone": "Asia/Urumqi"})
    assert r.status_code == 200 and r.get_json()["name"] == "Wuhan East" and r.get_json()["timezone"] == "Asia/Urumqi"
    page = t.get(B, query_string={"limit": 1}).get_json()
    assert [b["name"] for b in page["items"]] == ["Wuhan East"] and page["next_cursor"]
    rest = t.get(B, query_string={"limit": 1, "cursor": page["next_cursor"]}).get_json()
    assert [b["name"] for b in rest["items"]] == ["Shanghai"] and rest["next_cursor"] is None
    r = t.post(f"{B}/{sh['id']}/deactivate")
    assert r.status_code == 200 and r.get_json()["active"] is False
    assert [b["name"] for b in t.get(B, query_string={"active": "true"}).get_json()["items"]] == ["Wuhan East"]


def test_names_are_unique_per_tenant_only(app):
    a, b = on(app), on(app)
    branch(a, "Shanghai")
    r = a.post(B, json={"name": "Shanghai", "timezone": "Asia/Shanghai"})
    assert r.status_code == 409 and rows(a, Branch) == 1
    branch(b, "Shanghai")
    other = branch(a, "Wuhan")
    r = a.patch(f"{B}/{other['id']}", json={"name": "Shanghai"})
    assert r.status_code == 409
    assert a.get(f"{B}/{other['id']}").get_json()["name"] == "Wuhan"


def test_bad_input_is_a_422_naming_the_field_and_writes_nothing(app):
    t = on(app)
    bad = [
        ({"name": "", "timezone": "Asia/Shanghai"}, "name"),
        ({"name": "x" * 101, "timezone": "Asia/Shanghai"}, "name"),
        ({"timezone": "Asia/Shanghai"}, "name"),
        ({"name": "A", "timezone": "Mars/Olympus"}, "timezone"),
        ({"name": "A", "timezone": "+08:00"}, "timezone"),
        ({"name": "A"}, "timezone"),
        ({"name": "A", "timezone": "Asia/Shanghai", "currency": "cny"}, "currency"),
        ({"name": "A", "timezone": "Asia/Shanghai", "currency": "YUAN"}, "currency"),
        ({"name": "A", "timezone": "Asia/Shanghai", "active": "maybe"}, "active"),
        ({"name": "A", "timezone": "Asia/Shanghai", "colour": "red"}, "colour"),
    ]
    for body, field in bad:
        r = t.post(B, json=body)
        assert r.status_code == 422, body
        assert field in r.get_json()["errors"]["json"], (body, r.get_json())
    assert rows(t, Branch) == 0
    sh = branch(t)
    for body, field in [({"timezone": "Nowhere"}, "timezone"), ({}, "_schema"), ({"currency": "RMB1"}, "currency")]:
        r = t.patch(f"{B}/{sh['id']}", json=body)
        assert r.status_code == 422 and field in r.get_json()["errors"]["json"], body
    assert t.get(f"{B}/{sh['id']}").get_json()["timezone"] == "Asia/Shanghai"


def test_teams_belong_to_at_most_one_branch(app):
    t = on(app)
    sh, wh = branch(t, "Shanghai"), branch(t, "Wuhan")
    r = t.put(f"{B}/{sh['id']}/teams/{t.team_id}")
    assert r.status_code == 200 and r.get_json()["team_name"] == "Sales"
    assert t.get(f"{B}/{sh['id']}").get_json()["team_ids"] == [t.team_id]
    assert t.put(f"{B}/{wh['id']}/teams/{t.team_id}").status_code == 200  # moves it
    assert t.get(f"{B}/{sh['id']}/teams").get_json()["items"] == []
    assert [x["team_id"] for x in t.get(f"{B}/{wh['id']}/teams").get_json()["items"]] == [t.team_id]
    assert rows(t, BranchTeam) == 1
    assert t.call("DELETE", f"{B}/{sh['id']}/teams/{t.team_id}").status_code == 404
    assert t.call("DELETE", f"{B}/{wh['id']}/teams/{t.team_id}").status_code == 204
    assert rows(t, BranchTeam) == 0


def test_delete_only_when_unused(app):
    t = on(app)
    sh, wh = branch(t, "Shanghai"), branch(t, "Wuhan")
    t.put(f"{B}/{sh['id']}/teams/{t.team_id}")
    r = t.post("/api/v1/settlement/policies", json={"entries": [
        {"branch_id": sh["id"], "team_id": t.team_id, "weight": 1}]})
    assert r.status_code == 201, r.get_json()
    r = t.call("DELETE", f"{B}/{sh['id']}")
    assert r.status_code == 409 and "in use" in r.get_json()["message"]
    assert t.get(f"{B}/{sh['id']}").get_json()["team_ids"] == [t.team_id]
    t.put(f"{B}/{wh['id']}/teams/{t.team_id}")  # an unused branch with a team: deleting it frees the team
    assert t.call("DELETE", f"{B}/{wh['id']}").status_code == 204
    assert t.get(f"{B}/{wh['id']}").status_code == 404 and rows(t, BranchTeam) == 0
    assert t.put(f"{B}/{sh['id']}/teams/{t.team_id}").status_code == 200


def test_roles_admins_write_managers_and_reps_read_their_branch(app):
    t = on(app)
    sh, wh = branch(t, "Shanghai"), branch(t, "Wuhan")
    t.put(f"{B}/{sh['id']}/teams/{t.team_id}")
    for who in ("manager", "rep"):
        assert t.post(B, json={"name": "X", "timezone": "Asia/Shanghai"}, who=who).status_code == 403
        assert t.patch(f"{B}/{sh['id']}", json={"active": False}, who=who).status_code == 403
        assert t.put(f"{B}/{wh['id']}/teams/{t.team_id}", who=who).status_code == 403
        assert t.call("DELETE", f"{B}/{wh['id']}", who=who).status_code == 403
        assert [b["id"] for b in t.get(B, who=who).get_json()["items"]] == [sh["id"]]
        assert t.get(f"{B}/{sh['id']}", who=who).status_code == 200
        assert t.get(f"{B}/{wh['id']}", who=who).status_code == 404
        assert t.get(f"{B}/{wh['id']}/teams", who=who).status_code == 404
    assert len(t.get(B).get_json()["items"]) == 2


def test_another_tenants_branch_or_team_is_a_404(app):
    a, b = on(app), on(app)
    theirs = branch(b, "Shanghai")
    mine = branch(a, "Shanghai")
    for method, path in [
        ("GET", f"{B}/{theirs['id']}"), ("PATCH", f"{B}/{theirs['id']}"), ("DELETE", f"{B}/{theirs['id']}"),
        ("POST", f"{B}/{theirs['id']}/deactivate"), ("GET", f"{B}/{theirs['id']}/teams"),
        ("PUT", f"{B}/{theirs['id']}/teams/{a.team_id}"), ("PUT", f"{B}/{mine['id']}/teams/{b.team_id}"),
    ]:
        kw = {"json": {"active": False}} if method == "PATCH" else {}
        assert a.call(method, path, **kw).status_code == 404, (method, path)
    assert b.get(f"{B}/{theirs['id']}").get_json()["active"] is True
    assert rows(a, BranchTeam) == 0 and rows(b, BranchTeam) == 0


def test_switched_off_the_routes_answer_404_naming_the_plugin(app):
    t = on(app)
    sh = branch(t)
    off = new_tenant(app)
    r = off.get(B)
    assert r.status_code == 404 and "settlement" in r.get_json()["message"]
    assert off.post(B, json={"name": "A", "timezone": "Asia/Shanghai"}).status_code == 404
    assert t.put("/api/v1/plugins/settlement", json={"enabled": False}).status_code == 200
    assert t.get(f"{B}/{sh['id']}").status_code == 404
    assert rows(off, Branch) == 0


def test_generated_requests(app):
    t = on(app)
    sh = branch(t)
    check_routes(app, B, t.headers("admin"), values={"branch_id": [sh["id"]], "team_id": [t.team_id]})
