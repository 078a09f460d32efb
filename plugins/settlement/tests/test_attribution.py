"""Attribution: splitting exactly (pure) here; rules, situations and overrides through the API below."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pelago.plugins.settlement import shares
from pelago.plugins.settlement.shares import Share

D = Decimal


def test_one_cent_three_ways_goes_to_the_smallest_id():
    assert shares.split_by_key(D("0.01"), {7: D(1), 3: D(1), 5: D(1)}) == {3: D("0.01"), 5: D("0.00"), 7: D("0.00")}
    assert shares.split_by_key(D("100.00"), {2: D(1), 1: D(1), 3: D(1)}) == {1: D("33.34"), 2: D("33.33"), 3: D("33.33")}


def test_a_sale_split_between_two_branches_and_inside_each():
    lines = shares.split_two_levels(
        D("999.99"),
        [Share(10, 1, D(25)), Share(10, 2, D(25)), Share(20, 3, D(50))],
    )
    # branches first: 10 and 20 each 50 % of 999.99 → 500.00 (smaller branch id first) and 499.99
    assert lines == {(10, 1): D("250.00"), (10, 2): D("250.00"), (20, 3): D("499.99")}


def test_the_same_rep_in_two_roles_is_one_line():
    assert shares.split_two_levels(D("10.00"), [Share(1, 5, D(50)), Share(1, 5, D(50))]) == {(1, 5): D("10.00")}
    with pytest.raises(ValueError):
        shares.split_two_levels(D("10.00"), [Share(1, 5, D(0))])


amounts = st.integers(min_value=1, max_value=10**11).map(lambda c: Decimal(c) / 100)
weights = st.decimals(min_value=0, max_value=1000, places=2)
share_lists = st.lists(
    st.builds(Share, st.integers(1, 4), st.one_of(st.none(), st.integers(1, 6)), weights), min_size=1, max_size=8
).filter(lambda xs: any(s.weight > 0 for s in xs))


@settings(max_examples=300, deadline=None)
@given(total=amounts, people=share_lists)
def test_random_amounts_and_weights_split_exactly_to_the_total(total, people):
    lines = shares.split_two_levels(total, people)
    assert sum(lines.values()) == total
    assert all(v >= 0 and v == v.quantize(D("0.01")) for v in lines.values())
    # each branch's part is its exact share, give or take a cent
    mass = sum(s.weight for s in people)
    for branch in {s.branch_id for s in people if s.weight > 0}:
        exact = total * sum(s.weight for s in people if s.branch_id == branch) / mass
        got = sum(v for (b, _), v in lines.items() if b == branch)
        assert abs(got - exact) < D("0.01")


@settings(max_examples=300, deadline=None)
@given(total=amounts, people=share_lists, data=st.data())
def test_partial_refunds_claw_back_proportionally_and_a_full_refund_nets_zero(total, people, data):
    lines = shares.split_two_levels(total, people)
    cuts = sorted(data.draw(st.lists(st.integers(0, int(total * 100)), max_size=5)))
    steps = [D(c) / 100 for c in cuts] + [total]
    refunded, net = D("0.00"), dict(lines)
    for after in steps:
        back = shares.clawback(lines, refunded, after)
        assert sum(back.values()) == refunded - after  # each refund is taken back exactly
        assert all(v <= 0 for v in back.values())
        for k, v in back.items():
            net[k] += v
        refunded = after
    assert all(v == 0 for v in net.values())


@settings(max_examples=300, deadline=None)
@given(commission=amounts, total=amounts, data=st.data())
def test_a_commission_clawed_back_in_steps_nets_zero(commission, total, data):
    cuts = sorted(data.draw(st.lists(st.integers(0, int(total * 100)), max_size=5)))
    refunded, net = D("0.00"), commission
    for after in [D(c) / 100 for c in cuts] + [total]:
        net += shares.proportional_clawback(commission, refunded, after, total)
        refunded = after
    assert net == 0
