"""The ledger: entries from deal_won and deal_refunded, idempotent, clawbacks, late entries, the lock race."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from pelago.plugin import Event, tenant_context
from pelago.plugins.settlement import closing, hooks
from pelago.plugins.settlement.models import Period, Refunded, SettledDeal

from .money_helpers import FLAT_10, S, branch, count, entries, give, on, owned, period, plan, refund, total, won

D = Decimal


def test_a_won_deal_credits_its_closer_and_pays_commission(app):
    t = on(app)
    b = branch(t, team_id=t.team_id)
    plan(t, b, FLAT_10)
    lead = owned(t, "13800138001")
    deal = won(t, lead["id"], "1999.99")
    rows = entries(t, deal_id=deal["id"])
    assert [(e.kind, e.origin, e.user_id, e.amount) for e in rows] == [
        ("credit", "won", deal["owner_id"], D("1999.99")),
        ("commission", "won", deal["owner_id"], D("200.00")),
    ]
    assert all(e.branch_id == b and e.adjusts_period_id is None for e in rows)
    p = period(t, b, "2026-03")
    assert p is not None and p.state == "open" and rows[0].period_id == p.id


def test_redelivered_events_create_no_second_entry(app):
    t = on(app)
    b = branch(t, team_id=t.team_id)
    plan(t, b, FLAT_10)
    deal = won(t, owned(t, "13800138002")["id"], "1000.00")
    ref = refund(t, deal["id"], "250.00")
    before = entries(t, deal_id=deal["id"])
    assert len(before) == 4 and total(before) == D("750.00") and total(before, "commission") == D("75.00")
    won_event = Event(id=10**9, name="deal_won", tenant_id=t.id, created_at=None, actor_id=None,
                      items=({"deal_id": deal["id"]},))
    refund_event = Event(id=10**9 + 1, name="deal_refunded", tenant_id=t.id, created_at=None, actor_id=None,
                         items=({"refund_id": ref["id"], "deal_id": deal["id"]},))
    for _ in range(2):  # at least once: the same events again, twice
        with tenant_context(t.runtime, t.id) as ctx:
            hooks.deal_won(ctx=ctx, event=won_event)
            hooks.deal_refunded(ctx=ctx, event=refund_event)
            ctx.session.commit()
    assert [e.id for e in entries(t, deal_id=deal["id"])] == [e.id for e in before]
    assert count(t, SettledDeal) == 1 and count(t, Refunded) == 1


def test_pay_then_refund_in_full_nets_exactly_zero(app):
    t = on(app)
    b = branch(t, team_id=t.team_id)
    plan(t, b, [{"up_to": "500.00", "rate": "0.033"}, {"up_to": None, "rate": "0.071"}], mode="marginal")
    deal = won(t, owned(t, "13800138003")["id"], "1234.57")
    for amount in ("0.01", "333.33", "901.23"):
        refund(t, deal["id"], amount)
    rows = entries(t, deal_id=deal["id"])
    assert total(rows) == 0 and total(rows, "commission") == 0
    clawbacks = [e for e in rows if e.origin == "refund"]
    assert clawbacks and all(e.amount <= 0 and e.original_id is not None for e in clawbacks)


def test_a_refund_claws_back_each_credit_line_in_proportion(app):
    t = on(app)
    branch(t, team_id=t.team_id)
    assert t.post(f"{S}/rules", json={
        "situation": "first_purchase", "method": "split", "effective_from": "2026-01-01T00:00:00+08:00",
        "splits": [{"role": "first_owner", "percent": "30"}, {"role": "closer", "percent": "70"}],
    }).status_code == 201
    lead = owned(t, "13800138004", "rep")
    first, other = t.users["rep"], t.users["rep2"]
    give(t, lead["id"], other)
    deal = won(t, lead["id"], "100.00")
    credits = {e.user_id: e.amount for e in entries(t, deal_id=deal["id"], kind="credit")}
    assert credits == {first: D("30.00"), other: D("70.00")}
    refund(t, deal["id"], "10.00")
    back = {e.user_id: e.amount for e in entries(t, deal_id=deal["id"], origin="refund")}
    assert back == {first: D("-3.00"), other: D("-7.00")}


def _lock(t, key, branch_id=None, who="admin"):
    body = {"period": key} | ({"branch_id": branch_id} if branch_id else {})
    return t.post(f"{S}/periods/lock", json=body, who=who)


def test_late_refund_after_a_lock_lands_in_the_next_open_period(make_app, clock):
    app = make_app(redis=True)  # deliveries wait until deliver_events: the refund's arrives late
    t = on(app)
    b = branch(t, team_id=t.team_id)
    plan(t, b, FLAT_10)
    from pelago.testing import deliver_events

    deal = won(t, owned(t, "13800138005")["id"], "800.00")
    deliver_events(t.runtime, t.id)
    ref = refund(t, deal["id"], "200.00")  # recorded in March; its event not delivered yet
    clock.advance(days=31)  # April 2: March has ended
    r = _lock(t, "2026-03")
    assert r.status_code == 200, r.get_json()
    march = period(t, b, "2026-03")
    assert march.state == "locked" and march.totals["branch"]["credited"] == "800.00"
    deliver_events(t.runtime, t.id)  # the refund arrives after the lock
    late = entries(t, origin="refund", origin_id=ref["id"])
    april = period(t, b, "2026-04")
    assert late and all(e.period_id == april.id and e.adjusts_period_id == march.id for e in late)
    assert {e.original_id for e in late} == {e.id for e in entries(t, deal_id=deal["id"], origin="won")}
    assert total(late) == D("-200.00") and total(late, "commission") == D("-20.00")
    again = period(t, b, "2026-03")
    assert again.totals == march.totals and again.checksum == march.checksum
    with tenant_context(t.runtime, t.id) as ctx:
        assert closing.verify(ctx, closing.get_period(ctx, march.id))
    # and April reconciles with the adjustment in it
    clock.advance(days=30)
    r = _lock(t, "2026-04")
    assert r.status_code == 200, r.get_json()
    assert period(t, b, "2026-04").totals["branch"]["adjustments"] == "-220.00"


def test_a_locked_period_refuses_entries_and_changes_in_the_database(app, clock):
    t = on(app)
    b = branch(t, team_id=t.team_id)
    won(t, owned(t, "13800138006")["id"], "10.00")
    clock.advance(days=31)
    assert _lock(t, "2026-03").status_code == 200
    march = period(t, b, "2026-03")
    row = entries(t, period_id=march.id)[0]
    with t.runtime.sessions() as s:
        for sql in (
            "UPDATE settlement_entry SET amount = amount + 1 WHERE id = :e",
            "UPDATE settlement_period SET checksum = 'x' WHERE id = :p",
            "UPDATE settlement_period SET state = 'open', checksum = NULL WHERE id = :p",
            "INSERT INTO settlement_entry (tenant_id, key, period_id, branch_id, kind, origin, origin_id, amount, base,"
            " occurred_at, created_at) SELECT tenant_id, 'sneak', period_id, branch_id, kind, origin, origin_id, amount,"
            " base, occurred_at, created_at FROM settlement_entry WHERE id = :e",
        ):
            with pytest.raises(Exception):  # noqa: B017 - each dialect's own error class
                with s.begin_nested():
                    s.execute(text(sql), {"e": row.id, "p": march.id})
        s.rollback()
    assert period(t, b, "2026-03").checksum == march.checksum


def test_lock_refuses_a_period_that_does_not_reconcile_and_lists_the_difference(make_app, clock):
    app = make_app(redis=True)
    t = on(app)
    b = branch(t, team_id=t.team_id)
    from pelago.testing import deliver_events

    won(t, owned(t, "13800138007")["id"], "10.00")
    deliver_events(t.runtime, t.id)
    lost = won(t, owned(t, "13800138008")["id"], "25.50")  # its deal_won is never delivered before the lock
    clock.advance(days=31)
    r = _lock(t, "2026-03")
    assert r.status_code == 409
    diffs = r.get_json()["errors"]["differences"]
    assert diffs == [{"what": "won", "id": lost["id"], "credited": "0.00", "expected": "25.50",
                      "difference": "-25.50", "note": "deal not settled (its deal_won delivery has not run)"}]
    assert period(t, b, "2026-03").state == "open"
    deliver_events(t.runtime, t.id)
    assert _lock(t, "2026-03").status_code == 200


def test_lock_paid_and_bad_input(app, clock):
    t = on(app)
    branch(t, team_id=t.team_id)
    won(t, owned(t, "13800138009")["id"], "10.00")
    r = _lock(t, "2026-03")
    assert r.status_code == 409 and "not ended" in r.get_json()["message"]
    for body, field in (({"period": "2026-13"}, "period"), ({"period": "2025-01"}, "period"), ({}, "period"),
                        ({"period": 202603}, "period")):
        r = t.post(f"{S}/periods/lock", json=body)
        assert r.status_code == 422 and field in r.get_json()["errors"]["json"] | r.get_json()["errors"], r.get_json()
    assert _lock(t, "2026-03", who="manager").status_code == 403
    clock.advance(days=31)
    p = _lock(t, "2026-03").get_json()["items"][0]
    assert _lock(t, "2026-03").status_code == 409
    assert t.post(f"{S}/periods/{p['id']}/paid", who="manager").status_code == 403
    paid = t.post(f"{S}/periods/{p['id']}/paid")
    assert paid.status_code == 200 and paid.get_json()["state"] == "paid"
    assert paid.get_json()["checksum"] == p["checksum"]
    assert t.post(f"{S}/periods/{p['id']}/paid").status_code == 409


amounts = st.integers(min_value=1, max_value=10**7).map(lambda c: f"{Decimal(c) / 100:.2f}")
ops = st.lists(
    st.one_of(
        st.tuples(st.just("won"), amounts, st.sampled_from(["rep", "rep2"])),
        st.tuples(st.just("refund"), st.integers(0, 50), st.integers(1, 100)),
        st.tuples(st.just("lock"), st.integers(5, 40), st.just(None)),
    ),
    min_size=1, max_size=12,
)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=ops)
def test_random_deals_partial_refunds_and_locks_reconcile_to_the_cent(app, clock, steps):
    t = on(app)
    b = branch(t, team_id=t.team_id)
    plan(t, b, [{"up_to": "1000.00", "rate": "0.031"}, {"up_to": None, "rate": "0.067"}])
    deals: list[tuple[int, Decimal]] = []
    refunded: dict[int, Decimal] = {}
    phone = iter(range(13900000000, 13999999999))
    for op, x, y in steps:
        if op == "won":
            d = won(t, owned(t, str(next(phone)), y)["id"], x)
            deals.append((d["id"], D(x)))
        elif op == "refund" and deals:
            deal_id, amount = deals[x % len(deals)]
            left = amount - refunded.get(deal_id, D(0))
            part = (left * y / 100).quantize(D("0.01"))
            if part > 0:
                refund(t, deal_id, str(part))
                refunded[deal_id] = refunded.get(deal_id, D(0)) + part
        elif op == "lock":
            clock.advance(days=x)
            with tenant_context(t.runtime, t.id) as ctx:
                for p in ctx.session.scalars(select(Period).where(Period.state == "open",
                                                                  Period.ends_at <= clock())).all():
                    closing.lock(ctx, p, None)
                ctx.session.commit()
    rows = entries(t)
    for deal_id, amount in deals:
        mine = [e for e in rows if e.deal_id == deal_id]
        assert total(mine) == amount - refunded.get(deal_id, D(0))
        if refunded.get(deal_id) == amount:
            assert total(mine, "commission") == 0
    with tenant_context(t.runtime, t.id) as ctx:
        for p in ctx.session.scalars(select(Period).where(Period.state != "open")):
            assert closing.verify(ctx, p)
            assert sum(D(v["credited"]) for v in p.totals["users"].values()) == D(p.totals["branch"]["credited"])


@pytest.mark.postgres
def test_a_lock_racing_late_entries_never_lets_one_into_the_locked_period(make_app, clock):
    """Real threads: the lock and the late refunds' deliveries, started together, five times over."""
    from pelago.testing import deliver_events

    app = make_app(redis=True)
    t = on(app)
    b = branch(t, team_id=t.team_id)
    month = 3
    for round_ in range(5):
        key = f"2026-{month:02d}"
        deals = [won(t, owned(t, f"1370000{round_}{i:03d}")["id"], "100.00") for i in range(6)]
        deliver_events(t.runtime, t.id)
        for d in deals:
            refund(t, d["id"], "40.00")  # recorded in this month, delivered during the lock
        clock.advance(days=31)
        start = threading.Barrier(2)
        outcome: dict[str, object] = {}

        def lock(start=start, outcome=outcome, key=key) -> None:
            start.wait()
            outcome["lock"] = t.post(f"{S}/periods/lock", json={"period": key}).status_code

        def deliver(start=start, outcome=outcome) -> None:
            start.wait()
            outcome["deliver"] = deliver_events(t.runtime, t.id)

        threads = [threading.Thread(target=lock), threading.Thread(target=deliver)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert outcome["lock"] == 200, outcome
        locked = period(t, b, key)
        inside = entries(t, period_id=locked.id)
        assert str(total(inside)) == locked.totals["branch"]["credited"]
        assert len(inside) == locked.totals["entries"]
        late = [e for e in entries(t) if e.origin == "refund" and e.deal_id in {d["id"] for d in deals}]
        assert len(late) == 6 and all(e.period_id == locked.id or e.adjusts_period_id == locked.id for e in late)
        with tenant_context(t.runtime, t.id) as ctx:
            assert closing.verify(ctx, closing.get_period(ctx, locked.id))
        month += 1


def test_an_entry_off_by_a_cent_refuses_the_lock_naming_its_deal(app, clock):
    t = on(app)
    b = branch(t, team_id=t.team_id)
    good = won(t, owned(t, "13800138010")["id"], "10.00")
    bad = won(t, owned(t, "13800138011")["id"], "20.00")
    march = period(t, b, "2026-03")
    with t.runtime.sessions() as s:  # a cent written behind the ledger's back, into the open period
        s.execute(text(
            "INSERT INTO settlement_entry (tenant_id, key, period_id, branch_id, user_id, deal_id, kind, origin,"
            " origin_id, amount, base, shared, occurred_at, created_at) SELECT tenant_id, 'stray', period_id,"
            " branch_id, user_id, deal_id, kind, origin, origin_id, :cent, :cent, shared, occurred_at, created_at"
            " FROM settlement_entry WHERE deal_id = :d AND kind = 'credit'"), {"d": bad["id"], "cent": 1 if
                                                                               s.get_bind().dialect.name == "sqlite"
                                                                               else D("0.01")})
        s.commit()
    clock.advance(days=31)
    r = _lock(t, "2026-03")
    assert r.status_code == 409
    assert r.get_json()["errors"]["differences"] == [
        {"what": "won", "id": bad["id"], "credited": "20.01", "expected": "20.00", "difference": "0.01"}]
    assert period(t, b, "2026-03").state == "open" and good["id"] != bad["id"] and march.state == "open"


def test_a_deal_shared_by_branches_in_different_timezones_reconciles_in_each(app, clock):
    from .money_helpers import move_user, team

    t = on(app)
    shanghai = branch(t, "Shanghai", team_id=t.team_id)
    ny_team = team(t, "New York")
    ny = branch(t, "New York", tz="America/New_York", team_id=ny_team)
    move_user(t, t.users["rep2"], ny_team)
    assert t.post(f"{S}/rules", json={
        "situation": "walk_in", "method": "split", "effective_from": "2026-01-01T00:00:00+08:00",
        "splits": [{"role": "first_owner", "percent": "50"}, {"role": "closer", "percent": "50"}]}).status_code == 201
    lead = owned(t, "13800138012", "rep")
    give(t, lead["id"], t.users["rep2"])
    clock.advance(days=29, hours=15)  # 31 March 17:00 UTC: April in Shanghai, still March in New York
    deal = won(t, lead["id"], "100.01")
    rows = entries(t, deal_id=deal["id"], kind="credit")
    assert {(e.branch_id, e.amount, e.shared) for e in rows} == {(shanghai, D("50.01"), True), (ny, D("50.00"), True)}
    assert {e.period_id for e in rows} == {period(t, shanghai, "2026-04").id, period(t, ny, "2026-03").id}
    clock.advance(days=2)
    r = _lock(t, "2026-03", ny)
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["items"][0]["totals"]["branch"]["credited"] == "50.00"
    clock.advance(days=31)
    r = _lock(t, "2026-04", shanghai)
    assert r.status_code == 200, r.get_json()
