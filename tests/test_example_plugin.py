"""The host with the example third-party plugin ``examples/lead_score`` installed like any other.

It is a separate distribution (``pelago-lead-score``) found through its entry
point, so these tests show the contract working for code outside this
repository's ``plugins/``: its entry point and spec, migrations on its own
branch, its routes in the OpenAPI document, its periodic job run by the
scheduler only for tenants that have it on, and generated requests. The
plugin's own behaviour is tested by its own tests, ``examples/lead_score/tests``,
which import only the public surface.
"""

from __future__ import annotations

from sqlalchemy import inspect

from pelago.core import migrate, scheduler
from pelago.core.host import PluginHost
from pelago.core.spec import PluginSpec
from pelago.testing import check_routes
from pelago_lead_score.models import LeadScore
from tests.conftest import new_tenant

PLUGINS = ("lead_score",)
SETTINGS = {
    "source_points": {"referral": 40, "ads": 10},
    "activity_points": 5,
    "kind_points": {"visit": 20},
}


def _on(app, **settings):
    t = new_tenant(app)
    r = t.put("/api/v1/plugins/lead_score", json={"enabled": True, "settings": {**SETTINGS, **settings}})
    assert r.status_code == 200, r.get_json()
    return t


def _stored(t, lead_id):
    with t.runtime.tenant_session(t.id) as s:
        return s.get(LeadScore, lead_id)


# --- packaging and migrations -------------------------------------------------------


def test_it_is_an_installed_entry_point_with_the_standard_shape():
    host = PluginHost(PLUGINS, strict=True)
    spec = host.specs["lead_score"]
    assert isinstance(spec, PluginSpec)
    assert host.installed["lead_score"] == "pelago_lead_score:plugin"
    assert spec.secret_fields() == {"webhook_secret"}
    assert spec.default_enabled is False
    assert [p.name for p in spec.periodic] == ["decay"]
    for hook in ("lead_created", "lead_merged", "activity_logged", "plugin_enabled"):
        assert "lead_score" in host.implementers(hook)


def test_its_branch_created_its_table_and_models_match_migrations(engine):
    tables = set(inspect(engine).get_table_names())
    assert "lead_score_score" in tables
    indexes = {ix["name"] for ix in inspect(engine).get_indexes("lead_score_score")}
    assert {"ix_lead_score_score_top", "ix_lead_score_score_oldest"} <= indexes
    host = PluginHost(PLUGINS, strict=True)
    assert migrate.pending(engine, host) == []
    assert migrate.diff(engine, host) == []


def test_openapi_documents_its_routes(make_app):
    app = make_app(PLUGINS)
    spec = app.test_client().get("/api/openapi.json").get_json()
    assert "/api/v1/lead_score/leads/{lead_id}" in spec["paths"]
    top = spec["paths"]["/api/v1/lead_score/top"]["get"]
    assert {p["name"] for p in top["parameters"]} >= {"limit", "min_score"}
    assert "200" in top["responses"]


# --- the periodic job, run by the scheduler ----------------------------------------


def test_decay_runs_through_the_scheduler_only_for_tenants_with_it_on(make_app, clock):
    app = make_app(PLUGINS)
    on, off = _on(app, window_days=7), new_tenant(app)
    lead = on.lead("13800138130", source="ads")
    on.post(f"/api/v1/leads/{lead['id']}/activities", json={"kind": "visit"})
    assert _stored(on, lead["id"]).score == 30
    off_lead = off.lead("13800138131", source="ads")

    clock.advance(days=8)  # the visit has left the 7-day window
    started = [s for s in scheduler.tick(on.runtime) if s.tenant_id in (on.id, off.id)]
    assert [(s.tenant_id, s.plugin, s.job) for s in started] == [(on.id, "lead_score", "decay")]
    row = _stored(on, lead["id"])
    assert (row.score, row.activities, row.oldest_activity_at) == (10, 0, None)
    assert row.updated_at == clock()
    assert _stored(off, off_lead["id"]) is None
    # Same period: not started again; run by hand, it changes nothing (idempotent).
    assert [s for s in scheduler.tick(on.runtime) if s.tenant_id == on.id] == []
    clock.advance(minutes=1)
    assert scheduler.run_periodic(on.runtime, on.id, "lead_score", "decay") == "done"
    assert _stored(on, lead["id"]).updated_at == row.updated_at


# --- contract: generated input never gets a 5xx and matches the spec ----------------------


def test_generated_requests(make_app):
    app = make_app(PLUGINS)
    t = _on(app)
    ids = [t.lead(f"1380013816{i}", source=src)["id"] for i, src in enumerate(("ads", "referral"))]
    checked = check_routes(app, "/api/v1/lead_score", t.headers("admin"), values={"lead_id": ids}, max_examples=25)
    assert "GET /api/v1/lead_score/leads/{lead_id}" in checked
