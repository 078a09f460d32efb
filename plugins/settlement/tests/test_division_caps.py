"""Daily caps, counted in each branch's own timezone, and where a lead goes when every branch is full.

The clock fixture starts at 2026-03-02 02:00 UTC (10:00 in Shanghai);
midnight in Shanghai is 16:00 UTC the day before.
"""

from __future__ import annotations

from datetime import datetime, timezone

from .division_helpers import S, log, ok, policy, team, two_branches


def at(clock, *args):
    clock.at = datetime(*args, tzinfo=timezone.utc)


def test_caps_across_shanghai_midnight_and_the_overflow_to_the_default_team(app, clock):
    s = two_branches(app, wh_tz="UTC")  # Wuhan counts its days in UTC here, to tell the calendars apart
    overflow = team(s.t, "Overflow")
    ok(s.t.patch("/api/v1/routing/settings", json={"default_team_id": overflow}))
    p = policy(s, 3, 2, caps=(2, 2))
    sh, wh = s.sh_team, s.wh_team

    def lead(n):
        return s.t.lead(f"138001{n:05d}")["team_id"]

    assert [lead(i) for i in range(5)] == [sh, wh, sh, wh, overflow]  # then both are full
    at(clock, 2026, 3, 2, 15, 59)  # 23:59 in Shanghai: the same day
    assert lead(5) == overflow
    at(clock, 2026, 3, 2, 16, 0)  # midnight in Shanghai: its cap starts again; Wuhan's day (UTC) goes on
    assert [lead(i) for i in range(6, 9)] == [sh, sh, overflow]
    at(clock, 2026, 3, 3, 0, 0)  # midnight in UTC: Wuhan's turn
    assert [lead(i) for i in range(9, 12)] == [wh, wh, overflow]

    rows = log(s.t, p["id"])
    assert [r.seq for r in rows] == list(range(1, 13))
    assert [r.branch_id for r in rows] == [
        s.shanghai, s.wuhan, s.shanghai, s.wuhan, None, None, s.shanghai, s.shanghai, None, s.wuhan, s.wuhan, None,
    ]
    assert "Shanghai is at its daily cap of 2" in rows[3].reason
    full = rows[4]
    assert full.team_id == overflow and "the tenant's default intake team" in full.reason
    assert "Shanghai is at its daily cap of 2; Wuhan is at its daily cap of 2" in full.reason
    history = ok(s.t.get(f"/api/v1/leads/{full.lead_id}/history"))["items"]
    explained = next(h for h in history if h["type"] == "ownership")["detail"]["team"]
    assert explained["team_id"] == overflow and explained["settlement"]["branch_id"] is None
    assert "default intake team" in explained["reason"]
    ahead = ok(s.t.get(f"{S}/policies/{p['id']}/preview", query_string={"n": 2}))["items"]
    assert [a["branch"] for a in ahead] == [None, None]  # both are full today; the preview counts too


def test_all_full_with_the_pool_on_is_left_to_the_pool(app):
    s = two_branches(app)
    ok(s.t.patch("/api/v1/routing/settings", json={"default_team_id": team(s.t, "Overflow")}))
    ok(s.t.put("/api/v1/plugins/pool", json={"enabled": True}))
    p = policy(s, 1, 1, caps=(1, 1))
    got = [s.t.lead(f"1380013800{i}")["team_id"] for i in range(3)]
    assert got == [s.sh_team, s.wh_team, None]
    last = log(s.t, p["id"])[-1]
    assert last.branch_id is None and last.team_id is None and "left to the pool" in last.reason


def test_an_inactive_branch_sits_out_and_the_other_takes_every_lead(app):
    s = two_branches(app)
    policy(s, 3, 2)
    ok(s.t.post(f"{S}/branches/{s.shanghai}/deactivate"))
    rows_before = len(log(s.t))
    assert {s.t.lead(f"1380013800{i}")["team_id"] for i in range(4)} == {s.wh_team}
    assert all("Shanghai is inactive" in r.reason for r in log(s.t)[rows_before:])


def test_a_cap_counts_the_branchs_leads_from_every_policy(app):
    s = two_branches(app)
    default = policy(s, 3, 2, caps=(2, None))  # the default policy caps Shanghai at 2 a day
    policy(s, 1, 1, source="douyin")  # douyin: no caps, 1:1
    got = [s.t.lead(f"1370013800{i}", source="douyin")["team_id"] for i in range(3)]
    assert got == [s.sh_team, s.wh_team, s.sh_team]  # Shanghai has 2 today already
    nxt = s.t.lead("13800138000")
    assert nxt["team_id"] == s.wh_team
    [row] = log(s.t, default["id"])
    assert row.branch_id == s.wuhan and "Shanghai is at its daily cap of 2" in row.reason
