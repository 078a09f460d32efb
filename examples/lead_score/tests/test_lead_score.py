"""The lead_score plugin's own tests: scoring, settings, routes, tenancy and its jobs.

They import only the public surface (``pelago.plugin``), the plugin itself and
the test kit, as a third-party plugin's tests would. How the host loads the
installed distribution (entry point, migration branch, OpenAPI, scheduler,
generated requests) is tested in the project's ``tests/test_example_plugin.py``.
"""

from __future__ import annotations

import threading
from types import MappingProxyType

import pytest
from sqlalchemy import select

from pelago.plugin import Activity, Event, Lead, tenant_context
from pelago.testing import new_tenant
from pelago_lead_score import hooks, jobs
from pelago_lead_score.models import LeadScore

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


def _decay(t):
    """Run the daily job for ``t`` now (the scheduler's part is tested with the host)."""
    with tenant_context(t.runtime, t.id) as ctx:
        return jobs.decay(ctx)


# --- events and per-tenant switching -----------------------------------------------


def test_scores_leads_only_for_the_tenant_that_has_it_on(make_app):
    app = make_app(PLUGINS)
    a, b = _on(app), new_tenant(app)
    lead = a.lead("13800138101", source="referral")
    r = a.get(f"/api/v1/lead_score/leads/{lead['id']}")
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["score"] == 40 and r.get_json()["activities"] == 0
    assert r.get_json()["hot"] is False

    other = b.lead("13800138101", source="referral")
    assert _stored(b, other["id"]) is None  # its hooks are not called for b
    r = b.get(f"/api/v1/lead_score/leads/{other['id']}")
    assert r.status_code == 404
    assert "lead_score" in r.get_json()["message"]
    assert b.get("/api/v1/lead_score/top").status_code == 404


def test_activities_add_points_by_kind(make_app):
    app = make_app(PLUGINS)
    t = _on(app, hot_threshold=60)
    lead = t.lead("13800138102", source="ads")
    for kind in ("call", "visit", "visit"):
        r = t.post(f"/api/v1/leads/{lead['id']}/activities", json={"kind": kind})
        assert r.status_code == 201
    body = t.get(f"/api/v1/lead_score/leads/{lead['id']}").get_json()
    assert body["score"] == 10 + 5 + 20 + 20 and body["activities"] == 3 and body["hot"] is False
    t.post(f"/api/v1/leads/{lead['id']}/activities", json={"kind": "call"})
    assert t.get(f"/api/v1/lead_score/leads/{lead['id']}").get_json() | {"updated_at": None} == {
        "lead_id": lead["id"], "score": 60, "hot": True, "activities": 4, "updated_at": None,
    }


def test_a_merge_that_fills_in_the_source_rescores(make_app):
    app = make_app(PLUGINS)
    t = _on(app)
    lead = t.lead("13800138106")
    assert t.get(f"/api/v1/lead_score/leads/{lead['id']}").get_json()["score"] == 0
    again = t.lead("13800138106", source="referral")
    assert again["merged"] is True and again["id"] == lead["id"]
    assert t.get(f"/api/v1/lead_score/leads/{lead['id']}").get_json()["score"] == 40


def test_enabling_scores_the_leads_that_came_before(make_app, monkeypatch):
    monkeypatch.setattr(jobs, "BATCH", 2)  # walk several keyset batches
    app = make_app(PLUGINS)
    t, other = new_tenant(app), new_tenant(app)
    early = [t.lead(f"1380013810{i}", source=src)["id"] for i, src in enumerate(("referral", "ads", None, "x", "ads"))]
    stranger = other.lead("13800138109", source="referral")["id"]
    assert [_stored(t, i) for i in early] == [None] * 5
    t.put("/api/v1/plugins/lead_score", json={"enabled": True, "settings": SETTINGS})
    assert [t.get(f"/api/v1/lead_score/leads/{i}").get_json()["score"] for i in early] == [40, 10, 0, 0, 10]
    assert _stored(other, stranger) is None  # only the tenant that switched it on


def test_new_point_rules_rescore_every_lead(make_app):
    app = make_app(PLUGINS)
    t = _on(app)
    lead = t.lead("13800138190", source="referral")
    assert _stored(t, lead["id"]).score == 40
    r = t.put("/api/v1/plugins/lead_score", json={"settings": {"source_points": {"referral": 7}}})
    assert r.status_code == 200
    assert _stored(t, lead["id"]).score == 7


def test_the_handler_is_idempotent(make_app, clock):
    app = make_app(PLUGINS)
    t = _on(app)
    lead = t.lead("13800138104", source="referral")
    t.post(f"/api/v1/leads/{lead['id']}/activities", json={"kind": "visit"})
    before = _stored(t, lead["id"])
    assert before.score == 60

    clock.advance(minutes=5)
    event = Event(
        id=1, name="lead_created", tenant_id=t.id, created_at=clock(), actor_id=None,
        items=(MappingProxyType({"lead_id": lead["id"], "source": "referral"}),) * 2,
    )
    with tenant_context(t.runtime, t.id) as ctx:
        for _ in range(2):  # at-least-once: the same event delivered twice
            hooks.lead_created(ctx=ctx, event=event)
            hooks.activity_logged(ctx=ctx, event=event)
    after = _stored(t, lead["id"])
    assert (after.score, after.activities) == (60, 1)
    assert after.updated_at == before.updated_at  # nothing changed, nothing rewritten


# --- settings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"activity_points": 5000}, "activity_points"),
        ({"activity_points": "five"}, "activity_points"),
        ({"source_points": {"ads": 1001}}, "source_points"),
        ({"kind_points": {"fax": 3}}, "kind_points"),
        ({"window_days": 0}, "window_days"),
        ({"no_such_setting": 1}, "no_such_setting"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(make_app, settings, field):
    app = make_app(PLUGINS)
    t = new_tenant(app)
    r = t.put("/api/v1/plugins/lead_score", json={"enabled": True, "settings": settings})
    assert r.status_code == 422
    assert field in r.get_json()["errors"]["json"]["settings"]
    assert t.get("/api/v1/plugins/lead_score").get_json()["enabled"] is False  # nothing written


def test_the_secret_setting_is_masked_and_kept(make_app):
    app = make_app(PLUGINS)
    t = _on(app, webhook_secret="s3cret")
    listed = {p["name"]: p for p in t.get("/api/v1/plugins").get_json()["items"]}
    shown = listed["lead_score"]["settings"]
    assert shown["webhook_secret"] == "********"
    assert shown["source_points"] == SETTINGS["source_points"] and shown["window_days"] == 30
    # The client sends back what it was shown, with one change: the secret stays.
    r = t.put("/api/v1/plugins/lead_score", json={"settings": {**shown, "activity_points": 7}})
    assert r.status_code == 200 and r.get_json()["settings"]["webhook_secret"] == "********"
    with tenant_context(t.runtime, t.slug) as ctx:  # what the plugin's code sees
        stored = ctx.settings("lead_score")
        assert stored["webhook_secret"] == "s3cret" and stored["activity_points"] == 7


# --- routes and tenancy ------------------------------------------------------------


def test_another_tenants_lead_is_404(make_app):
    app = make_app(PLUGINS)
    a, b = _on(app), _on(app)
    lead = a.lead("13800138105", source="referral")
    assert a.get(f"/api/v1/lead_score/leads/{lead['id']}").status_code == 200
    r = b.get(f"/api/v1/lead_score/leads/{lead['id']}")
    assert r.status_code == 404
    assert f"no score for lead {lead['id']}" in r.get_json()["message"]
    assert lead["id"] not in [i["lead_id"] for i in b.get("/api/v1/lead_score/top").get_json()["items"]]
    for unknown in (999_999_999, 2**63, 10**30):  # past BIGINT: still a 404, never a 500
        assert a.get(f"/api/v1/lead_score/leads/{unknown}").status_code == 404


def test_top_lists_the_best_first_with_a_capped_limit(make_app):
    app = make_app(PLUGINS)
    t = _on(app, source_points={"referral": 40, "ads": 10, "fair": 25})
    ids = {src: t.lead(f"1380013811{i}", source=src)["id"] for i, src in enumerate(("ads", "referral", "fair"))}
    items = t.get("/api/v1/lead_score/top").get_json()["items"]
    assert [(i["lead_id"], i["score"]) for i in items] == [
        (ids["referral"], 40), (ids["fair"], 25), (ids["ads"], 10)
    ]
    assert [i["lead_id"] for i in t.get("/api/v1/lead_score/top?limit=2").get_json()["items"]] == [
        ids["referral"], ids["fair"]
    ]
    assert [i["lead_id"] for i in t.get("/api/v1/lead_score/top?min_score=20").get_json()["items"]] == [
        ids["referral"], ids["fair"]
    ]
    for bad in ("0", "201", "x"):
        r = t.get(f"/api/v1/lead_score/top?limit={bad}")
        assert r.status_code == 422 and "limit" in r.get_json()["errors"]["query"]
    r = t.get(f"/api/v1/lead_score/top?min_score={2**31}")  # past the column's range: 422, not 500
    assert r.status_code == 422 and "min_score" in r.get_json()["errors"]["query"]


def test_reps_see_only_their_own_leads_scores(make_app):
    app = make_app(PLUGINS)
    t = _on(app)
    mine = t.lead("13800138120", who="rep", source="referral")
    theirs = t.lead("13800138121", who="rep2", source="referral")
    assert t.get(f"/api/v1/lead_score/leads/{mine['id']}", who="rep").status_code == 200
    assert t.get(f"/api/v1/lead_score/leads/{theirs['id']}", who="rep").status_code == 404
    assert [i["lead_id"] for i in t.get("/api/v1/lead_score/top", who="rep").get_json()["items"]] == [mine["id"]]
    assert len(t.get("/api/v1/lead_score/top", who="manager").get_json()["items"]) == 2


# --- the daily job -------------------------------------------------------------------


def test_decay_drops_activities_that_left_the_window_and_is_idempotent(make_app, clock):
    app = make_app(PLUGINS)
    t = _on(app, window_days=7)
    lead = t.lead("13800138130", source="ads")
    t.post(f"/api/v1/leads/{lead['id']}/activities", json={"kind": "visit"})
    assert _stored(t, lead["id"]).score == 30

    clock.advance(days=8)  # the visit has left the 7-day window
    assert _decay(t) == 1
    row = _stored(t, lead["id"])
    assert (row.score, row.activities, row.oldest_activity_at) == (10, 0, None)
    assert row.updated_at == clock()
    clock.advance(minutes=1)
    assert _decay(t) == 0  # nothing left to change
    assert _stored(t, lead["id"]).updated_at == row.updated_at


def test_decay_also_catches_up_leads_whose_event_was_missed(make_app, clock):
    app = make_app(PLUGINS)
    t = _on(app)
    lead = t.lead("13800138140", source="referral")
    # A score lost (say a delivery that failed for good): the lead was active today.
    with t.runtime.tenant_session(t.id) as s:
        s.delete(s.get(LeadScore, lead["id"]))
        lead_row = s.scalars(select(Lead).where(Lead.id == lead["id"])).one()
        lead_row.last_activity_at = clock()
        s.commit()
    assert _decay(t) == 1
    assert _stored(t, lead["id"]).score == 40


@pytest.mark.postgres
def test_a_rescoring_that_races_a_change_waits_and_sees_it(make_app, clock):
    app = make_app(PLUGINS)
    t = _on(app)
    lead = t.lead("13800138150", source="ads")
    rt = t.runtime
    # Another transaction holds the lead (as a concurrent rescoring would) and adds a visit.
    blocker = rt.tenant_session(t.id)
    blocker.execute(select(Lead.id).where(Lead.id == lead["id"]).with_for_update(key_share=True))
    blocker.add(Activity(lead_id=lead["id"], kind="visit", note="", occurred_at=clock(), created_at=clock()))
    blocker.flush()

    def rescore() -> None:
        with tenant_context(rt, t.id) as ctx:
            jobs.rescore(ctx, [lead["id"]])

    worker = threading.Thread(target=rescore)
    worker.start()
    worker.join(0.5)
    assert worker.is_alive()  # waiting for the lead's lock, not scoring a stale snapshot
    blocker.commit()
    blocker.close()
    worker.join(10)
    assert not worker.is_alive()
    assert _stored(t, lead["id"]).score == 10 + 20


def test_a_privacy_export_carries_the_persons_scores(make_app):
    t = _on(make_app(PLUGINS))
    lead = t.lead("13800138950", source="referral")
    t.lead("13800138951", source="ads")
    r = t.post("/api/v1/privacy/exports", json={"phone": "13800138950"})
    assert r.status_code == 200, r.get_json()
    [score] = r.get_json()["plugins"]["lead_score"]["scores"]
    assert (score["lead_id"], score["score"], score["activities"]) == (lead["id"], 40, 0)
