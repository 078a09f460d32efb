"""The web console with Flask's test client: sign-in, sessions, CSRF, throttling, the plugin page contract."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from pelago.core.clock import FrozenClock
from pelago.testing import TenantHandle, new_tenant
from tests.console_kit import PASSWORD, ConsoleClient, csrf_of, set_passwords


def _sign_in_form(client) -> str:  # type: ignore[no-untyped-def]
    return csrf_of(client.get("/console/sign-in").get_data(as_text=True))


def test_sign_in_sign_out(tenant: TenantHandle) -> None:
    set_passwords(tenant)
    c = ConsoleClient(tenant, "rep")
    page = c.get("/console/")
    assert page.status_code == 200
    assert "rep@" in page.get_data(as_text=True)
    assert c.post("/console/sign-out").status_code == 302
    after = c.get("/console/")
    assert after.status_code == 302 and "/console/sign-in" in after.headers["Location"]


def test_anonymous_is_sent_to_sign_in(tenant: TenantHandle) -> None:
    r = tenant.client().get("/console/")
    assert r.status_code == 302 and r.headers["Location"].startswith("/console/sign-in")


def test_wrong_password_then_throttled(tenant: TenantHandle) -> None:
    set_passwords(tenant)
    client = tenant.client()
    token = _sign_in_form(client)
    email = f"manager@{tenant.slug}.test"
    for _ in range(5):
        r = client.post("/console/sign-in", data={"csrf_token": token, "email": email, "password": "wrong!"})
        assert r.status_code == 401
    # the sixth attempt is refused before the password is looked at: even the right one
    r = client.post("/console/sign-in", data={"csrf_token": token, "email": email, "password": PASSWORD})
    assert r.status_code == 429


def test_throttle_ends_with_its_window(app: Flask, tenant: TenantHandle, clock: FrozenClock) -> None:
    set_passwords(tenant)
    client = tenant.client()
    token = _sign_in_form(client)
    email = f"admin@{tenant.slug}.test"
    for _ in range(5):
        client.post("/console/sign-in", data={"csrf_token": token, "email": email, "password": "nope-nope"})
    assert client.post("/console/sign-in", data={"csrf_token": token, "email": email,
                                                 "password": PASSWORD}).status_code == 429
    clock.advance(minutes=6)
    assert client.post("/console/sign-in", data={"csrf_token": token, "email": email,
                                                 "password": PASSWORD}).status_code == 302


def test_post_without_csrf_refused(tenant: TenantHandle) -> None:
    set_passwords(tenant)
    c = ConsoleClient(tenant, "rep")
    r = c.client.post("/console/sign-out")  # no token
    assert r.status_code == 403
    assert c.get("/console/").status_code == 200  # still signed in
    r = c.client.post("/console/sign-out", data={"csrf_token": "forged"})
    assert r.status_code == 403
    # the sign-in form is protected too (its token lives in a cookie until there is a session)
    fresh = tenant.client()
    r = fresh.post("/console/sign-in", data={"email": f"rep@{tenant.slug}.test", "password": PASSWORD})
    assert r.status_code == 403


def test_session_expires(tenant: TenantHandle, clock: FrozenClock) -> None:
    set_passwords(tenant)
    c = ConsoleClient(tenant, "rep")
    clock.advance(hours=11)
    assert c.get("/console/").status_code == 200  # sliding: this request moves the expiry on
    clock.advance(hours=11)
    assert c.get("/console/").status_code == 200
    clock.advance(hours=13)
    assert c.get("/console/").status_code == 302
    # the next sign-in deletes the expired row
    from pelago.core.models import ConsoleSession

    ConsoleClient(tenant, "admin")
    with tenant.runtime.sessions() as session:
        rows = session.scalars(select(ConsoleSession).where(ConsoleSession.tenant_id == tenant.id)).all()
        assert [r.user_id for r in rows] == [tenant.users["admin"]]


def test_new_password_ends_sessions(tenant: TenantHandle, pelago_cli) -> None:  # type: ignore[no-untyped-def]
    set_passwords(tenant)
    c = ConsoleClient(tenant, "rep")
    r = pelago_cli("users", "set-password", f"rep@{tenant.slug}.test", "--tenant", tenant.slug,
                   "--password", "another secret")
    assert r.exit_code == 0, r.output
    assert c.get("/console/").status_code == 302
    ConsoleClient(tenant, "rep", password="another secret")
    short = pelago_cli("users", "set-password", f"rep@{tenant.slug}.test", "--tenant", tenant.slug,
                       "--password", "short")
    assert short.exit_code != 0


def test_open_redirect_refused(tenant: TenantHandle) -> None:
    set_passwords(tenant)
    client = tenant.client()
    token = _sign_in_form(client)
    r = client.post("/console/sign-in?next=https://evil.example/", data={
        "csrf_token": token, "email": f"rep@{tenant.slug}.test", "password": PASSWORD})
    assert r.status_code == 302 and r.headers["Location"] == "/console/"


def test_language_follows_tenant_then_choice(tenant: TenantHandle) -> None:
    set_passwords(tenant)
    c = ConsoleClient(tenant, "rep")
    assert "首页" in c.get("/console/").get_data(as_text=True)  # a CN tenant: Chinese by default
    c.post("/console/language", {"locale": "en", "next": "/console/"})
    html = c.get("/console/").get_data(as_text=True)
    assert "Dashboard" in html and "首页" not in html


def test_plugin_pages_follow_the_switch(make_app) -> None:  # type: ignore[no-untyped-def]
    app: Flask = make_app(plugins=("pool", "recorder"))
    tenant = new_tenant(app)
    set_passwords(tenant)
    tenant.put("/api/v1/plugins/recorder", json={"enabled": True})
    c = ConsoleClient(tenant, "admin")
    home = c.get("/console/").get_data(as_text=True)
    assert "/console/p/recorder/" in home and "已记录的调用" in home
    assert c.get("/console/p/recorder/").status_code == 200
    rep = ConsoleClient(tenant, "rep")
    assert rep.post("/console/p/recorder/forget").status_code == 403  # the page's own role check
    assert c.post("/console/p/recorder/forget").status_code == 302
    assert tenant.put("/api/v1/plugins/recorder", json={"enabled": False}).status_code == 200
    home = c.get("/console/").get_data(as_text=True)
    assert "/console/p/recorder/" not in home
    gone = c.get("/console/p/recorder/")
    assert gone.status_code == 404 and "text/html" in gone.content_type
    # another tenant that has it on sees it; this one still does not
    other = new_tenant(app)
    set_passwords(other)
    other.put("/api/v1/plugins/recorder", json={"enabled": True})
    assert ConsoleClient(other, "rep").get("/console/p/recorder/").status_code == 200
    assert c.get("/console/p/recorder/").status_code == 404


def test_leads_list_and_search(tenant: TenantHandle) -> None:
    set_passwords(tenant)
    mine = tenant.lead("13800138001", who="rep", name="Wang Mine")
    theirs = tenant.lead("13800138002", who="rep2", name="Li Theirs")
    rep = ConsoleClient(tenant, "rep")
    html = rep.get("/console/leads").get_data(as_text=True)
    assert "Wang Mine" in html and "Li Theirs" not in html
    # a phone in another format finds it
    found = rep.get("/console/leads", query_string={"q": "+86 138-0013-8001"}).get_data(as_text=True)
    assert "Wang Mine" in found
    manager = ConsoleClient(tenant, "manager")
    html = manager.get("/console/leads", query_string={"owner_id": str(tenant.users["rep2"])}).get_data(as_text=True)
    assert "Li Theirs" in html and "Wang Mine" not in html
    assert rep.get(f"/console/leads/{mine['id']}").status_code == 200
    assert rep.get(f"/console/leads/{theirs['id']}").status_code == 404
    bad = manager.get("/console/leads", query_string={"stage": "nonsense"})
    assert bad.status_code == 200 and 'role="alert">stage' in bad.get_data(as_text=True)


def test_cursor_paging(tenant: TenantHandle) -> None:
    set_passwords(tenant)
    for i in range(30):
        tenant.lead(f"1390000{i:04d}", name=f"Paged {i}")
    c = ConsoleClient(tenant, "admin")
    first = c.get("/console/leads").get_data(as_text=True)
    assert first.count("Paged ") == 25 and 'id="next-page"' in first
    import re

    link = re.search(r'href="([^"]*cursor=[^"]*)" id="next-page"', first)
    assert link
    second = c.get(link.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert second.count("Paged ") == 5 and 'id="next-page"' not in second


def test_other_tenants_lead_is_a_404_page(app: Flask, tenant: TenantHandle) -> None:
    set_passwords(tenant)
    other = new_tenant(app)
    lead = other.lead("13800138009")
    r = ConsoleClient(tenant, "admin").get(f"/console/leads/{lead['id']}")
    assert r.status_code == 404 and "text/html" in r.content_type


def test_create_lead_merge_and_collision(tenant: TenantHandle) -> None:
    set_passwords(tenant)
    rep = ConsoleClient(tenant, "rep")
    r = rep.post("/console/leads/new", {"name": "Zhou", "phone": "138 0013 8111", "source": "walk-in"})
    assert r.status_code == 302
    lead_id = int(r.headers["Location"].rsplit("/", 1)[1])
    page = rep.get(f"/console/leads/{lead_id}").get_data(as_text=True)
    assert "Zhou" in page and "+8613800138111" in page
    again = rep.post("/console/leads/new", {"phone": "+86 13800138111", "email": "zhou@example.com"})
    assert again.status_code == 302 and again.headers["Location"].endswith(f"/{lead_id}")
    assert "已合并" in rep.get(again.headers["Location"]).get_data(as_text=True)
    # a colleague's duplicate: the collision, nothing of the lead
    rep2 = ConsoleClient(tenant, "rep2")
    clash = rep2.post("/console/leads/new", {"phone": "13800138111"})
    assert clash.status_code == 409 or clash.status_code == 422
    assert str(lead_id) in clash.get_data(as_text=True) and "Zhou" not in clash.get_data(as_text=True)
    empty = rep.post("/console/leads/new", {"name": "nobody"})
    assert empty.status_code == 422 and 'aria-invalid="true"' in empty.get_data(as_text=True)


def test_lead_actions(tenant: TenantHandle) -> None:
    set_passwords(tenant)
    lead = tenant.lead("13800138222", who="rep", name="Acting")
    rep = ConsoleClient(tenant, "rep")
    url = f"/console/leads/{lead['id']}"
    assert rep.post(url + "/activity", {"kind": "call", "note": "rang back"}).status_code == 302
    assert "rang back" in rep.get(url).get_data(as_text=True)
    lost = rep.post(url + "/stage", {"stage": "lost"})
    assert lost.status_code == 422 and 'aria-invalid="true"' in lost.get_data(as_text=True)
    assert rep.post(url + "/stage", {"stage": "contacted"}).status_code == 302
    assert tenant.get(f"/api/v1/leads/{lead['id']}").get_json()["stage"] == "contacted"
    assert rep.post(url + "/assign", {"user_id": str(tenant.users["rep2"])}).status_code == 403
    assert rep.post(url + "/deal", {"amount": "lots"}).status_code == 422
    assert rep.post(url + "/deal", {"amount": "1999.00", "product": "course"}).status_code == 302
    deal = tenant.get("/api/v1/deals", query_string={"lead_id": lead["id"]}).get_json()["items"][0]
    assert rep.post(url + f"/deals/{deal['id']}/refund", {"amount": "99999", "reason": "x"}).status_code in (409, 422)
    assert rep.post(url + f"/deals/{deal['id']}/refund", {"amount": "100", "reason": "partial"}).status_code == 302
    manager = ConsoleClient(tenant, "manager")
    assert manager.post(url + "/assign", {"user_id": str(tenant.users["rep2"]), "note": "cover"}).status_code == 302
    assert rep.get(url).status_code == 404  # no longer hers
    assert manager.post(url + "/assign", {"user_id": ""}).status_code == 302
    assert tenant.get(f"/api/v1/leads/{lead['id']}").get_json()["owner_id"] is None
    assert manager.post(url + "/lock", {"locked": "1"}).status_code == 302
    assert tenant.get(f"/api/v1/leads/{lead['id']}").get_json()["locked"] is True


def test_import_with_a_bad_row(tenant: TenantHandle) -> None:
    import io

    set_passwords(tenant)
    c = ConsoleClient(tenant, "manager")
    body = "姓名,手机号\n张三,13800138333\n李四,not-a-phone\n".encode("gb18030")
    r = c.post("/console/imports", {"file": (io.BytesIO(body), "leads.csv")}, content_type="multipart/form-data")
    assert r.status_code == 302, r.get_data(as_text=True)
    page = c.get(r.headers["Location"]).get_data(as_text=True)
    assert 'id="failed-rows">1<' in page and "done" in page
    csv_url = r.headers["Location"] + "/errors.csv"
    report = c.get(csv_url)
    assert report.status_code == 200 and report.mimetype == "text/csv"
    lines = report.get_data().decode("utf-8-sig").splitlines()
    assert lines[0].startswith("row,") and lines[1].startswith("2,")
    progress = c.get(r.headers["Location"] + "/progress", query_string={"was": "running"})
    assert progress.headers.get("HX-Refresh") == "true"
    assert ConsoleClient(tenant, "rep").get("/console/imports").status_code == 403
    empty = c.post("/console/imports", {}, content_type="multipart/form-data")
    assert empty.status_code == 422 and 'aria-invalid="true"' in empty.get_data(as_text=True) or \
        "f-file-error" in empty.get_data(as_text=True)


def test_plugins_page_switch_and_refusal(make_app) -> None:  # type: ignore[no-untyped-def]
    app: Flask = make_app(plugins=("pool", "recorder", "needs_recorder"))
    tenant = new_tenant(app)
    set_passwords(tenant)
    c = ConsoleClient(tenant, "admin")
    page = c.get("/console/plugins").get_data(as_text=True)
    assert 'id="plugin-recorder"' in page and "Records hook calls for the tests." in page
    refused = c.post("/console/plugins/needs_recorder/switch", {"enabled": "1"})
    assert refused.status_code == 409 and "recorder" in refused.get_data(as_text=True)
    assert c.post("/console/plugins/recorder/switch", {"enabled": "1"}).status_code == 302
    assert c.post("/console/plugins/needs_recorder/switch", {"enabled": "1"}).status_code == 302
    # switching recorder off while needs_recorder is on is refused with the reason
    assert c.post("/console/plugins/recorder/switch", {"enabled": "0"}).status_code == 409
    assert ConsoleClient(tenant, "manager").get("/console/plugins").status_code == 403


def test_plugin_settings_form(make_app) -> None:  # type: ignore[no-untyped-def]
    app: Flask = make_app(plugins=("pool", "recorder"))
    tenant = new_tenant(app)
    set_passwords(tenant)
    tenant.put("/api/v1/plugins/recorder", json={"enabled": True, "settings": {"token": "s3cret"}})
    c = ConsoleClient(tenant, "admin")
    page = c.get("/console/plugins/recorder").get_data(as_text=True)
    assert 'name="s.threshold"' in page and 'value="10"' in page
    assert "s3cret" not in page and 'value="********"' in page
    bad = c.post("/console/plugins/recorder", {"s.threshold": "500", "s.token": "********"})
    html = bad.get_data(as_text=True)
    assert bad.status_code == 422 and 'id="s-threshold-error"' in html and 'value="500"' in html
    ok = c.post("/console/plugins/recorder", {"s.threshold": "20", "s.token": "********", "s.team_id": ""})
    assert ok.status_code == 302
    stored = tenant.get("/api/v1/plugins/recorder").get_json()["settings"]
    assert stored["threshold"] == 20 and stored["token"] == "********"
    with tenant.runtime.sessions() as session:
        from pelago.core.models import TenantPlugin

        row = session.get(TenantPlugin, (tenant.id, "recorder"))
        assert row is not None and row.settings["token"] not in ("", "********")  # the mask kept the secret


def test_generated_form_round_trip() -> None:
    """Nested lists of rules, choices, dicts and numbers survive describe → form → parse, errors find their field."""
    from marshmallow import Schema, ValidationError, fields, validate
    from werkzeug.datastructures import MultiDict

    from pelago.hostapp.console import settings_form as sf

    class Rule(Schema):
        field = fields.String(required=True, validate=validate.OneOf(("source", "region")))
        value = fields.String(required=True)
        points = fields.Integer(strict=True, load_default=0, validate=validate.Range(min=0, max=100))

    class Settings(Schema):
        rules = fields.List(fields.Nested(Rule), load_default=list)
        channels = fields.List(fields.String(validate=validate.OneOf(("sms", "wechat"))), load_default=list)
        extra = fields.Dict(load_default=dict)
        on = fields.Boolean(load_default=True)

    values = {"rules": [{"field": "source", "value": "baidu", "points": 5}], "channels": ["sms"],
              "extra": {"a": 1}, "on": True}
    tree = sf.describe(Settings(), values)
    rules = next(f for f in tree if f.name == "rules")
    assert len(rules.items) == 2  # the stored rule and a blank one to add
    form = MultiDict([("s.rules.0.field", "source"), ("s.rules.0.value", "baidu"), ("s.rules.0.points", "5"),
                      ("s.rules.1.field", "region"), ("s.rules.1.value", "武汉"), ("s.rules.1.points", "300"),
                      ("s.rules.2.field", ""), ("s.rules.2.value", ""), ("s.rules.2.points", ""),
                      ("s.channels.present", "1"), ("s.channels", "wechat"), ("s.extra", '{"b": 2}'),
                      ("s.on.present", "1")])
    parsed = sf.parse(Settings(), form)
    assert parsed == {"rules": [{"field": "source", "value": "baidu", "points": 5},
                                {"field": "region", "value": "武汉", "points": 300}],
                      "channels": ["wechat"], "extra": {"b": 2}, "on": False}
    try:
        Settings().load(parsed)
    except ValidationError as exc:
        assert sf.flatten(exc.messages) == {"rules.1.points": ["Must be greater than or equal to 0 and less than "
                                                               "or equal to 100."]}
    else:
        raise AssertionError("300 points must be refused")
    form.setlist("s.rules.0.remove", ["on"])
    assert [r["value"] for r in sf.parse(Settings(), form)["rules"]] == ["武汉"]


def test_pool_pages_claim_refusal_and_release(app: Flask, tenant: TenantHandle) -> None:
    set_passwords(tenant)
    assert tenant.put("/api/v1/plugins/pool", json={"enabled": True}).status_code == 200
    lead = tenant.lead("13800138444", who="rep", name="Pooled")
    rep = ConsoleClient(tenant, "rep")
    home = rep.get("/console/p/pool/").get_data(as_text=True)
    assert "Pooled" in home  # her held lead, with its days left
    r = rep.post("/console/p/pool/release", {"lead_ids": str(lead["id"]), "reason": "no answer"})
    assert r.status_code == 302, r.get_data(as_text=True)
    pools = tenant.get("/api/v1/pool/pools").get_json()["items"]
    pool_id = pools[0]["id"]
    page = rep.get(f"/console/p/pool/{pool_id}").get_data(as_text=True)
    assert f'value="{lead["id"]}"' in page
    rep2 = ConsoleClient(tenant, "rep2")
    assert rep2.post("/console/p/pool/claim", {"lead_ids": str(lead["id"]),
                                               "pool_id": str(pool_id)}).status_code == 302
    again = rep.post("/console/p/pool/claim", {"lead_ids": str(lead["id"]), "pool_id": str(pool_id)})
    assert again.status_code == 409 and 'id="refusals"' in again.get_data(as_text=True)
    assert rep.get("/console/p/pool/sweep").status_code == 403
    assert ConsoleClient(tenant, "manager").get("/console/p/pool/sweep").status_code == 200
    assert tenant.put("/api/v1/plugins/pool", json={"enabled": False}).status_code == 200
    assert rep.get("/console/p/pool/").status_code == 404
    assert "/console/p/pool/" not in rep.get("/console/").get_data(as_text=True)


def test_admin_pages(tenant: TenantHandle) -> None:
    set_passwords(tenant)
    admin = ConsoleClient(tenant, "admin")
    for path in ("/console/users", "/console/teams", "/console/routing", "/console/channels", "/console/api-keys",
                 "/console/deliveries"):
        assert admin.get(path).status_code == 200, path
    rep = ConsoleClient(tenant, "rep")
    assert rep.get("/console/users").status_code == 403 and rep.get("/console/api-keys").status_code == 200
    # users: create with a team, a bad capacity shown at its field, working hours and a password reset
    r = admin.post("/console/users", {"s.email": "new@x.test", "s.name": "New", "s.role": "rep",
                                      "s.team_id": str(tenant.team_id), "s.password": "long enough pw"})
    assert r.status_code == 302, r.get_data(as_text=True)
    user_url = r.headers["Location"]
    bad = admin.post(user_url, {"s.daily_capacity": "-1"})
    assert bad.status_code == 422 and 'id="s-daily_capacity-error"' in bad.get_data(as_text=True)
    ok = admin.post(user_url, {"s.daily_capacity": "20", "s.on_leave.present": "1", "s.on_leave": "on",
                               "s.active.present": "1", "s.active": "on", "s.working_hours.days": "1\n2\n3",
                               "s.working_hours.start": "09:00", "s.working_hours.end": "18:00",
                               "s.password": "another password"})
    assert ok.status_code == 302, ok.get_data(as_text=True)
    user_id = int(user_url.rsplit("/", 1)[1])
    got = tenant.get(f"/api/v1/users/{user_id}").get_json()
    assert got["daily_capacity"] == 20 and got["on_leave"] is True
    assert got["working_hours"] == {"days": [1, 2, 3], "start": "09:00", "end": "18:00"}
    # teams and their strategy
    assert admin.post("/console/teams", {"s.name": "华东", "s.strategy": "weighted"}).status_code == 302
    team = [t for t in tenant.get("/api/v1/teams").get_json()["items"] if t["name"] == "华东"][0]
    assert team["strategy"] == "weighted"
    assert admin.post(f"/console/teams/{team['id']}", {"s.strategy": "nonsense"}).status_code == 422
    # a routing rule, then the preview explains where a lead would go
    r = admin.post("/console/routing", {"action": "create", "s.name": "baidu to east", "s.priority": "10",
                                        "s.team_id": str(team["id"]), "s.match.source": "baidu",
                                        "s.active.present": "1", "s.active": "on"})
    assert r.status_code == 302, r.get_data(as_text=True)
    preview = admin.post("/console/routing", {"action": "preview", "p.phone": "13800138999", "p.source": "baidu"})
    html = preview.get_data(as_text=True)
    assert preview.status_code == 200 and 'id="preview-result"' in html and "baidu to east" in html
    # a channel: its secret once, with the signing example
    ch = admin.post("/console/channels", {"s.name": "landing page", "s.active.present": "1", "s.active": "on"})
    html = ch.get_data(as_text=True)
    assert ch.status_code == 200 and 'id="secret-value"' in html and "X-Pelago-Signature: sha256=" in html
    assert 'id="secret-value"' not in admin.get("/console/channels").get_data(as_text=True)
    # API keys: a rep's own, shown once, then revoked
    made = rep.post("/console/api-keys", {"name": "laptop"}).get_data(as_text=True)
    assert 'id="key-value">pk_' in made
    key_id = tenant.get("/api/v1/api-keys", who="rep").get_json()["items"][-1]["id"]
    assert rep.post(f"/console/api-keys/{key_id}/revoke").status_code == 302


def test_failed_delivery_retried(make_app, test_plugins_forget) -> None:  # type: ignore[no-untyped-def]
    from tests.plugins import failing

    app: Flask = make_app(plugins=("pool", "recorder", "failing"))
    tenant = new_tenant(app)
    set_passwords(tenant)
    tenant.put("/api/v1/plugins/failing", json={"enabled": True})
    tenant.lead("13800138123")
    admin = ConsoleClient(tenant, "admin")
    page = admin.get("/console/deliveries").get_data(as_text=True)
    assert "failing" in page
    failed = tenant.get("/api/v1/deliveries", query_string={"state": "failed"}).get_json()["items"]
    assert failed
    failing.ATTEMPTS.clear()
    r = admin.post(f"/console/deliveries/{failed[0]['id']}/retry")
    assert r.status_code == 302
    assert failing.ATTEMPTS  # ran again


def test_demo_credentials_sign_in(app: Flask) -> None:
    """`make run` prints these: each demo user signs in to the console with them."""
    from pelago.hostapp.demo import PASSWORD as DEMO_PASSWORD
    from pelago.hostapp.demo import PEOPLE, seed

    info = seed(app.extensions["pelago"])
    banner = info.banner("http://127.0.0.1:5000")
    assert "http://127.0.0.1:5000/console" in banner and DEMO_PASSWORD in banner
    for email, _name, _role in PEOPLE:
        assert email in banner
        client = app.test_client()
        token = _sign_in_form(client)
        r = client.post("/console/sign-in", data={"csrf_token": token, "email": email, "password": DEMO_PASSWORD,
                                                  "tenant": "demo"})
        assert r.status_code == 302, email
        assert client.get("/console/leads").status_code == 200


class _FormValues:
    """The values a browser would post from the settings form of a page (inputs, checked boxes, selects)."""

    def __init__(self, html: str) -> None:
        from html.parser import HTMLParser

        values: list[tuple[str, str]] = []
        state: dict[str, Any] = {"select": None, "textarea": None, "text": ""}

        class P(HTMLParser):
            def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
                a = {k: v or "" for k, v in attrs}
                name = a.get("name", "")
                if tag == "input" and name:
                    if a.get("type") == "checkbox":
                        if "checked" in a:
                            values.append((name, a.get("value") or "on"))
                    else:
                        values.append((name, a.get("value", "")))
                elif tag == "select":
                    state["select"], state["chosen"], state["first"] = name, None, None
                elif tag == "option" and state["select"]:
                    if state["first"] is None:
                        state["first"] = a.get("value", "")
                    if "selected" in a:
                        state["chosen"] = a.get("value", "")
                elif tag == "textarea":
                    state["textarea"], state["text"] = name, ""

            def handle_endtag(self, tag: str) -> None:
                if tag == "select" and state["select"]:
                    chosen = state["chosen"] if state["chosen"] is not None else state["first"]
                    values.append((state["select"], chosen or ""))
                    state["select"] = None
                elif tag == "textarea" and state["textarea"]:
                    values.append((state["textarea"], state["text"]))
                    state["textarea"] = None

            def handle_data(self, data: str) -> None:
                if state["textarea"]:
                    state["text"] += data

        start = html.index('id="settings-form"')
        P().feed(html[start:html.index("</form>", start)])
        self.values = values


def test_every_plugins_settings_form_posts_back(app: Flask, tenant: TenantHandle) -> None:
    """The generated form of each deployed plugin, posted back unchanged, is accepted (no 422, no 500)."""
    from werkzeug.datastructures import MultiDict

    set_passwords(tenant)
    c = ConsoleClient(tenant, "admin")
    checked = []
    for name, spec in app.extensions["pelago"].host.specs.items():
        if spec.settings is None:
            continue
        page = c.get(f"/console/plugins/{name}").get_data(as_text=True)
        form = MultiDict(_FormValues(page).values)
        r = c.client.post(f"/console/plugins/{name}", data=form)
        assert r.status_code == 302, (name, r.get_data(as_text=True)[-3000:])
        checked.append(name)
    assert "pool" in checked and len(checked) >= 3


def test_dashboard_numbers(tenant: TenantHandle) -> None:
    set_passwords(tenant)
    tenant.put("/api/v1/plugins/pool", json={"enabled": True})
    tenant.lead("13800138501", who="rep", source="baidu")
    tenant.lead("13800138502", who="rep2", source="baidu")
    released = tenant.lead("13800138503", who="rep", source="douyin")
    tenant.post("/api/v1/pool/release", who="rep", json={"lead_ids": [released["id"]], "reason": "x"})
    manager = ConsoleClient(tenant, "manager").get("/console/").get_data(as_text=True)
    assert "<th>baidu</th><td>2</td>" in manager and 'id="unowned-count"' in manager
    assert 'id="panel-pool-flows"' in manager and "流入公海: 1" in manager.replace("：", ": ")
    rep = ConsoleClient(tenant, "rep").get("/console/").get_data(as_text=True)
    assert "<th>baidu</th><td>1</td>" in rep  # her own leads only
    assert 'id="my-open">1<' in rep and 'id="panel-pool-flows"' not in rep


@pytest.mark.parametrize("fault", ["sql", "raise", "template"])
def test_a_plugins_failing_dashboard_panel_is_shown_unavailable_and_the_rest_is_drawn(
        make_app, caplog, fault: str) -> None:  # type: ignore[no-untyped-def]
    """Was: a panel whose ``data`` raised made the whole dashboard a 500, for everyone of the tenant. Its
    failed statement ("sql") would also leave a PostgreSQL transaction aborted for the panels after it.
    So did a panel whose template failed to render ("template")."""
    from tests.plugins import recorder

    app: Flask = make_app(plugins=("recorder",))
    tenant = new_tenant(app)
    set_passwords(tenant)
    tenant.put("/api/v1/plugins/recorder", json={"enabled": True})
    tenant.lead("13800138601")
    manager = ConsoleClient(tenant, "manager")
    recorder.PANEL_FAULT[:] = [fault]
    try:
        with caplog.at_level(logging.ERROR, logger="pelago"):
            r = manager.get("/console/")
        page = r.get_data(as_text=True)
        assert r.status_code == 200, page
        broken = page[page.index('id="panel-recorder-broken"'):]
        broken = broken[:broken.index("</section>")]
        assert "坏面板" in broken and "此面板暂时无法显示。" in broken  # its title, and why it is empty
        assert 'id="recorder-leads">1<' in page  # the next panel, in the same transaction
        assert 'id="unowned-count"' in page
        failed = [rec for rec in caplog.records if "panel 'broken' of plugin recorder" in rec.getMessage()]
        assert failed and failed[0].exc_info is not None
        manager.post("/console/language", {"locale": "en", "next": "/console/"})
        english = manager.get("/console/").get_data(as_text=True)
        assert "This panel is unavailable right now." in english and 'id="recorder-leads">1<' in english
    finally:
        recorder.PANEL_FAULT.clear()
    page = manager.get("/console/").get_data(as_text=True)
    assert 'id="panel-recorder-broken"' not in page and 'id="recorder-leads">1<' in page


def test_plugin_dashboard_panels_follow_the_switch_role_and_tenant(make_app) -> None:  # type: ignore[no-untyped-def]
    app: Flask = make_app(plugins=("recorder",))
    tenant, other = new_tenant(app), new_tenant(app)
    for t, n in ((tenant, 2), (other, 3)):
        set_passwords(t)
        t.put("/api/v1/plugins/recorder", json={"enabled": True})
        for i in range(n):
            t.lead(f"1380013{t.id % 100:02d}{i:02d}")
    manager = ConsoleClient(tenant, "manager")
    home = manager.get("/console/").get_data(as_text=True)
    assert 'id="panel-recorder-leads"' in home and "记录的线索" in home  # its title, translated
    assert 'id="recorder-leads">2<' in home  # this tenant's leads, never the other's
    assert 'id="recorder-leads">3<' in ConsoleClient(other, "admin").get("/console/").get_data(as_text=True)
    assert 'id="panel-recorder-leads"' not in ConsoleClient(tenant, "rep").get("/console/").get_data(as_text=True)
    tenant.put("/api/v1/plugins/recorder", json={"enabled": False})
    assert 'id="panel-recorder-leads"' not in manager.get("/console/").get_data(as_text=True)
    assert 'id="recorder-leads">3<' in ConsoleClient(other, "manager").get("/console/").get_data(as_text=True)
