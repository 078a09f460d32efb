"""Fair division: the policy's split, the log, the explanation, preview, per-source, caps, fallbacks, switching."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from pelago.plugins.settlement import division
from pelago.plugins.settlement.models import Allocation, DivisionState, Policy
from pelago.testing import new_tenant

from .division_helpers import S, log, ok, policy, two_branches, within_one


def test_3_to_2_walk_is_nginx_smooth_weighted_round_robin():
    plan = division.Plan(1, "", 1, [
        division.Share(1, "Shanghai", 10, 3, None, "Asia/Shanghai", True),
        division.Share(2, "Wuhan", 20, 2, None, "Asia/Shanghai", True),
    ])
    current: dict[int, int] = {}
    walk = []
    for _ in range(5):
        pick = division.step(plan, current, {})
        walk.append((pick.share.name, dict(current)))
    # each step adds (3, 2), the larger takes the lead and gives back 5: after 5 leads the state is back at 0
    assert walk == [
        ("Shanghai", {1: -2, 2: 2}),   # (3, 2)
        ("Wuhan", {1: 1, 2: -1}),      # (1, 4)
        ("Shanghai", {1: -1, 2: 1}),   # (4, 1)
        ("Wuhan", {1: 2, 2: -2}),      # (2, 3)
        ("Shanghai", {1: 0, 2: 0}),    # (5, 0)
    ]
    tie = division.Plan(1, "", 1, [plan.shares[0], division.Share(2, "Wuhan", 20, 3, None, "Asia/Shanghai", True)])
    assert [division.step(tie, {}, {}).share.name for _ in range(1)] == ["Shanghai"]  # a tie: the lower branch id


def test_leads_are_divided_60_40_with_the_allocation_in_the_explanation(app):
    s = two_branches(app)
    p = policy(s)
    assert p["version"] == 1 and p["source"] is None and [e["weight"] for e in p["entries"]] == [60, 40]
    leads = [s.t.lead(f"1380013{i:04d}", source="web") for i in range(100)]
    teams = [lead["team_id"] for lead in leads]
    assert teams.count(s.sh_team) == 60 and teams.count(s.wh_team) == 40
    rows = log(s.t, p["id"])
    assert [r.seq for r in rows] == list(range(1, 101))
    assert [r.lead_id for r in rows] == [lead["id"] for lead in leads]  # written with LeadInfo.new_id
    within_one([r.branch_id for r in rows], {s.shanghai: 60, s.wuhan: 40})
    first = leads[0]
    assert first["owner_id"] in {s.t.users["rep"], s.t.users["rep2"], s.t.users["manager"]}  # the team's strategy
    history = ok(s.t.get(f"/api/v1/leads/{first['id']}/history"))["items"]
    team = next(h for h in history if h["type"] == "ownership")["detail"]["team"]
    assert team["rule"] == "settlement" and team["team_id"] == s.sh_team
    assert team["settlement"] == {"policy_id": p["id"], "version": 1, "seq": 1, "branch_id": s.shanghai}
    assert team["reason"] == "Shanghai by default policy v1: weighted round robin"
    listed = ok(s.t.get(f"{S}/allocations", query_string={"lead_id": first["id"]}))["items"]
    assert [(a["branch_id"], a["seq"], a["version"]) for a in listed] == [(s.shanghai, 1, 1)]
    assert ok(s.t.get(f"{S}/policies/{p['id']}"))["allocated"] == 100


def test_routing_preview_shows_the_allocation_and_consumes_nothing(app):
    s = two_branches(app)
    p = policy(s, 3, 2)
    ahead = ok(s.t.get(f"{S}/policies/{p['id']}/preview", query_string={"n": 5}))["items"]
    assert [a["branch"] for a in ahead] == ["Shanghai", "Wuhan", "Shanghai", "Wuhan", "Shanghai"]
    for _ in range(3):
        r = ok(s.t.post("/api/v1/routing/preview", json={"phone": "13800139999", "source": "web"}))
        assert r["team_id"] == s.sh_team
        assert r["explanation"]["team"]["settlement"]["seq"] == 1
    assert log(s.t) == []
    with s.t.runtime.sessions() as session:
        state = session.scalar(select(DivisionState).where(DivisionState.policy_id == p["id"]))
        assert (state.seq, state.current) == (0, {})
    assert ok(s.t.get(f"{S}/policies/{p['id']}/preview", query_string={"n": 5}))["items"] == ahead
    got = [s.t.lead(f"1390013{i:04d}")["team_id"] for i in range(5)]
    assert got == [s.sh_team, s.wh_team, s.sh_team, s.wh_team, s.sh_team]


def test_a_source_policy_and_the_default_policy_keep_their_own_logs(app):
    s = two_branches(app)
    default = policy(s, 60, 40)
    douyin = policy(s, 1, 3, source="douyin")
    teams = {src: [s.t.lead(f"13{n}0013{i:04d}", source=src)["team_id"] for i in range(8)]
             for n, src in ((7, "douyin"), (8, "web"))}
    assert teams["douyin"].count(s.wh_team) == 6 and teams["douyin"].count(s.sh_team) == 2
    assert teams["web"] == [s.sh_team, s.wh_team, s.sh_team, s.wh_team, s.sh_team, s.sh_team, s.wh_team, s.sh_team]
    assert len(log(s.t, douyin["id"])) == 8 and len(log(s.t, default["id"])) == 8
    by_source = ok(s.t.get(f"{S}/policies", query_string={"source": "douyin"}))["items"]
    assert [x["id"] for x in by_source] == [douyin["id"]]
    assert [x["id"] for x in ok(s.t.get(f"{S}/policies", query_string={"source": ""}))["items"]] == [default["id"]]


def test_a_lead_with_no_policy_is_left_to_routing(app):
    s = two_branches(app)
    policy(s, source="douyin")
    lead = s.t.lead("13800138000", source="web")
    assert lead["team_id"] is None and log(s.t) == []


def test_new_versions_are_effective_dated_and_reset_the_round_robin(app, clock):
    s = two_branches(app)
    v1 = policy(s, 1, 1)
    assert [s.t.lead(f"1380013800{i}")["team_id"] for i in range(3)] == [s.sh_team, s.wh_team, s.sh_team]
    later = (clock() + timedelta(hours=1)).isoformat()
    v2 = policy(s, 1, 2, effective_from=later)
    assert v2["version"] == 2
    assert ok(s.t.get(f"{S}/policies/{v1['id']}"))["effective_to"] == v2["effective_from"]
    assert s.t.lead("13800138003")["team_id"] == s.wh_team  # v1 goes on until v2 takes effect
    clock.advance(hours=1)
    got = [s.t.lead(f"1380013801{i}")["team_id"] for i in range(3)]
    assert got == [s.wh_team, s.sh_team, s.wh_team]  # v2's own round robin, from the start
    assert [r.seq for r in log(s.t, v2["id"])] == [1, 2, 3] and len(log(s.t, v1["id"])) == 4
    assert [x["version"] for x in ok(s.t.get(f"{S}/policies"))["items"]] == [2, 1]


def test_switched_off_routing_ignores_the_policy(app):
    s = two_branches(app)
    policy(s)
    ok(s.t.put("/api/v1/plugins/settlement", json={"enabled": False}))
    lead = s.t.lead("13800138000")
    assert lead["team_id"] is None and log(s.t) == []
    ok(s.t.put("/api/v1/plugins/settlement", json={"enabled": True, "settings": {"division": False}}))
    assert s.t.lead("13800138001")["team_id"] is None and log(s.t) == []
    ok(s.t.put("/api/v1/plugins/settlement", json={"enabled": True, "settings": {"division": True}}))
    assert s.t.lead("13800138002")["team_id"] == s.sh_team


def test_bad_policies_are_a_422_and_write_nothing(app, clock):
    s = two_branches(app)
    other = new_tenant(app)
    ok(other.put("/api/v1/plugins/settlement", json={"enabled": True}))
    theirs = ok(other.post(f"{S}/branches", json={"name": "X", "timezone": "Asia/Shanghai"}), 201)["id"]

    def entries(**change):
        base = [{"branch_id": s.shanghai, "team_id": s.sh_team, "weight": 60},
                {"branch_id": s.wuhan, "team_id": s.wh_team, "weight": 40}]
        base[0].update(change)
        return base

    bad = [
        ({"entries": entries(weight=0)}, "entries"),
        ({"entries": entries(weight=-5)}, "entries"),
        ({"entries": entries(weight=1.5)}, "entries"),
        ({"entries": entries(weight="60")}, "entries"),
        ({"entries": entries(daily_cap=0)}, "entries"),
        ({"entries": entries(daily_cap=2.5)}, "entries"),
        ({"entries": entries(branch_id=theirs)}, "entries"),
        ({"entries": entries(branch_id=999999)}, "entries"),
        ({"entries": entries(team_id=s.wh_team)}, "entries"),
        ({"entries": entries(branch_id=s.wuhan, team_id=s.wh_team)}, "entries"),
        ({"entries": []}, "entries"),
        ({}, "entries"),
        ({"entries": entries(), "source": ""}, "source"),
        ({"entries": entries(), "effective_from": "2020-01-01T00:00:00Z"}, "effective_from"),
        ({"entries": entries(), "effective_from": "2030-01-01T00:00:00"}, "effective_from"),
        ({"entries": entries(), "weights": {"a": 1}}, "weights"),
    ]
    for body, field in bad:
        r = s.t.post(f"{S}/policies", json=body)
        assert r.status_code == 422, (body, r.get_json())
        assert field in r.get_json()["errors"]["json"], (body, r.get_json())
    future = "2030-01-01T00:00:00Z"
    policy(s, effective_from=future)
    for when in (future, "2029-12-31T00:00:00Z"):  # the same start, or before it: overlap
        r = s.t.post(f"{S}/policies", json={"entries": entries(), "effective_from": when})
        assert r.status_code == 422 and "effective_from" in r.get_json()["errors"]["json"], r.get_json()
    with s.t.runtime.sessions() as session:
        assert len(session.scalars(select(Policy).where(Policy.tenant_id == s.t.id)).all()) == 1
        assert session.scalars(select(Allocation).where(Allocation.tenant_id == s.t.id)).all() == []


def test_policies_and_allocations_of_another_tenant_are_404(app):
    s = two_branches(app)
    p = policy(s)
    s.t.lead("13800138000")
    other = two_branches(app)
    assert other.t.get(f"{S}/policies/{p['id']}").status_code == 404
    assert other.t.get(f"{S}/policies/{p['id']}/preview").status_code == 404
    assert ok(other.t.get(f"{S}/allocations", query_string={"policy_id": p["id"]}))["items"] == []
    assert ok(other.t.get(f"{S}/policies"))["items"] == []


def test_any_weights_every_window_of_the_total_is_exact_and_every_prefix_within_one():
    import random
    from collections import Counter

    rnd = random.Random(7)
    for _ in range(200):
        weights = [rnd.randint(1, 60) for _ in range(rnd.randint(2, 6))]
        plan = division.Plan(1, "", 1, [
            division.Share(i + 1, f"b{i}", i, w, None, "UTC", True) for i, w in enumerate(weights)
        ])
        current: dict[int, int] = {}
        total = sum(weights)
        picks = [division.step(plan, current, {}).share.branch_id for _ in range(2 * total)]
        assert Counter(picks[:total]) == Counter(picks[total:]) == {i + 1: w for i, w in enumerate(weights)}
        counts = Counter()
        for n, b in enumerate(picks, start=1):
            counts[b] += 1
            assert all(abs(counts[i + 1] - n * w / total) < 1 for i, w in enumerate(weights)), (weights, n)
        assert current == dict.fromkeys(range(1, len(weights) + 1), 0)  # back to the start after each window


def test_roles_admins_write_policies_managers_read_their_branchs_allocations(app):
    s = two_branches(app)
    p = policy(s, 1, 1)
    s.t.lead("13800138000")  # Shanghai
    s.t.lead("13800138001")  # Wuhan
    body = {"entries": [{"branch_id": s.shanghai, "team_id": s.sh_team, "weight": 1}]}
    for who in ("manager", "rep"):
        assert s.t.post(f"{S}/policies", json=body, who=who).status_code == 403
    assert s.t.get(f"{S}/policies", who="rep").status_code == 403
    assert s.t.get(f"{S}/policies/{p['id']}", who="manager").status_code == 200
    mine = ok(s.t.get(f"{S}/allocations", who="manager"))["items"]  # the manager is in Sales: Shanghai's team
    assert [a["branch_id"] for a in mine] == [s.shanghai]
    assert len(ok(s.t.get(f"{S}/allocations"))["items"]) == 2


def test_generated_requests_to_policies_and_allocations(app):
    from pelago.testing import check_routes

    s = two_branches(app)
    p = policy(s)
    lead = s.t.lead("13800138000")
    check_routes(app, f"{S}/policies", s.t.headers("admin"), values={"policy_id": [p["id"]]})
    check_routes(app, f"{S}/allocations", s.t.headers("admin"),
                 values={"policy_id": [p["id"]], "lead_id": [lead["id"]], "branch_id": [s.shanghai]})
