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
