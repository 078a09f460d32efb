"""Shared set-up for the pool's tests: a tenant with the pool on, pools, leads in them."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

from flask import Flask
from sqlalchemy import JSON, func, select, text

from pelago.plugin import Lead, User
from pelago.testing import TenantHandle, new_tenant


def phone() -> str:
    return f"+86139{uuid.uuid4().int % 10**8:08d}"


def pool_tenant(app: Flask, **settings: Any) -> TenantHandle:
    """A tenant with the pool on and its default pool's settings set."""
    t = new_tenant(app)
    r = t.put("/api/v1/plugins/pool", json={"enabled": True})
    assert r.status_code == 200, r.get_json()
    if settings:
        set_pool(t, default_pool(t)["id"], **settings)
    return t


def default_pool(t: TenantHandle) -> dict[str, Any]:
    items = t.get("/api/v1/pool/pools").get_json()["items"]
    return next(p for p in items if p["is_default"])


def set_pool(t: TenantHandle, pool_id: int, **settings: Any) -> dict[str, Any]:
    r = t.patch(f"/api/v1/pool/pools/{pool_id}", json={"settings": settings})
    assert r.status_code == 200, r.get_json()
    return r.get_json()  # type: ignore[no-any-return]


def into_pool(t: TenantHandle, n: int = 1, pool_id: int | None = None, **fields: Any) -> list[int]:
    """``n`` new leads straight into a pool (the default one unless named)."""
    pool_id = pool_id or default_pool(t)["id"]
    ids = []
    for i in range(n):
        r = t.post(f"/api/v1/pool/pools/{pool_id}/leads", json={"name": f"Pool lead {i}", "phone": phone(), **fields})
        assert r.status_code == 201, r.get_json()
        ids.append(r.get_json()["id"])
    return ids


def add_rep(t: TenantHandle, who: str, team_id: int | None = None, role: str = "rep") -> int:
    """Another user of ``t`` with an API key, reachable as ``t.call(..., who)`` (made through the API)."""
    r = t.post("/api/v1/users", json={"email": f"{who}-{uuid.uuid4().hex[:6]}@{t.slug}.test", "role": role,
                                      "team_id": t.team_id if team_id is None else team_id})
    assert r.status_code == 201, r.get_json()
    user_id = int(r.get_json()["id"])
    r = t.post("/api/v1/api-keys", json={"user_id": user_id, "name": who})
    assert r.status_code == 201, r.get_json()
    t.users[who], t.keys[who] = user_id, r.get_json()["key"]
    return user_id


def claim(t: TenantHandle, who: str, *lead_ids: int, **kw: Any) -> Any:
    return t.post("/api/v1/pool/claim", who, json={"lead_ids": list(lead_ids), **kw})


def ledger(t: TenantHandle, lead_id: int) -> list[Any]:
    """The lead's ownership ledger, oldest first, as ``GET /api/v1/leads/{id}/history`` shows it."""
    r = t.get(f"/api/v1/leads/{lead_id}/history")
    assert r.status_code == 200, r.get_json()
    return [SimpleNamespace(**i) for i in r.get_json()["items"] if i["type"] == "ownership"]


# The outbox and the ledger have no public reader: what the tests check was written, they read with SQL.


def core_rows(t: TenantHandle, sql: str, **params: Any) -> list[Any]:
    """Rows of ``sql`` (``:t`` is the tenant's id), ``payload`` read as JSON."""
    with t.runtime.sessions() as s:
        return list(s.execute(text(sql).columns(payload=JSON), {"t": t.id, **params}))


def count(t: TenantHandle, table: str, where: str = "true", **params: Any) -> int:
    """How many rows of the core's ``table`` the tenant has (``where``: more conditions)."""
    return int(core_rows(t, f"SELECT count(*) FROM {table} WHERE tenant_id = :t AND {where}", **params)[0][0])


def events(t: TenantHandle, name: str) -> list[Any]:
    """The items of each ``name`` event of the tenant, oldest first."""
    rows = core_rows(t, "SELECT payload FROM core_event WHERE tenant_id = :t AND name = :name ORDER BY id", name=name)
    return [r.payload["items"] for r in rows]


def owner_of(t: TenantHandle, lead_id: int) -> int | None:
    return t.get(f"/api/v1/leads/{lead_id}").get_json()["owner_id"]  # type: ignore[no-any-return]


def held(t: TenantHandle, user_id: int) -> int:
    with t.runtime.tenant_session(t.id) as s:
        return s.scalar(select(func.count()).select_from(Lead).where(Lead.owner_id == user_id)) or 0


def user(t: TenantHandle, user_id: int) -> User:
    with t.runtime.tenant_session(t.id) as s:
        found = s.get(User, user_id)
        assert found is not None
        return found
