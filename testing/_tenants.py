"""A tenant with its people and their API clients: how tests isolate themselves.

Tests share one database per run and never clean it: each makes fresh tenants,
which is also how the product keeps its customers apart.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from flask import Flask
    from flask.testing import FlaskClient

    from pelago.core.runtime import Runtime

#: the people :func:`new_tenant` makes, and their roles
PEOPLE = (("admin", "admin"), ("manager", "manager"), ("rep", "rep"), ("rep2", "rep"))


@dataclass
class TenantHandle:
    """A tenant with its people and their API clients.

    ``users`` and ``keys`` map ``"admin"``, ``"manager"``, ``"rep"`` and
    ``"rep2"`` to user ids and API keys; ``who`` in the request helpers picks
    whose key is sent.
    """

    app: Flask
    id: int
    slug: str
    team_id: int
    users: dict[str, int] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def runtime(self) -> Runtime:
        """The app's runtime (its plugins, sessions, clock and queue)."""
        return self.app.extensions["pelago"]  # type: ignore[no-any-return]

    def headers(self, who: str = "admin") -> dict[str, str]:
        """The ``Authorization`` header of ``who``'s API key."""
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def client(self) -> FlaskClient:
        """A new Flask test client of the app (no credentials)."""
        return self.app.test_client()

    def call(self, method: str, path: str, who: str = "admin", **kw: Any) -> Any:
        """``method path`` as ``who``; ``kw`` goes to Flask's test client (``json=``, ``query_string=`` …)."""
        headers = {**self.headers(who), **kw.pop("headers", {})}
        return self.app.test_client().open(path, method=method.upper(), headers=headers, **kw)

    def get(self, path: str, who: str = "admin", **kw: Any) -> Any:
        """``GET path`` as ``who`` (see :meth:`call`)."""
        return self.call("GET", path, who, **kw)

    def post(self, path: str, who: str = "admin", **kw: Any) -> Any:
        """``POST path`` as ``who`` (see :meth:`call`)."""
        return self.call("POST", path, who, **kw)

    def patch(self, path: str, who: str = "admin", **kw: Any) -> Any:
        """``PATCH path`` as ``who`` (see :meth:`call`)."""
        return self.call("PATCH", path, who, **kw)

    def put(self, path: str, who: str = "admin", **kw: Any) -> Any:
        """``PUT path`` as ``who`` (see :meth:`call`)."""
        return self.call("PUT", path, who, **kw)

    def lead(self, phone: str | None = None, who: str = "admin", **fields: Any) -> dict[str, Any]:
        """Create a lead through the API (``POST /api/v1/leads``) and return its JSON."""
        body = {"name": fields.pop("name", "Lead"), **fields}
        if phone is not None:
            body["phone"] = phone
        r = self.post("/api/v1/leads", who, json=body)
        assert r.status_code in (200, 201), r.get_json()
        return r.get_json()  # type: ignore[no-any-return]


def new_tenant(app: Flask, slug: str | None = None) -> TenantHandle:
    """A tenant with a team, an admin, a manager and two reps, each with a key."""
    from pelago.core.models import Team
    from pelago.core.services import admin

    rt: Runtime = app.extensions["pelago"]
    slug = slug or f"t-{uuid.uuid4().hex[:10]}"
    now = rt.clock()
    with rt.sessions() as session:
        tenant = admin.create_tenant(session, slug=slug, name=slug, now=now)
        team = Team(tenant_id=tenant.id, name="Sales", description="", active=True, created_at=now)
        session.add(team)
        session.flush()
        handle = TenantHandle(app, tenant.id, slug, team.id)
        for who, role in PEOPLE:
            user = admin.create_user(session, tenant_id=tenant.id, email=f"{who}@{slug}.test", role=role,
                                     team_id=team.id, now=now)
            _, key = admin.create_api_key(session, user, now=now)
            handle.users[who] = user.id
            handle.keys[who] = key
        session.commit()
    return handle


def new_operator_key(app: Flask) -> str:
    """An API key of a new operator (no tenant): the role that manages tenants."""
    from pelago.core.services import admin

    rt: Runtime = app.extensions["pelago"]
    with rt.sessions() as session:
        user = admin.create_user(session, tenant_id=None, email=f"op-{uuid.uuid4().hex[:8]}@ops.test",
                                 role="operator", now=rt.clock())
        _, key = admin.create_api_key(session, user, now=rt.clock())
        session.commit()
    return key
