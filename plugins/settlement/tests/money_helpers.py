"""Shared set-up of the money side's tests: a tenant with settlement on, branches, deals, refunds."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select

from pelago.plugins.settlement.models import Entry, Period
from pelago.testing import TenantHandle, new_tenant

S = "/api/v1/settlement"


def on(app, **settings) -> TenantHandle:
    t = new_tenant(app)
    r = t.put("/api/v1/plugins/settlement", json={"enabled": True, "settings": {"division": False, **settings}})
    assert r.status_code == 200, r.get_json()
    return t


def branch(t: TenantHandle, name: str = "Shanghai", tz: str = "Asia/Shanghai", team_id: int | None = None) -> int:
    r = t.post(f"{S}/branches", json={"name": name, "timezone": tz})
    assert r.status_code == 201, r.get_json()
    b = r.get_json()["id"]
    if team_id is not None:
        assert t.put(f"{S}/branches/{b}/teams/{team_id}").status_code == 200
    return b


def team(t: TenantHandle, name: str) -> int:
    r = t.post("/api/v1/teams", json={"name": name})
    assert r.status_code == 201, r.get_json()
    return r.get_json()["id"]


def move_user(t: TenantHandle, user_id: int, team_id: int) -> None:
    r = t.patch(f"/api/v1/users/{user_id}", json={"team_id": team_id})
    assert r.status_code == 200, r.get_json()


def give(t: TenantHandle, lead_id: int, user_id: int) -> None:
    r = t.post(f"/api/v1/leads/{lead_id}/assign", json={"user_id": user_id})
    assert r.status_code == 200, r.get_json()


def won(t: TenantHandle, lead_id: int, amount: str, **kw) -> dict:
    r = t.post(f"/api/v1/leads/{lead_id}/deals", json={"amount": amount, **kw})
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def refund(t: TenantHandle, deal_id: int, amount: str) -> dict:
    r = t.post(f"/api/v1/deals/{deal_id}/refunds", json={"amount": amount, "reason": "changed mind"})
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def entries(t: TenantHandle, **where) -> list[Entry]:
    with t.runtime.sessions() as s:
        stmt = select(Entry).where(Entry.tenant_id == t.id)
        for k, v in where.items():
            stmt = stmt.where(getattr(Entry, k) == v)
        rows = s.scalars(stmt.order_by(Entry.id)).all()
        s.expunge_all()
        return list(rows)


def total(rows, kind: str = "credit") -> Decimal:
    return sum((e.amount for e in rows if e.kind == kind), Decimal("0.00"))


def count(t: TenantHandle, model) -> int:
    with t.runtime.sessions() as s:
        return s.scalar(select(func.count()).select_from(model).where(model.tenant_id == t.id))


def period(t: TenantHandle, branch_id: int, key: str) -> Period | None:
    with t.runtime.sessions() as s:
        row = s.scalar(select(Period).where(Period.tenant_id == t.id, Period.branch_id == branch_id, Period.key == key))
        s.expunge_all()
        return row


def plan(t: TenantHandle, branch_id: int, tiers: list[dict], *, role: str = "rep", mode: str = "marginal",
         scope: str = "deal", base: str = "net", effective_from: str = "2026-01-01T00:00:00+08:00") -> dict:
    r = t.post(f"{S}/plans", json={"branch_id": branch_id, "role": role, "mode": mode, "scope": scope, "base": base,
                                   "tiers": tiers, "effective_from": effective_from})
    assert r.status_code == 201, r.get_json()
    return r.get_json()


FLAT_10 = [{"up_to": None, "rate": "0.10"}]


def owned(t: TenantHandle, phone: str, who: str = "rep", **fields) -> dict:
    """A new lead, assigned to ``who`` (a user name of the tenant, or a user id)."""
    lead = t.lead(phone, **fields)
    user_id = who if isinstance(who, int) else t.users[who]
    give(t, lead["id"], user_id)
    return {**lead, "owner_id": user_id}
