"""Signing a Flask test client in to the console (shared by the console's tests)."""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient

from pelago.core.services import admin
from pelago.testing import TenantHandle

PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


def set_passwords(tenant: TenantHandle, password: str = PASSWORD) -> None:
    with tenant.runtime.sessions() as session:
        for who in tenant.users:
            admin.set_password(session, tenant_id=tenant.id, email=f"{who}@{tenant.slug}.test", password=password)
        session.commit()


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


class ConsoleClient:
    """A test client signed in as one of the tenant's people; ``post`` adds the page's CSRF token."""

    def __init__(self, tenant: TenantHandle, who: str, password: str = PASSWORD) -> None:
        self.client: FlaskClient = tenant.app.test_client()
        self.tenant = tenant
        page = self.client.get("/console/sign-in")
        r = self.client.post("/console/sign-in", data={
            "csrf_token": csrf_of(page.get_data(as_text=True)), "email": f"{who}@{tenant.slug}.test",
            "password": password,
        })
        assert r.status_code == 302, r.get_data(as_text=True)
        self.csrf = csrf_of(self.client.get("/console/").get_data(as_text=True))

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, **kw)

    def post(self, path: str, data: dict[str, Any] | None = None, **kw: Any) -> Any:
        return self.client.post(path, data={"csrf_token": self.csrf, **(data or {})}, **kw)
