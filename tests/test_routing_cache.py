"""The cached routing configuration: read once per version, changed on the next request after any edit.

Every way an admin edits routing (API, command line, a service call) reaches
the next lead of every process sharing the database, with no restart; a
transaction that edits and routes sees its own edit without caching it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
from sqlalchemy import event, select

from pelago.core.db import bump_routing_version, make_engine
from pelago.core.models import RoutingRule, RoutingVersion, Team, User
from pelago.core.services import admin
from pelago.core.services import routing as routing_svc
from pelago.core.services.intake import Submission, ingest
from pelago.hostapp import Settings, create_app

from .test_routing import add_rep, add_team, ledger, routing_on

_n = iter(range(10**6))


def lead(t, **fields) -> dict:
    """A new lead through ``POST /api/v1/leads`` with a fresh phone."""
    return t.lead(f"1391{uuid.uuid4().int % 10**7:07d}", **fields)


def version(t) -> int:
    with t.runtime.sessions() as session:
        return int(session.scalar(select(RoutingVersion.version).where(RoutingVersion.tenant_id == t.id)) or 0)


@pytest.fixture
def statements(tenant) -> Iterator[list[str]]:
    """The SQL of every statement the app's engine runs while the test looks."""
    seen: list[str] = []

    def record(conn, cursor, statement, *args) -> None:
        seen.append(statement)

    engine = tenant.runtime.engine
    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def test_the_configuration_is_read_once_per_version(tenant, statements):
    team, reps = add_team(tenant, "Once", reps=2)
    routing_on(tenant, team)
    lead(tenant)  # reads the configuration of the new version
    statements.clear()
    assert lead(tenant)["owner_id"] in reps
    read = " ".join(statements)
    for table in ("core_routing_settings", "core_routing_rule", "core_user", "core_routing_version"):
        assert f"FROM {table}" not in read, table
    before = version(tenant)
    tenant.patch(f"/api/v1/users/{reps[0]}", json={"on_leave": True})
    assert version(tenant) > before
    statements.clear()
    assert lead(tenant)["owner_id"] == reps[1]
    assert "FROM core_user" in " ".join(statements)  # the new version, read once


def test_api_edits_reach_the_next_request(tenant, clock):
    clock.at = datetime(2026, 3, 2, 4, 0, tzinfo=timezone.utc)  # Monday 12:00 in Shanghai
    t = tenant
    a, a_reps = add_team(t, "A", reps=2)
    b, b_reps = add_team(t, "B", reps=2)
    routing_on(t, a)
    assert lead(t)["team_id"] == a
    # a rule
    r = t.post("/api/v1/routing/rules", json={"name": "ads", "team_id": b, "match": {"source": ["ads"]}})
    assert r.status_code == 201, r.get_json()
    rule = r.get_json()["id"]
    assert lead(t, source="ads")["team_id"] == b
    assert t.patch(f"/api/v1/routing/rules/{rule}", json={"match": {"source": ["web"]}}).status_code == 200
    assert lead(t, source="ads")["team_id"] == a
    assert lead(t, source="web")["team_id"] == b
    assert t.call("DELETE", f"/api/v1/routing/rules/{rule}").status_code == 204
    assert lead(t, source="web")["team_id"] == a
    # leave and schedules
    t.patch(f"/api/v1/users/{a_reps[0]}", json={"on_leave": True})
    assert {lead(t)["owner_id"] for _ in range(3)} == {a_reps[1]}
    t.patch(f"/api/v1/users/{a_reps[1]}", json={"working_hours": {"start": "20:00", "end": "22:00"}})
    got = lead(t)
    assert got["owner_id"] is None
    assert ledger(t, got["id"])["detail"]["excluded"] == {
        str(a_reps[0]): "on leave", str(a_reps[1]): "outside working hours"}
    t.patch(f"/api/v1/users/{a_reps[0]}", json={"on_leave": False})
    assert lead(t)["owner_id"] == a_reps[0]
    # members: one joins, one moves away
    joined = add_rep(t, a, "joiner")
    t.patch(f"/api/v1/users/{a_reps[0]}", json={"team_id": b})
    assert {lead(t)["owner_id"] for _ in range(2)} == {joined}
    # the team itself, then the settings
    assert t.patch(f"/api/v1/teams/{a}", json={"active": False}).status_code == 200
    got = lead(t)
    assert got["team_id"] is None and got["owner_id"] is None
    routing_on(t, b)
    assert lead(t)["team_id"] == b
    t.patch("/api/v1/routing/settings", json={"auto_routing": False})
    assert lead(t)["team_id"] is None


def test_command_line_edits_reach_the_next_request(tenant, pelago_cli):
    t = tenant
    routing_on(t, t.team_id)
    with t.runtime.sessions() as session:
        team_name = session.get(Team, t.team_id).name
        for user in session.scalars(select(User).where(User.team_id == t.team_id)):
            user.on_leave = True  # nobody of the team can take leads (a service-level write)
        session.commit()
    assert lead(t)["owner_id"] is None
    email = f"cli-{uuid.uuid4().hex[:6]}@{t.slug}.test"
    r = pelago_cli("users", "create", "--tenant", t.slug, "--email", email, "--role", "rep", "--team", team_name)
    assert r.exit_code == 0, r.output
    with t.runtime.sessions() as session:
        newcomer = session.scalars(select(User.id).where(User.email == email)).one()
    assert lead(t)["owner_id"] == newcomer


def test_service_layer_edits_reach_the_next_request(tenant):
    t = tenant
    other, others = add_team(t, "Other", reps=1)
    routing_on(t, t.team_id)
    assert lead(t, source="fair")["team_id"] == t.team_id
    with t.runtime.tenant_context(t.id) as ctx:
        routing_svc.save_rule(ctx, {"name": "fair", "team_id": other, "match": {"source": ["fair"]}})
    assert lead(t, source="fair")["owner_id"] == others[0]
    with t.runtime.tenant_context(t.id) as ctx:
        admin.update_user(ctx, admin.get_user(ctx, others[0]), {"active": False})
    got = lead(t, source="fair")
    assert got["team_id"] == other and got["owner_id"] is None


def test_an_edit_and_a_lead_in_one_transaction_see_the_edit_and_cache_nothing(tenant):
    t = tenant
    other, others = add_team(t, "Same", reps=1)
    routing_on(t, t.team_id)
    assert lead(t, source="tx")["team_id"] == t.team_id  # the configuration is cached
    with t.runtime.tenant_context(t.id) as ctx:
        routing_svc.save_rule(ctx, {"name": "tx", "team_id": other, "match": {"source": ["tx"]}})
        out = ingest(ctx, [Submission({"phone": "13912340000", "source": "tx"})])[0]
        assert out.decision is not None and out.decision.owner_id == others[0]
        ctx.session.rollback()  # the rule never existed
    assert lead(t, source="tx")["team_id"] == t.team_id
    with t.runtime.sessions() as session:
        assert session.scalars(select(RoutingRule).where(RoutingRule.tenant_id == t.id)).all() == []


def test_a_raw_sql_edit_is_seen_after_bump_routing_version(tenant):
    t = tenant
    routing_on(t, t.team_id)
    assert lead(t)["owner_id"] is not None
    with t.runtime.sessions() as session:
        session.execute(User.__table__.update().where(User.__table__.c.team_id == t.team_id).values(on_leave=True))
        bump_routing_version(session, [t.id])
        session.commit()
    assert lead(t)["owner_id"] is None


def test_a_second_process_sees_the_edits_of_the_first(tenant, make_runtime, db_url, clock):
    """Two app servers on one database, each with its own engine and caches."""
    t = tenant
    team, reps = add_team(t, "Shared", reps=2)
    routing_on(t, team)
    from pelago.core.runtime import Runtime

    first = make_runtime()
    engine = make_engine(db_url)
    try:
        second = create_app(Settings(database_url=db_url), runtime=Runtime(first.host, engine, clock=clock))
        headers = t.headers()

        def post(n: int) -> dict:
            r = second.test_client().post("/api/v1/leads", headers=headers, json={"phone": f"1393{n:07d}"})
            assert r.status_code == 201, r.get_json()
            return r.get_json()

        base = next(_n) * 100 + uuid.uuid4().int % 10**6 * 10
        assert post(base)["owner_id"] in reps  # the second process caches the configuration
        t.patch(f"/api/v1/users/{reps[0]}", json={"on_leave": True})  # an edit through the first
        assert {post(base + k)["owner_id"] for k in range(1, 4)} == {reps[1]}
        assert t.patch(f"/api/v1/teams/{team}", json={"active": False}).status_code == 200
        assert post(base + 5)["owner_id"] is None
    finally:
        engine.dispose()


def test_tenants_do_not_share_a_cached_configuration(tenant, other_tenant):
    routing_on(tenant, tenant.team_id)
    assert lead(tenant)["team_id"] == tenant.team_id
    assert lead(other_tenant)["team_id"] is None  # routing off there
    routing_on(other_tenant, other_tenant.team_id)
    assert lead(other_tenant)["team_id"] == other_tenant.team_id
    assert lead(tenant)["team_id"] == tenant.team_id


def test_the_created_lead_answered_is_the_lead_stored(tenant, statements):
    """On PostgreSQL the answer comes from the insert's RETURNING: it must be the row as a read gives it."""
    routing_on(tenant, tenant.team_id)
    lead(tenant)
    statements.clear()
    made = lead(tenant, source="web", region="North", attributes={"course": "math"})
    if tenant.runtime.engine.dialect.name == "postgresql":
        assert not [s for s in statements if s.startswith("SELECT core_lead.")]  # not read back
    stored = tenant.get(f"/api/v1/leads/{made['id']}").get_json()
    assert {k: made[k] for k in stored} == stored


def test_the_cached_working_hours_are_read_only(tenant) -> None:
    """Every request and thread shares the cached configuration: a hook cannot change it for the others."""
    from pelago.core.events import snapshot
    from pelago.core.routing_config import routing_config

    t = tenant
    team, reps = add_team(t, "Frozen", reps=1)
    hours = {"days": [1, 2, 3], "start": "09:00", "end": "18:00"}
    assert t.patch(f"/api/v1/users/{reps[0]}", json={"working_hours": hours}).status_code == 200
    with t.runtime.tenant_context(t.id) as ctx:
        (rep,) = routing_config(ctx.session, t.id).candidates(team)
        assert rep.working_hours is not None
        with pytest.raises(TypeError):
            rep.working_hours["start"] = "00:00"  # type: ignore[index]
        assert rep.working_hours["days"] == (1, 2, 3)
        assert snapshot(rep.working_hours) == hours
        again = routing_config(ctx.session, t.id)
        with pytest.raises(TypeError):
            again.members[team] = ()  # type: ignore[index]
    with t.runtime.tenant_context(t.id) as ctx:
        assert dict(routing_config(ctx.session, t.id).candidates(team)[0].working_hours or {})["start"] == "09:00"
