"""Users: a tenant always keeps an active admin, and ``pelago users activate`` lets a locked-out tenant back in."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from pelago.core.models import User
from pelago.hostapp.cli import main
from tests.test_concurrency import run_parallel


def second_admin(t, who: str = "admin2", by: str = "admin") -> int:
    """Another active admin of ``t``, created by ``by``; her key is ``t.keys[who]``."""
    r = t.post("/api/v1/users", by, json={"email": f"{who}@admin.test", "role": "admin"})
    assert r.status_code == 201, r.get_json()
    user_id = r.get_json()["id"]
    t.keys[who] = t.post("/api/v1/api-keys", by, json={"user_id": user_id, "name": who}).get_json()["key"]
    t.users[who] = user_id
    return user_id


def active_admins(t) -> list[int]:
    with t.runtime.sessions() as s:
        return sorted(s.scalars(select(User.id).where(
            User.tenant_id == t.id, User.role == "admin", User.active.is_(True))))


@pytest.mark.parametrize("change", [{"active": False}, {"role": "manager"}, {"role": "rep", "active": False}])
def test_the_last_active_admin_cannot_deactivate_or_demote_herself(tenant, change):
    me = tenant.users["admin"]
    r = tenant.patch(f"/api/v1/users/{me}", json=change)
    assert r.status_code == 409, r.get_json()
    assert "last active admin" in r.get_json()["message"]
    user = tenant.get(f"/api/v1/users/{me}").get_json()  # her key still works: nothing changed
    assert (user["role"], user["active"]) == ("admin", True)


def test_with_another_admin_one_may_go_but_not_both(tenant):
    me = tenant.users["admin"]
    other = second_admin(tenant)
    assert tenant.patch(f"/api/v1/users/{other}", json={"active": False}).status_code == 200
    assert tenant.patch(f"/api/v1/users/{me}", json={"active": False}).status_code == 409
    assert tenant.patch(f"/api/v1/users/{other}", json={"active": True}).status_code == 200
    assert tenant.patch(f"/api/v1/users/{me}", json={"role": "manager"}).status_code == 200
    assert active_admins(tenant) == [other]
    # a user who is not an admin is changed freely
    assert tenant.patch(f"/api/v1/users/{tenant.users['rep']}", json={"active": False}, who="admin2").status_code == 200


@pytest.mark.postgres
def test_two_admins_deactivating_each_other_at_once_leave_one(tenant):
    survivor = "admin"
    for round_ in range(5):
        newcomer = f"admin-{round_}"
        second_admin(tenant, newcomer, by=survivor)
        pair = [(survivor, tenant.users[newcomer]), (newcomer, tenant.users[survivor])]

        def go(i: int, pair: list[tuple[str, int]] = pair) -> Any:
            who, target = pair[i]
            return tenant.patch(f"/api/v1/users/{target}", who, json={"active": False})

        responses = run_parallel(2, go)
        codes = sorted(r.status_code for r in responses)
        assert codes in ([200, 401], [200, 409]), codes  # the loser is refused, or already shut out
        assert len(active_admins(tenant)) == 1
        survivor = pair[[r.status_code for r in responses].index(200)][0]


@pytest.fixture
def cli(db_url, engine, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("PELAGO_PLUGINS", "pool,scheduling,sms_nurture,settlement")
    monkeypatch.delenv("REDIS_URL", raising=False)
    return lambda *args: CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_cli_activates_a_locked_out_admin(cli, tenant):
    me = tenant.users["admin"]
    with tenant.runtime.sessions() as s:  # a tenant that lost its admins (set up by hand, or from before)
        s.get(User, me).active = False
        s.commit()
    assert tenant.get("/api/v1/leads").status_code == 401
    r = cli("users", "activate", f"admin@{tenant.slug}.test", "--tenant", tenant.slug)
    assert r.exit_code == 0 and "is active" in r.output, r.output
    assert tenant.get("/api/v1/leads").status_code == 200
    r = cli("users", "activate", f"rep@{tenant.slug}.test", "--tenant", tenant.slug, "--role", "admin")
    assert r.exit_code == 0 and "(admin)" in r.output, r.output
    assert active_admins(tenant) == sorted([me, tenant.users["rep"]])
    assert cli("users", "activate", "nobody@x.test", "--tenant", tenant.slug).exit_code != 0
    assert cli("users", "activate", f"rep@{tenant.slug}.test", "--tenant", "no-such-tenant").exit_code != 0
    # the last active admin cannot be demoted from the shell either
    cli("users", "activate", f"rep@{tenant.slug}.test", "--tenant", tenant.slug, "--role", "rep")
    r = cli("users", "activate", f"admin@{tenant.slug}.test", "--tenant", tenant.slug, "--role", "rep")
    assert r.exit_code != 0 and "last active admin" in r.output
