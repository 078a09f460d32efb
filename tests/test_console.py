"""The web console with Flask's test client: sign-in, sessions, CSRF, throttling, the plugin page contract."""

from __future__ import annotations

from flask import Flask

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
