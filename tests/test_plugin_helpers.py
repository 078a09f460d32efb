"""The small helpers of ``pelago.plugin``: ``upsert``, ``among``, ``split_money``, tenant lookup, the default team."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from pelago.plugin import NotFound, among, default_intake_team, find_tenant, split_money, tenant_context, upsert
from pelago_lead_score.models import LeadScore


def test_upsert_inserts_then_updates_then_ignores(make_app, clock):
    app = make_app(("lead_score",))
    from pelago.testing import new_tenant

    t = new_tenant(app)
    lead = t.lead("13800138401")["id"]
    other = t.lead("13800138402")["id"]
    now = clock()
    row = {"tenant_id": t.id, "lead_id": lead, "score": 5, "activities": 0, "updated_at": now}
    with tenant_context(t.runtime, t.id) as ctx:
        assert upsert(ctx.session, LeadScore, [row, {**row, "lead_id": other}], key=["tenant_id", "lead_id"]) == 2
        assert upsert(ctx.session, LeadScore, [{**row, "score": 9}], key=["tenant_id", "lead_id"]) == 1
        assert upsert(ctx.session, LeadScore, [{**row, "score": 1}], key=["tenant_id", "lead_id"], update=[]) == 0
        scores = dict(ctx.session.execute(select(LeadScore.lead_id, LeadScore.score)).all())
        assert scores == {lead: 9, other: 5}
        only = ctx.session.scalars(select(LeadScore.lead_id).where(among(ctx.session, LeadScore.lead_id, [other])))
        assert list(only) == [other]


def test_find_tenant_by_slug_and_tenant_context_by_slug(app):
    from pelago.testing import new_tenant

    t = new_tenant(app)
    rt = app.extensions["pelago"]
    assert find_tenant(rt, t.slug) == t.id
    with tenant_context(rt, t.slug) as ctx:
        assert ctx.tenant.id == t.id
    with pytest.raises(NotFound):
        find_tenant(rt, "no-such-tenant")


def test_split_money_parts_add_up_and_follow_the_weights():
    assert split_money("100.00", [1, 1, 1]) == [Decimal("33.34"), Decimal("33.33"), Decimal("33.33")]
    assert split_money("10.01", [60, 40]) == [Decimal("6.01"), Decimal("4.00")]
    assert split_money("-0.05", [60, 40]) == [Decimal("-0.03"), Decimal("-0.02")]
    rnd = random.Random(7)
    for _ in range(2000):
        total = Decimal(rnd.randint(-10**8, 10**8)) / 100
        weights = [rnd.randint(0, 50) for _ in range(rnd.randint(1, 6))]
        if not any(weights):
            weights[0] = 1
        parts = split_money(total, weights)
        assert sum(parts) == total
        exact = [total * w / sum(weights) for w in weights]
        assert all(abs(p - e) < Decimal("0.01") for p, e in zip(parts, exact, strict=True))
    with pytest.raises(ValueError):
        split_money("1", [0, 0])
    with pytest.raises(ValueError):
        split_money("1", [-1, 2])


def test_upsert_never_takes_over_another_tenants_row(make_app, clock):
    from pelago.testing import new_tenant

    app = make_app(("lead_score",))
    a, b = new_tenant(app), new_tenant(app)
    theirs = b.lead("13800138411")["id"]
    row = {"lead_id": theirs, "score": 3, "activities": 0, "updated_at": clock()}
    with tenant_context(b.runtime, b.id) as ctx:
        assert upsert(ctx.session, LeadScore, [row], key=["tenant_id", "lead_id"]) == 1  # tenant_id filled in
    with tenant_context(a.runtime, a.id) as ctx:
        try:
            with ctx.session.begin_nested():
                written = upsert(ctx.session, LeadScore, [{**row, "score": 99}], key=["tenant_id", "lead_id"])
        except IntegrityError:  # PostgreSQL: A's row cannot name B's lead (the key goes through the tenant)
            written = 0
        assert written == 0  # SQLite: the conflict is on B's row, which is not A's to update
        with pytest.raises(ValueError):
            upsert(ctx.session, LeadScore, [{**row, "tenant_id": b.id}], key=["tenant_id", "lead_id"])
    with tenant_context(b.runtime, b.id) as ctx:
        assert ctx.session.scalar(select(LeadScore.score).where(LeadScore.lead_id == theirs)) == 3


def test_default_intake_team_is_the_tenants_routing_setting(app):
    from pelago.testing import new_tenant

    t, other = new_tenant(app), new_tenant(app)
    with tenant_context(t.runtime, t.id) as ctx:
        assert default_intake_team(ctx) is None  # no routing settings yet
    assert t.patch("/api/v1/routing/settings", json={"default_team_id": t.team_id}).status_code == 200
    with tenant_context(t.runtime, t.id) as ctx:
        assert default_intake_team(ctx) == t.team_id
    with tenant_context(other.runtime, other.id) as ctx:
        assert default_intake_team(ctx) is None


def test_file_response_answers_a_file_not_json(app):
    from pelago.plugin import file_response

    with app.test_request_context():
        r = file_response("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", "text/calendar", 'feed "1"/../x.ics', max_age=300)
        assert r.status_code == 200 and r.content_type == "text/calendar; charset=utf-8"
        assert r.headers["Content-Disposition"] == 'attachment; filename="feed1..x.ics"'  # no quotes, no slashes
        assert r.headers["Cache-Control"] == "private, max-age=300"
        raw = file_response(b"a,b\n", "text/csv")
        assert raw.get_data() == b"a,b\n" and "Content-Disposition" not in raw.headers
        assert raw.headers["Cache-Control"] == "no-store"
        # bom: the UTF-8 byte order mark spreadsheet programs need for a CSV's Chinese text (once)
        sheet = file_response("姓名,手机\r\n", "text/csv", "leads.csv", bom=True)
        assert sheet.get_data() == "\ufeff姓名,手机\r\n".encode() and sheet.content_type == "text/csv; charset=utf-8"
        assert file_response("\ufeffa\r\n", "text/csv", bom=True).get_data() == "\ufeffa\r\n".encode()


def test_a_public_plugin_route_is_gated_by_the_plugin_switch_once_it_enters_the_tenant(app, tenant):
    """The scheduling feed: no API key needed, and a tenant with the plugin off answers 404 (enter_tenant(plugin=))."""
    tenant.put("/api/v1/plugins/scheduling", json={"enabled": True})
    c = tenant.post("/api/v1/scheduling/campuses", json={"name": "Main"}).get_json()
    assert c["id"]
    tenant.post("/api/v1/scheduling/teachers", json={"user_id": tenant.users["rep"]})
    feed = tenant.post(f"/api/v1/scheduling/teachers/{tenant.users['rep']}/feed").get_json()
    anonymous = tenant.client()
    assert anonymous.get(feed["path"]).status_code == 200
    tenant.put("/api/v1/plugins/scheduling", json={"enabled": False})
    r = anonymous.get(feed["path"])
    assert r.status_code == 404 and "scheduling" in r.get_json()["message"]
