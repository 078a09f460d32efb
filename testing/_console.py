"""A Flask test client signed in to the console, for testing a plugin's console pages."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from flask.testing import FlaskClient

    from ._tenants import TenantHandle

#: the console password :class:`ConsoleClient` sets for the person it signs in
PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


def csrf_of(html: str) -> str:
    """The CSRF token of a console page's form (``AssertionError`` when the page has none)."""
    found = _CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


class ConsoleClient:
    """A test client signed in to ``/console`` as ``who`` of ``tenant`` (``"admin"``, ``"manager"``, ``"rep"``, ``"rep2"``).

    Signs in through the real sign-in form (setting the person's console
    password first), so the session, the CSRF check and the role checks are
    those a browser gets. ``post`` sends the session's CSRF token with the
    form (``csrf=False`` leaves it out, to test that a post without it is
    refused); ``client`` is the Flask test client itself.
    """

    def __init__(self, tenant: TenantHandle, who: str = "admin", password: str = PASSWORD) -> None:
        from pelago.core.services import admin

        self.tenant = tenant
        self.who = who
        email = f"{who}@{tenant.slug}.test"
        with tenant.runtime.sessions() as session:
            admin.set_password(session, tenant_id=tenant.id, email=email, password=password)
            session.commit()
        self.client: FlaskClient = tenant.app.test_client()
        page = self.client.get("/console/sign-in")
        r = self.client.post("/console/sign-in", data={
            "csrf_token": csrf_of(page.get_data(as_text=True)), "email": email, "password": password})
        assert r.status_code == 302, r.get_data(as_text=True)
        self.csrf = csrf_of(self.client.get("/console/").get_data(as_text=True))

    def get(self, path: str, **kw: Any) -> Any:
        """``GET path`` (``kw`` goes to Flask's test client: ``query_string=`` …)."""
        return self.client.get(path, **kw)

    def post(self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True, **kw: Any) -> Any:
        """Post the form ``data`` to ``path`` with the session's CSRF token (without it when ``csrf=False``)."""
        form = {"csrf_token": self.csrf, **(data or {})} if csrf else dict(data or {})
        return self.client.post(path, data=form, **kw)

    def text(self, path: str, status: int = 200, **kw: Any) -> str:
        """The HTML of ``GET path``, asserting its status (200 unless told)."""
        r = self.client.get(path, **kw)
        assert r.status_code == status, (r.status_code, r.get_data(as_text=True)[:2000])
        return str(r.get_data(as_text=True))
