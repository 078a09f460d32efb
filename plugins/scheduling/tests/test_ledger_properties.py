"""Property tests (hypothesis): random interleavings of purchases, consumption, reversals and refunds.

Whatever the order, no balance is ever negative, every account's ledger adds
up to its totals, and recognised revenue + refunded + remaining value = paid,
to the cent, where the remaining value is also the remaining purchased hours
at the unit price within the one rounding cent.
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from pelago.plugin import Conflict, to_money
from pelago.plugins.scheduling import ledger
from pelago.plugins.scheduling.models import Account, Entry, Package

from .helpers import school

HOURS = st.sampled_from([Decimal("0.5"), Decimal("1"), Decimal("1.5"), Decimal("2"), Decimal("3")])
PAID = st.integers(min_value=1, max_value=1_000_000).map(lambda c: Decimal(c) / 100)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("buy"), st.integers(0, 3), PAID),
        st.tuples(st.just("consume"), st.integers(0, 7), HOURS),
        st.tuples(st.just("reverse"), st.integers(0, 30), st.none()),
        st.tuples(st.just("refund"), st.integers(0, 7), st.none()),
    ),
    min_size=1, max_size=25,
)


def test_random_interleavings_keep_balances_and_money_exact(app, tenant, clock):
    s = school(tenant)
    lead = s.student("13800000201")
    with tenant.runtime.tenant_context(tenant.id) as ctx:
        packages = []
        for i, (hours, gift) in enumerate([("1", "0"), ("3", "1"), ("7", "0"), ("10.5", "2")]):
            p = Package(course_id=s.course, name=f"prop {i}", hours=Decimal(hours), gift_hours=Decimal(gift),
                        price=Decimal("1"), validity_days=3650)
            ctx.session.add(p)
            ctx.session.flush()
            packages.append(p.id)
        ctx.session.commit()

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(ops=OPS)
    def run(ops):
        with tenant.runtime.tenant_context(tenant.id) as ctx:
            accounts: list[int] = []
            consumptions: list[int] = []
            for op, pick, value in ops:
                try:
                    with ctx.session.begin_nested():
                        if op == "buy":
                            pkg = ctx.session.get(Package, packages[pick])
                            accounts.append(ledger.open_account(ctx, lead, pkg, paid=value, deal_id=None))
                        elif op == "consume" and accounts:
                            charge = ledger.consume(ctx, accounts[pick % len(accounts)], value)
                            consumptions.append(charge.entry_id)
                        elif op == "reverse" and consumptions:
                            ledger.reverse_entry(ctx, consumptions[pick % len(consumptions)])
                        elif op == "refund" and accounts:
                            ledger.refund(ctx, accounts[pick % len(accounts)], "property test")
                except Conflict:
                    pass  # refused (too few hours, closed, reversed already): nothing may have changed
                _check(ctx, accounts)
            ctx.session.rollback()

    run()


def _check(ctx, accounts: list[int]) -> None:
    for account_id in accounts:
        a = ctx.session.get(Account, account_id, populate_existing=True)
        assert Decimal(0) <= a.consumed_purchased <= a.purchased_hours
        assert Decimal(0) <= a.consumed_gift <= a.gift_hours
        sums = dict(ctx.session.execute(
            select(Entry.kind, func.sum(Entry.amount)).where(Entry.account_id == account_id).group_by(Entry.kind)
        ).all())
        hours = ctx.session.execute(
            select(func.sum(Entry.purchased_hours), func.sum(Entry.gift_hours))
            .where(Entry.account_id == account_id, Entry.kind.in_(("purchase", "consume", "reversal")))
        ).one()
        money = {k: Decimal(sums.get(k) or 0) for k in ("purchase", "consume", "reversal", "expire", "refund")}
        recognised = money["consume"] + money["reversal"] + money["expire"]
        refunded = money["refund"]
        assert money["purchase"] == a.paid
        assert recognised == a.recognised and refunded == a.refunded
        assert Decimal(hours[0]) == a.purchased_hours - a.consumed_purchased
        assert Decimal(hours[1]) == a.gift_hours - a.consumed_gift
        remaining = ledger.remaining_value(a)
        assert recognised + refunded + remaining == a.paid  # to the cent
        if a.status == "open":
            left = a.purchased_hours - a.consumed_purchased
            assert abs(remaining - to_money(left * a.paid / a.purchased_hours)) <= Decimal("0.01")
            assert a.recognised == to_money(a.paid * a.consumed_purchased / a.purchased_hours)
