"""Statements per branch and per rep (JSON and CSV), entries with paging and roles, switching off, the API contract."""

from __future__ import annotations

import csv
import io

from pelago.plugins.settlement.models import Entry
from pelago.testing import check_routes, new_tenant

from .money_helpers import FLAT_10, S, branch, count, entries, move_user, on, owned, plan, refund, team, won


def _setup(t, clock=None):
    b = branch(t, team_id=t.team_id)
    plan(t, b, FLAT_10)
    plan(t, b, FLAT_10, role="manager")
    d1 = won(t, owned(t, "13800141001", "rep")["id"], "1000.00")
    d2 = won(t, owned(t, "13800141002", "rep2")["id"], "500.00")
    refund(t, d2["id"], "100.00")
    return b, d1, d2


def test_a_branch_statement_open_then_locked(app, clock):
    t = on(app)
    b, _, _ = _setup(t)
    live = t.get(f"{S}/statements/branches/{b}", query_string={"period": "2026-03"}, who="manager")
    assert live.status_code == 200, live.get_json()
    body = live.get_json()
    assert body["period"]["state"] == "open" and body["period"]["checksum"] is None
    assert body["branch"] | {} == body["branch"] and body["branch"]["credited"] == "1400.00"
    assert body["branch"]["won"] == "1500.00" and body["branch"]["refunded"] == "-100.00"
    assert body["branch"]["commission"] == "140.00" and body["branch"]["clawed_back"] == "-10.00"
    people = {u["user_id"]: u for u in body["users"]}
    assert people[t.users["rep"]]["credited"] == "1000.00" and people[t.users["rep2"]]["credited"] == "400.00"
    clock.advance(days=31)
    assert t.post(f"{S}/periods/lock", json={"period": "2026-03"}).status_code == 200
    locked = t.get(f"{S}/statements/branches/{b}", query_string={"period": "2026-03"}).get_json()
    assert locked["period"]["state"] == "locked" and len(locked["period"]["checksum"]) == 64
    assert locked["branch"] == body["branch"] and locked["users"] == body["users"]


def test_csv_is_utf8_with_a_bom(app):
    t = on(app)
    b, d1, _ = _setup(t)
    r = t.get(f"{S}/statements/branches/{b}/csv", query_string={"period": "2026-03"})
    assert r.status_code == 200 and r.mimetype == "text/csv" and "attachment" in r.headers["Content-Disposition"]
    assert r.data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(r.data.decode("utf-8-sig"))))
    assert rows[0][:4] == ["branch", str(b), "period", "2026-03"]
    assert rows[1][:3] == ["user_id", "credited", "won"]
    assert rows[2][:2] == ["branch", "1400.00"]
    assert {row[0]: row[1] for row in rows[3:]} == {str(t.users["rep"]): "1000.00", str(t.users["rep2"]): "400.00"}
    mine = t.get(f"{S}/statements/users/{t.users['rep2']}/csv", query_string={"period": "2026-03"}, who="rep2")
    assert mine.status_code == 200 and mine.data.startswith(b"\xef\xbb\xbf")
    lines = list(csv.reader(io.StringIO(mine.data.decode("utf-8-sig"))))
    assert lines[2][:2] == ["id", "period"] and [x[8] for x in lines[3:]] == ["500.00", "50.00", "-100.00", "-10.00"]


def test_reps_read_their_own_statement_and_entries_managers_their_branch(app):
    t = on(app)
    b, d1, d2 = _setup(t)
    rep, rep2 = t.users["rep"], t.users["rep2"]
    own = t.get(f"{S}/statements/users/{rep}", query_string={"period": "2026-03"}, who="rep")
    assert own.status_code == 200 and own.get_json()["totals"]["credited"] == "1000.00"
    assert [e["deal_id"] for e in own.get_json()["entries"]] == [d1["id"], d1["id"]]
    assert t.get(f"{S}/statements/users/{rep2}", query_string={"period": "2026-03"}, who="rep").status_code == 404
    assert t.get(f"{S}/statements/branches/{b}", query_string={"period": "2026-03"}, who="rep").status_code == 403
    assert t.get(f"{S}/statements/users/{rep2}", query_string={"period": "2026-03"}, who="manager").status_code == 200
    mine = t.get(f"{S}/entries", who="rep").get_json()["items"]
    assert mine and {e["user_id"] for e in mine} == {rep}
    # a manager of another branch sees nothing of this one
    other_team = team(t, "Elsewhere")
    branch(t, "Elsewhere", team_id=other_team)
    move_user(t, t.users["manager"], other_team)
    assert t.get(f"{S}/statements/branches/{b}", query_string={"period": "2026-03"}, who="manager").status_code == 404
    assert t.get(f"{S}/entries", who="manager").get_json()["items"] == []
    assert t.get(f"{S}/deals/{d1['id']}/credits", who="manager").status_code == 404


def test_entries_filters_and_cursor_paging(app):
    t = on(app)
    b, d1, d2 = _setup(t)
    seen, cursor = [], None
    while True:
        args = {"limit": 2, "period": "2026-03", "branch_id": b} | ({"cursor": cursor} if cursor else {})
        page = t.get(f"{S}/entries", query_string=args).get_json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert [e["id"] for e in seen] == sorted((e.id for e in entries(t)), reverse=True)
    assert all(e["period"] == "2026-03" and isinstance(e["amount"], str) for e in seen)
    by_user = t.get(f"{S}/entries", query_string={"user_id": t.users["rep2"]}).get_json()["items"]
    assert {e["deal_id"] for e in by_user} == {d2["id"]}
    for bad in ({"period": "2026-3"}, {"period": "x"}, {"limit": 0}, {"cursor": "nope"}, {"user_id": 0}):
        assert t.get(f"{S}/entries", query_string=bad).status_code == 422, bad
    assert t.get(f"{S}/statements/branches/{b}", query_string={"period": "2025-01"}).status_code == 422
    default = t.get(f"{S}/statements/branches/{b}")  # no period: the one that contains now
    assert default.status_code == 200 and default.get_json()["period"]["key"] == "2026-03"
    assert t.get(f"{S}/statements/users/{t.users['rep']}").get_json()["period"] == "2026-03"
    assert t.get(f"{S}/statements/users/{2**62}").status_code == 404


def test_switched_off_no_entries_and_routes_404(app):
    t = new_tenant(app)  # settlement off
    lead = t.lead("13800141003")
    t.post(f"/api/v1/leads/{lead['id']}/assign", json={"user_id": t.users["rep"]})
    won(t, lead["id"], "10.00")
    assert count(t, Entry) == 0
    for path in (f"{S}/entries", f"{S}/rules", f"{S}/periods", f"{S}/statements/users/{t.users['rep']}?period=2026-03"):
        r = t.get(path)
        assert r.status_code == 404 and "settlement" in r.get_json()["message"], path


def test_another_tenants_periods_and_statements_are_not_found(app, clock):
    a, b_ = on(app), on(app)
    br, _, _ = _setup(a)
    clock.advance(days=31)
    locked = a.post(f"{S}/periods/lock", json={"period": "2026-03"}).get_json()["items"][0]
    assert b_.post(f"{S}/periods/{locked['id']}/paid").status_code == 404
    assert b_.get(f"{S}/statements/branches/{br}", query_string={"period": "2026-03"}).status_code == 404
    assert b_.get(f"{S}/entries").get_json()["items"] == []
    assert b_.post(f"{S}/periods/lock", json={"period": "2026-03"}).status_code == 422


def test_the_lock_command(app, clock, pelago_cli):
    t = on(app)
    _setup(t)
    r = pelago_cli("settlement", "lock", "--tenant", t.slug, "--period", "2026-03", catch_exceptions=True)
    assert r.exit_code == 1 and "refused" in r.output and "not ended" in r.output
    clock.advance(days=31)
    r = pelago_cli("settlement", "lock", "--tenant", t.slug, "--period", "2026-03")
    assert r.exit_code == 0, r.output
    assert "locked; credited 1400.00, commission 140.00" in r.output
    for args, message in ((("--period", "2026-13"), "YYYY-MM"), (("--period", "2026-05"), "no period 2026-05")):
        r = pelago_cli("settlement", "lock", "--tenant", t.slug, *args, catch_exceptions=True)
        assert r.exit_code != 0 and message in r.output, r.output
    r = pelago_cli("settlement", "lock", "--tenant", "nobody-here", "--period", "2026-03", catch_exceptions=True)
    assert r.exit_code != 0 and "nobody-here" in r.output


def test_generated_requests(app):
    t = on(app)
    b, d1, _ = _setup(t)
    check_routes(app, f"{S}/", t.headers("admin"), max_examples=5,
                 values={"deal_id": [d1["id"]], "branch_id": [b], "user_id": [t.users["rep"]]})


def test_every_route_is_in_the_docs_api_table(app):
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[3] / "docs" / "plugins" / "settlement.md").read_text()
    table = doc[doc.index("## API"):doc.index("## CLI")]
    listed = set(re.findall(r"^\| (GET|POST|PUT|PATCH|DELETE) \| `([^`]+)` \|", table, re.M))
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(S + "/"):
            path = re.sub(r"<(?:int:)?(\w+)>", r"{\1}", rule.rule[len(S):])
            routes |= {(m, path) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert routes - listed == set() and listed - routes == set()


def test_the_settle_command_catches_up_deals_won_while_the_plugin_was_off(app, clock, pelago_cli):
    t = new_tenant(app)  # settlement off
    lead = t.lead("13800141004")
    t.post(f"/api/v1/leads/{lead['id']}/assign", json={"user_id": t.users["rep"]})
    deal = won(t, lead["id"], "300.00")
    refund(t, deal["id"], "100.00")
    assert t.put("/api/v1/plugins/settlement", json={"enabled": True, "settings": {"division": False}}).status_code == 200
    branch(t, team_id=t.team_id)
    other = won(t, owned(t, "13800141005")["id"], "50.00")  # won with the plugin on: settled already
    clock.advance(days=31)
    r = t.post(f"{S}/periods/lock", json={"period": "2026-03"})
    assert r.status_code == 409 and [d["id"] for d in r.get_json()["errors"]["differences"]] == [deal["id"]]
    r = pelago_cli("settlement", "settle", "--tenant", t.slug, "--batch", "1")
    assert r.exit_code == 0, r.output
    assert "settled 1 deal(s) and 1 refund(s)" in r.output
    assert pelago_cli("settlement", "settle", "--tenant", t.slug).output.strip().endswith("settled 0 deal(s) and 0 refund(s)")
    rows = entries(t, deal_id=deal["id"], kind="credit")
    assert sum(e.amount for e in rows) == 200 and len(entries(t, deal_id=other["id"], kind="credit")) == 1
    assert t.post(f"{S}/periods/lock", json={"period": "2026-03"}).status_code == 200
