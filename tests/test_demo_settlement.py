"""The demo seeds settlement: branches 上海 and 武汉 with teams, a 60/40 policy for baidu, rep plans."""

from __future__ import annotations

from pelago.hostapp.demo import seed


def test_the_demo_seeds_two_branches_a_baidu_policy_and_plans(make_app):
    app = make_app(("pool", "scheduling", "sms_nurture", "settlement"))
    info = seed(app.extensions["pelago"])
    client = app.test_client()
    headers = {"Authorization": f"Bearer {info.admin_key}"}

    def call(method: str, path: str, status: int = 200, **kw: object) -> dict:
        r = client.open(f"/api/v1{path}", method=method, headers=headers, **kw)
        assert r.status_code == status, r.get_json()
        return r.get_json()

    teams = {t["name"]: t["id"] for t in call("GET", "/teams")["items"]}
    branches = {b["name"]: b for b in call("GET", "/settlement/branches")["items"]}
    assert set(branches) == {"上海", "武汉"} and {b["timezone"] for b in branches.values()} == {"Asia/Shanghai"}
    assert branches["上海"]["team_ids"] == sorted([teams["Telesales"], teams["Customer care"]])
    assert branches["武汉"]["team_ids"] == [teams["武汉电销"]]
    [policy] = call("GET", "/settlement/policies")["items"]
    assert policy["source"] == "baidu"
    assert {e["branch"]: e["weight"] for e in policy["entries"]} == {"上海": 60, "武汉": 40}
    plans = call("GET", "/settlement/plans")["items"]
    assert {(p["branch_id"], p["role"]) for p in plans} == {(b["id"], "rep") for b in branches.values()}

    # baidu leads are divided (上海, then 武汉); douyin still follows the tenant's rule to Telesales
    first = call("POST", "/leads", 201, json={"name": "孙丽", "phone": "13800138011", "source": "baidu"})
    second = call("POST", "/leads", 201, json={"name": "钱多", "phone": "13800138012", "source": "baidu"})
    douyin = call("POST", "/leads", 201, json={"name": "周杰", "phone": "13912345678", "source": "douyin"})
    assert first["team_id"] == teams["Telesales"] and second["team_id"] == teams["武汉电销"]
    assert second["owner_id"] is not None
    assert douyin["team_id"] == teams["Telesales"]
    items = call("GET", "/settlement/allocations")["items"]
    assert [(a["seq"], a["branch_id"]) for a in items] == [(2, branches["武汉"]["id"]), (1, branches["上海"]["id"])]
