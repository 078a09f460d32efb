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


LESSON_HOURS = st.lists(HOURS, min_size=1, max_size=6)


def test_a_batched_roll_call_charges_as_one_by_one_would(app, tenant, clock):
    """One ``settle`` of several lessons of one student (one account charged several times in one batch,
    one statement on PostgreSQL): the lines are those of consuming lesson after lesson, gift hours first,
    revenue to the cent, half-up, the residue on the last hour; too few hours refuses the whole batch."""
    from pelago.plugins.scheduling import attendance
    from pelago.plugins.scheduling.models import Enrolment, Lesson

    from .helpers import ok

    s = school(tenant)
    lead = s.student("13800000202")
    account = s.buy(lead)["id"]
    ok(s.post(f"/classes/{s.klass}/students", {"lead_id": lead, "account_id": account}), 201)
    lessons = [int(ok(s.lesson(f"2026-03-02T{8 + i:02d}:00:00+08:00", f"2026-03-02T{8 + i:02d}:50:00+08:00"),
                      201)["id"]) for i in range(6)]
    clock.advance(hours=24)

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(paid=PAID, bought=st.sampled_from(["1", "2.5", "3", "7", "10.5"]), gift=st.sampled_from(["0", "0.5", "2"]),
           hours=LESSON_HOURS, gift_first=st.booleans())
    def run(paid, bought, gift, hours, gift_first):
        with tenant.runtime.tenant_context(tenant.id) as ctx:
            own = {**ctx.settings("scheduling"), "gift_first": gift_first}
            ctx.settings = lambda plugin: own if plugin == "scheduling" else {}  # type: ignore[method-assign]
            a = ctx.session.get(Account, account)
            a.purchased_hours, a.gift_hours, a.paid = Decimal(bought), Decimal(gift), paid
            picked = [ctx.session.get(Lesson, lessons[i]) for i in range(len(hours))]
            for lesson, h in zip(picked, hours, strict=True):
                lesson.hours = h
            ctx.session.flush()
            expected, cg, cp, rec, refused = [], Decimal(0), Decimal(0), Decimal("0.00"), False
            for h in hours:  # one by one, in lesson order, with the ledger's own arithmetic
                gl, bl = Decimal(gift) - cg, Decimal(bought) - cp
                if gl + bl < h:
                    refused = True
                    break
                g = min(h, gl) if gift_first else max(h - bl, Decimal(0))
                new = ledger.recognised_for(paid, Decimal(bought), cp + h - g)
                expected.append((-g, g - h, new - rec))
                cg, cp, rec = cg + g, cp + h - g, new
            try:
                with ctx.session.begin_nested():
                    attendance.settle(ctx, [attendance.Item(x, lead, "present") for x in picked])
            except Conflict:
                assert refused
                assert ctx.session.scalar(select(func.count()).select_from(Entry).where(
                    Entry.account_id == account, Entry.kind == "consume")) == 0
            else:
                assert not refused
                lines = ctx.session.execute(
                    select(Entry.gift_hours, Entry.purchased_hours, Entry.amount)
                    .where(Entry.account_id == account, Entry.kind == "consume").order_by(Entry.lesson_id)
                ).all()
                assert [tuple(x) for x in lines] == expected
                a = ctx.session.get(Account, account, populate_existing=True)
                assert (a.consumed_gift, a.consumed_purchased, a.recognised) == (cg, cp, rec)
                assert ctx.session.scalar(select(Enrolment.account_id).where(Enrolment.lead_id == lead)) == account
            ctx.session.rollback()

    run()
