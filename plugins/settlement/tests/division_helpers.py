"""Shared set-up of the division tests: a tenant with two branches, each with its intake team."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from pelago.plugins.settlement.models import Allocation
from pelago.testing import TenantHandle, new_tenant

S = "/api/v1/settlement"


@dataclass
class Setup:
    t: TenantHandle
    shanghai: int
    wuhan: int
    sh_team: int
    wh_team: int


def ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, (r.status_code, r.get_json())
    return r.get_json()


def team(t: TenantHandle, name: str) -> int:
    return ok(t.post("/api/v1/teams", json={"name": name}), 201)["id"]


def two_branches(app: Any, *, sh_tz: str = "Asia/Shanghai", wh_tz: str = "Asia/Shanghai") -> Setup:
    """Settlement on; branches Shanghai and Wuhan, each with an intake team (Shanghai's has the reps)."""
    t = new_tenant(app)
    ok(t.put("/api/v1/plugins/settlement", json={"enabled": True}))
    sh = ok(t.post(f"{S}/branches", json={"name": "Shanghai", "timezone": sh_tz}), 201)["id"]
    wh = ok(t.post(f"{S}/branches", json={"name": "Wuhan", "timezone": wh_tz}), 201)["id"]
    wh_team = team(t, "Wuhan intake")
    ok(t.put(f"{S}/branches/{sh}/teams/{t.team_id}"))
    ok(t.put(f"{S}/branches/{wh}/teams/{wh_team}"))
    return Setup(t, sh, wh, t.team_id, wh_team)


def policy(s: Setup, sh: int = 60, wh: int = 40, *, source: str | None = None, caps: tuple[Any, Any] = (None, None),
           **kw: Any) -> dict[str, Any]:
    return ok(s.t.post(f"{S}/policies", json={"source": source, "entries": [
        {"branch_id": s.shanghai, "team_id": s.sh_team, "weight": sh, "daily_cap": caps[0]},
        {"branch_id": s.wuhan, "team_id": s.wh_team, "weight": wh, "daily_cap": caps[1]},
    ], **kw}), 201)


def log(t: TenantHandle, policy_id: int | None = None) -> list[Allocation]:
    """The tenant's allocations in log order (one policy's, when given)."""
    with t.runtime.sessions() as session:
        stmt = select(Allocation).where(Allocation.tenant_id == t.id)
        if policy_id is not None:
            stmt = stmt.where(Allocation.policy_id == policy_id)
        rows = list(session.scalars(stmt.order_by(Allocation.policy_id, Allocation.seq)))
        session.expunge_all()
        return rows


def within_one(branch_ids: list[int | None], weights: dict[int, int]) -> None:
    """Every prefix of the log is within one lead of the weights (strictly less than one, as SWRR gives)."""
    total = sum(weights.values())
    counts = dict.fromkeys(weights, 0)
    for n, b in enumerate(branch_ids, start=1):
        assert b is not None
        counts[b] += 1
        for k, w in weights.items():
            assert abs(counts[k] - n * w / total) < 1, (n, counts)
