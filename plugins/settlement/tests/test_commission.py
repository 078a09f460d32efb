"""Commission: rate tables (pure) here; plans through the API and the ledger below them."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pelago.plugins.settlement import tiers

D = Decimal
TABLE = tiers.tiers_of([{"up_to": "150000.00", "rate": "0.05"}, {"up_to": None, "rate": "0.08"}])


def test_a_rep_at_145000_closing_20000_across_the_150000_boundary():
    # per deal: the deal alone is in the first tier, both ways
    assert tiers.earned("step", D("20000.00"), TABLE) == D("1000.00")
    assert tiers.earned("marginal", D("20000.00"), TABLE) == D("1000.00")
    # cumulative over the period: 145,000 → 165,000
    # marginal: 5,000 at 5 % + 15,000 at 8 % = 250 + 1,200
    assert tiers.increment("marginal", D("145000.00"), D("20000.00"), TABLE) == D("1450.00")
    # step: the whole 165,000 is re-rated at 8 % (13,200) minus what 145,000 earned at 5 % (7,250)
    assert tiers.increment("step", D("145000.00"), D("20000.00"), TABLE) == D("5950.00")


def test_the_boundary_is_inclusive():
    assert tiers.earned("step", D("150000.00"), TABLE) == D("7500.00")
    assert tiers.earned("step", D("150000.01"), TABLE) == D("12000.00")  # 150000.01 × 0.08 = 12000.0008
    assert tiers.earned("marginal", D("150000.01"), TABLE) == D("7500.00")  # 0.01 × 8 % rounds to 0.00


def test_half_up_to_the_cent():
    flat = tiers.tiers_of([{"up_to": None, "rate": "0.05"}])
    assert tiers.earned("step", D("0.10"), flat) == D("0.01")  # 0.005 → 0.01, not banker's 0.00
    assert tiers.earned("step", D("-0.10"), flat) == D("-0.01")


@pytest.mark.parametrize(
    "rows",
    [
        [],
        [{"up_to": "100.00", "rate": "0.05"}],  # the last tier must be open
        [{"up_to": None, "rate": "0.05"}, {"up_to": None, "rate": "0.06"}],
        [{"up_to": "100.00", "rate": "0.05"}, {"up_to": "100.00", "rate": "0.06"}, {"up_to": None, "rate": "0.1"}],
        [{"up_to": "0.00", "rate": "0.05"}, {"up_to": None, "rate": "0.06"}],
        [{"up_to": None, "rate": "1.5"}],
        [{"up_to": None, "rate": "-0.1"}],
        [{"up_to": None, "rate": 0.05}],  # a float
        [{"up_to": 100.0, "rate": "0.05"}, {"up_to": None, "rate": "0.05"}],
    ],
)
def test_bad_tables(rows):
    with pytest.raises(ValueError):
        tiers.tiers_of(rows)


rates = st.decimals(min_value=0, max_value=1, places=3)
ceilings = st.lists(st.integers(min_value=1, max_value=10**7), min_size=0, max_size=5, unique=True)
cents = st.integers(min_value=1, max_value=10**9).map(lambda c: Decimal(c) / 100)


@st.composite
def tables(draw):
    tops = sorted(draw(ceilings))
    rows = [{"up_to": Decimal(t), "rate": draw(rates)} for t in tops] + [{"up_to": None, "rate": draw(rates)}]
    return tiers.tiers_of(rows)


@settings(max_examples=200, deadline=None)
@given(table=tables(), deals=st.lists(cents, min_size=1, max_size=20), mode=st.sampled_from(tiers.MODES))
def test_cumulative_increments_add_up_to_the_period_total_in_any_order(table, deals, mode):
    for order in (deals, list(reversed(deals))):
        total, paid = Decimal(0), Decimal(0)
        for amount in order:
            paid += tiers.increment(mode, total, amount, table)
            total += amount
        assert paid == tiers.earned(mode, total, table)


@settings(max_examples=200, deadline=None)
@given(table=tables(), amount=cents)
def test_marginal_never_beats_the_top_rate_and_step_equals_one_rate(table, amount):
    marginal, step = tiers.earned("marginal", amount, table), tiers.earned("step", amount, table)
    assert marginal <= (amount * max(t.rate for t in table)).quantize(Decimal("0.01")) + Decimal("0.01")
    assert any(step == (amount * t.rate).quantize(Decimal("0.01"), rounding="ROUND_HALF_UP") for t in table)


# --- plans through the API, cumulative plans and their true-up, plan versions ---------------------

from pelago.plugin import tenant_context  # noqa: E402
from pelago.plugins.settlement import closing  # noqa: E402
from pelago.plugins.settlement.models import Plan  # noqa: E402

from .money_helpers import S, branch, count, entries, on, owned, period, plan, refund, total, won  # noqa: E402

BOUNDARY = [{"up_to": "150000.00", "rate": "0.05"}, {"up_to": None, "rate": "0.08"}]


@pytest.mark.parametrize("mode,expected", [("marginal", "1450.00"), ("step", "5950.00")])
def test_a_rep_at_145000_closing_20000_in_a_cumulative_plan(app, mode, expected):
    t = on(app)
    b = branch(t, team_id=t.team_id)
    plan(t, b, BOUNDARY, mode=mode, scope="period")
    won(t, owned(t, "13800140001")["id"], "145000.00")
    deal = won(t, owned(t, "13800140002")["id"], "20000.00")
    assert [e.amount for e in entries(t, deal_id=deal["id"], kind="commission")] == [D(expected)]


def test_per_deal_scope_rates_each_deal_alone(app):
    t = on(app)
    b = branch(t, team_id=t.team_id)
    plan(t, b, BOUNDARY, mode="step", scope="deal")
    won(t, owned(t, "13800140003")["id"], "145000.00")
    deal = won(t, owned(t, "13800140004")["id"], "20000.00")
    assert [e.amount for e in entries(t, deal_id=deal["id"], kind="commission")] == [D("1000.00")]


def test_the_lock_trues_up_a_cumulative_plan_on_the_periods_net_base(app, clock):
    t = on(app)
    b = branch(t, team_id=t.team_id)
    plan(t, b, BOUNDARY, mode="step", scope="period")
    won(t, owned(t, "13800140005")["id"], "100000.00")  # 5,000
    second = won(t, owned(t, "13800140006")["id"], "60000.00")  # 160,000 at 8 % = 12,800: +7,800
    refund(t, second["id"], "20000.00")  # claws back 7,800 × 20/60 = 2,600; the net base is 140,000
    rows = entries(t, kind="commission")
    assert total(rows, "commission") == D("10200.00")
    clock.advance(days=31)
    assert t.post(f"{S}/periods/lock", json={"period": "2026-03"}).status_code == 200
    march = period(t, b, "2026-03")
    true_up = [e for e in entries(t, period_id=march.id) if e.origin == "true_up"]
    assert [(e.user_id, e.amount) for e in true_up] == [(t.users["rep"], D("-3200.00"))]  # 140,000 × 5 % = 7,000
    assert march.totals["branch"]["commission"] == "7000.00" and march.totals["branch"]["true_up"] == "-3200.00"
    with tenant_context(t.runtime, t.id) as ctx:
        assert closing.verify(ctx, closing.get_period(ctx, march.id))


def test_a_refund_claws_back_with_the_plan_version_of_the_original_deal(app, clock):
    t = on(app)
    b = branch(t, team_id=t.team_id)
    plan(t, b, [{"up_to": None, "rate": "0.10"}])
    deal = won(t, owned(t, "13800140007")["id"], "1000.00")
    plan(t, b, [{"up_to": None, "rate": "0.20"}], effective_from="2026-03-05T00:00:00+08:00")
    clock.advance(days=5)
    refund(t, deal["id"], "500.00")
    back = entries(t, deal_id=deal["id"], origin="refund", kind="commission")
    assert [e.amount for e in back] == [D("-50.00")]  # 10 % of the clawed 500, not the new 20 %
    versions = t.get(f"{S}/plans", query_string={"branch_id": b}).get_json()["items"]
    assert [(p["version"], p["tiers"][0]["rate"]) for p in versions] == [(2, "0.20"), (1, "0.10")]


def test_a_gross_plan_keeps_its_commission_on_refunds(app):
    t = on(app)
    b = branch(t, team_id=t.team_id)
    plan(t, b, [{"up_to": None, "rate": "0.10"}], base="gross")
    deal = won(t, owned(t, "13800140008")["id"], "1000.00")
    refund(t, deal["id"], "1000.00")
    rows = entries(t, deal_id=deal["id"])
    assert total(rows) == 0 and total(rows, "commission") == D("100.00")


def test_bad_plans_are_422_and_write_nothing(app):
    t, other = on(app), on(app)
    b = branch(t, team_id=t.team_id)
    plan(t, b, BOUNDARY)
    foreign = branch(other)
    base = {"branch_id": b, "role": "rep", "mode": "marginal", "scope": "deal", "tiers": BOUNDARY,
            "effective_from": "2026-06-01T00:00:00+08:00"}
    before = count(t, Plan)
    for bad, field in (
        ({"tiers": [{"up_to": "100.00", "rate": "0.05"}, {"up_to": "50.00", "rate": "0.06"},
                    {"up_to": None, "rate": "0.07"}]}, "tiers"),
        ({"tiers": [{"up_to": None, "rate": 0.05}]}, "tiers"),
        ({"tiers": [{"up_to": 1000.5, "rate": "0.05"}, {"up_to": None, "rate": "0.05"}]}, "tiers"),
        ({"tiers": [{"up_to": None, "rate": "1.5"}]}, "tiers"),
        ({"tiers": []}, "tiers"),
        ({"mode": "flat"}, "mode"),
        ({"scope": "year"}, "scope"),
        ({"base": "half"}, "base"),
        ({"role": "operator"}, "role"),
        ({"effective_from": "2025-12-31T00:00:00+08:00"}, "effective_from"),  # overlaps version 1 (Jan 1)
        ({"branch_id": 1.5}, "branch_id"),
    ):
        r = t.post(f"{S}/plans", json={**base, **bad})
        assert r.status_code == 422, (bad, r.get_json())
        errors = r.get_json()["errors"]
        assert field in errors.get("json", errors) or any(field in str(v) for v in errors.values()), (bad, errors)
    assert t.post(f"{S}/plans", json={**base, "branch_id": foreign}).status_code == 404
    assert t.post(f"{S}/plans", json=base, who="manager").status_code == 403
    assert count(t, Plan) == before
    assert t.get(f"{S}/plans", who="rep").status_code == 403
    assert len(t.get(f"{S}/plans", who="manager").get_json()["items"]) == 1
