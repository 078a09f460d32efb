"""Division under real concurrency (real threads, real PostgreSQL), and batch-wise through CSV imports.

Each request runs on its own connection and transaction, started together
behind a barrier. The policy's state row is locked once per batch, so the
log (``seq``) is one sequence whatever the interleaving: the split over 400
leads is exactly 240/160 and every prefix is within one lead of 60/40.
"""

from __future__ import annotations

import io
from collections import Counter

import pytest
from sqlalchemy import event

from pelago.plugins.settlement import division
from tests.test_concurrency import run_parallel

from .division_helpers import S, log, ok, policy, two_branches, within_one


def upload(t, rows: list[str]):
    content = ("name,phone,source\n" + "".join(f"{r},web\n" for r in rows)).encode()
    r = t.post("/api/v1/imports", data={"file": (io.BytesIO(content), "leads.csv")}, content_type="multipart/form-data")
    assert r.status_code == 202, r.get_json()
    return r.get_json()["id"]


def check_split(s, p, n=400):
    rows = log(s.t, p["id"])
    assert [r.seq for r in rows] == list(range(1, n + 1))
    assert Counter(r.branch_id for r in rows) == {s.shanghai: n * 60 // 100, s.wuhan: n * 40 // 100}
    within_one([r.branch_id for r in rows], {s.shanghai: 60, s.wuhan: 40})
    for k in range(0, n, 100):  # every window of Σweights consecutive leads: exact
        assert Counter(r.branch_id for r in rows[k:k + 100]) == {s.shanghai: 60, s.wuhan: 40}
    assert all(r.lead_id is not None for r in rows)
    return rows


@pytest.mark.postgres
def test_400_leads_from_8_threads_through_the_api_split_exactly_240_160(app):
    s = two_branches(app)
    p = policy(s)

    def worker(i):
        return [s.t.post("/api/v1/leads", json={"name": f"w{i}", "phone": f"1380{i:03d}{k:04d}", "source": "web"})
                for k in range(50)]

    responses = [r for chunk in run_parallel(8, worker) for r in chunk]
    assert Counter(r.status_code for r in responses) == {201: 400}
    rows = check_split(s, p)
    teams = Counter(r.get_json()["team_id"] for r in responses)
    assert teams == {s.sh_team: 240, s.wh_team: 160}
    assert {r.lead_id for r in rows} == {r.get_json()["id"] for r in responses}


@pytest.mark.postgres
def test_400_leads_from_8_concurrent_csv_imports_split_exactly_240_160(app):
    s = two_branches(app)
    p = policy(s)
    ids = run_parallel(8, lambda i: upload(s.t, [f"n{i}_{k},1390{i:03d}{k:04d}" for k in range(50)]))
    for import_id in ids:
        imp = ok(s.t.get(f"/api/v1/imports/{import_id}"))
        assert imp["status"] == "done" and imp["created_leads"] == 50, imp
    check_split(s, p)


def test_an_import_asks_once_per_batch_and_locks_the_state_once_per_batch(app, engine, monkeypatch):
    s = two_branches(app)
    p = policy(s)
    calls: list[int] = []
    real = division.divide
    monkeypatch.setattr(division, "divide", lambda ctx, leads: calls.append(len(leads)) or real(ctx, leads))
    locks: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "FROM settlement_division_state" in statement:
            locks.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        import_id = upload(s.t, [f"n{k},1370000{k:04d}" for k in range(2500)])
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert ok(s.t.get(f"/api/v1/imports/{import_id}"))["created_leads"] == 2500
    assert calls == [1000, 1000, 500]  # one hook call per batch of the import
    assert len(locks) == 3 and all("FOR UPDATE" in q for q in locks) == (engine.dialect.name == "postgresql")
    rows = log(s.t, p["id"])
    assert len(rows) == 2500 and Counter(r.branch_id for r in rows) == {s.shanghai: 1500, s.wuhan: 1000}
    within_one([r.branch_id for r in rows], {s.shanghai: 60, s.wuhan: 40})
    assert ok(s.t.get(f"{S}/allocations", query_string={"branch_id": s.wuhan, "limit": 200}))["next_cursor"]


@pytest.mark.postgres
def test_the_array_literals_round_trip_any_text(engine):
    from sqlalchemy import text

    values = ['email:a"b,c{d}@x.com', "email:back\\slash@x.com", "phone:+8613800138000", "NULL", ""]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT CAST(:v AS text[])"), {"v": division._texts(values)}).scalar() == values
        got = conn.execute(text("SELECT CAST(:v AS bigint[])"), {"v": division._ints([1, None, 2**62])}).scalar()
        assert got == [1, None, 2**62]


@pytest.mark.postgres
def test_daily_caps_hold_under_8_threads(app):
    from .division_helpers import team

    s = two_branches(app)
    overflow = team(s.t, "Overflow")
    ok(s.t.patch("/api/v1/routing/settings", json={"default_team_id": overflow}))
    p = policy(s, 3, 2, caps=(30, 20))

    def worker(i):
        return [s.t.post("/api/v1/leads", json={"phone": f"1381{i:03d}{k:04d}"}).get_json()["team_id"]
                for k in range(10)]

    teams = Counter(t for chunk in run_parallel(8, worker) for t in chunk)
    assert teams == {s.sh_team: 30, s.wh_team: 20, overflow: 30}
    rows = log(s.t, p["id"])
    assert [r.seq for r in rows] == list(range(1, 81))
    assert Counter(r.branch_id for r in rows) == {s.shanghai: 30, s.wuhan: 20, None: 30}
    assert all(r.branch_id is None for r in rows[50:])  # once both are full, every lead overflows


@pytest.mark.postgres
def test_concurrent_versions_of_one_policy_one_wins(app, clock):
    from datetime import timedelta

    s = two_branches(app)
    policy(s)
    start = (clock() + timedelta(hours=1)).isoformat()
    body = {"effective_from": start, "entries": [{"branch_id": s.shanghai, "team_id": s.sh_team, "weight": 1}]}
    codes = Counter(r.status_code for r in run_parallel(6, lambda i: s.t.post(f"{S}/policies", json=body)))
    assert codes[201] == 1 and codes[201] + codes[409] + codes[422] == 6, codes
    versions = ok(s.t.get(f"{S}/policies"))["items"]
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[1]["effective_to"] == versions[0]["effective_from"] and versions[0]["effective_to"] is None


@pytest.mark.postgres
def test_the_database_refuses_overlapping_versions_written_by_hand(app, engine):
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    s = two_branches(app)
    p = policy(s)
    insert = text(
        "INSERT INTO settlement_policy (tenant_id, source, version, effective_from, effective_to, note, created_at)"
        " VALUES (:t, '', :v, :start, :end, '', now())"
    )
    with engine.connect() as conn:  # a closed range inside the open version's: overlaps it
        with pytest.raises(IntegrityError, match="ex_settlement_policy_no_overlap"):
            conn.execute(insert, {"t": s.t.id, "v": 9, "start": "2030-01-01T00:00:00Z", "end": "2030-02-01T00:00:00Z"})
        conn.rollback()
        conn.execute(insert, {"t": s.t.id, "v": 9, "start": "2000-01-01T00:00:00Z", "end": "2000-02-01T00:00:00Z"})
        conn.rollback()  # before it: no overlap (and nothing kept)
    assert [v["id"] for v in ok(s.t.get(f"{S}/policies"))["items"]] == [p["id"]]
