"""Roll-call and the class-hour ledger: charges, reversals, gift hours, leave, low balance, concurrency."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from pelago.plugin import PluginSpec, hookimpl, tenant_context
from pelago.plugins.scheduling.models import Entry
from pelago.testing import new_tenant, run_periodic

from .helpers import ok, school


def _lesson(s, day: str, hour: int = 9) -> int:
    return int(ok(s.lesson(f"2026-03-{day}T{hour:02d}:00:00+08:00", f"2026-03-{day}T{hour + 1:02d}:00:00+08:00"),
                  201)["id"])


def _mark(s, lesson: int, lead: int, status: str | None):
    return s.post(f"/lessons/{lesson}/attendance", {"marks": [{"lead_id": lead, "status": status}]})


def test_roll_call_twice_changed_and_undone_nets_correctly(app, tenant, clock):
    s = school(tenant, hours="10", gift="2", price="1000.00")
    lead = s.student("13800000101")
    account = s.buy(lead)
    ok(s.post(f"/classes/{s.klass}/students", {"lead_id": lead, "account_id": account["id"]}), 201)
    first, second, third = _lesson(s, "02", 8), _lesson(s, "02", 9), _lesson(s, "02", 10)
    # gift hours first (a setting), then purchased ones, at 100.00 an hour
    ok(_mark(s, first, lead, "present"))
    ok(_mark(s, first, lead, "present"))  # the same roll-call twice: charged once
    ok(_mark(s, second, lead, "late"))
    ok(_mark(s, third, lead, "absent"))
    acc = ok(s.get(f"/accounts/{account['id']}"))
    assert (acc["consumed_gift"], acc["consumed_purchased"], acc["recognised"]) == ("2.00", "1.00", "100.00")
    ok(_mark(s, third, lead, "leave"))  # changed to leave, asked too late to be free: still charged
    ok(_mark(s, third, lead, None))  # undone: reversed
    acc = ok(s.get(f"/accounts/{account['id']}"))
    assert (acc["consumed_gift"], acc["consumed_purchased"], acc["recognised"]) == ("2.00", "0.00", "0.00")
    ok(_mark(s, third, lead, "present"))  # and taken again: a new charge of a new generation
    acc = ok(s.get(f"/accounts/{account['id']}"))
    assert acc["remaining_hours"] == "9.00" and acc["remaining_value"] == "900.00"
    kinds = [(e["kind"], e["gift_hours"], e["purchased_hours"], e["amount"]) for e in acc["ledger"]]
    assert kinds == [
        ("purchase", "2.00", "10.00", "1000.00"),
        ("consume", "-1.00", "0.00", "0.00"),
        ("consume", "-1.00", "0.00", "0.00"),
        ("consume", "0.00", "-1.00", "100.00"),
        ("reversal", "0.00", "1.00", "-100.00"),
        ("consume", "0.00", "-1.00", "100.00"),
    ]
    with tenant_context(tenant.runtime, tenant.id) as ctx:  # the ledger adds up to the account
        net = ctx.session.scalar(select(func.sum(Entry.amount)).where(
            Entry.account_id == account["id"], Entry.kind.in_(("consume", "reversal"))))
        assert Decimal(net) == Decimal(acc["recognised"])


def test_leave_asked_early_enough_is_not_charged(app, tenant, clock):
    s = school(tenant, {"leave_free_hours": 24})
    lead = s.student("13800000111")
    s.buy(lead)
    ok(s.post(f"/classes/{s.klass}/students", {"lead_id": lead}), 201)
    early = _lesson(s, "05")  # three days ahead of the frozen clock
    out = ok(s.post(f"/lessons/{early}/leave", {"lead_id": lead}))
    assert out["status"] == "leave" and out["charged"] is False
    clock.advance(days=3, hours=-2)
    late = _lesson(s, "05", 14)  # asked 5 hours ahead: charged
    out = ok(s.post(f"/lessons/{late}/leave", {"lead_id": lead}))
    assert out["charged"] is True and out["remaining_hours"] == "19.00"


class Notifier:
    """A plugin of the test's own that implements ``scheduling_low_balance``, as an SMS plugin would."""

    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    @hookimpl
    def scheduling_low_balance(self, ctx, event) -> None:
        self.items.extend(dict(i) for i in event.items)


def _notified_app(make_app, notifier: Notifier):
    spec = PluginSpec(name="notifier", title="Notifier", hooks=notifier, default_enabled=True)
    return make_app(("scheduling", "notifier"), extra=(spec,))


def test_falling_under_five_hours_sends_the_low_balance_event_once(make_app, clock):
    notifier = Notifier()
    tenant = new_tenant(_notified_app(make_app, notifier))
    s = school(tenant, hours="6", price="600.00")
    lead = s.student("13800000121")
    account = s.buy(lead)
    ok(s.post(f"/classes/{s.klass}/students", {"lead_id": lead}), 201)
    for hour in (8, 9, 10):
        ok(_mark(s, _lesson(s, "02", hour), lead, "present"))
    # 6 → 5 is not under 5; 5 → 4 is; 4 → 3 was under already
    assert notifier.items == [{"account_id": account["id"], "lead_id": lead, "remaining_hours": "4.00",
                               "threshold_hours": "5.00", "expires_at": notifier.items[0]["expires_at"]}]


def test_the_threshold_is_a_setting(make_app, clock):
    notifier = Notifier()
    tenant = new_tenant(_notified_app(make_app, notifier))
    s = school(tenant, {"low_balance_hours": "2"}, hours="2", price="200.00")
    lead = s.student("13800000122")
    s.buy(lead)
    ok(s.post(f"/classes/{s.klass}/students", {"lead_id": lead}), 201)
    ok(_mark(s, _lesson(s, "02", 8), lead, "present"))
    assert [i["remaining_hours"] for i in notifier.items] == ["1.00"]


def test_not_enough_hours_is_a_409_and_nothing_is_charged(app, tenant, clock):
    s = school(tenant, hours="1", price="100.00")
    lead = s.student("13800000131")
    s.buy(lead)
    ok(s.post(f"/classes/{s.klass}/students", {"lead_id": lead}), 201)
    ok(_mark(s, _lesson(s, "02", 8), lead, "present"))
    r = _mark(s, _lesson(s, "02", 9), lead, "present")
    assert r.status_code == 409 and "no open account" in r.get_json()["message"]


def test_automatic_consumption_and_roll_call_never_both_charge(app, tenant, clock):
    s = school(tenant, {"auto_consume": True, "auto_consume_after_minutes": 30})
    a, b = s.student("13800000141"), s.student("13800000142")
    acc_a, acc_b = s.buy(a), s.buy(b)
    for lead in (a, b):
        ok(s.post(f"/classes/{s.klass}/students", {"lead_id": lead}), 201)
    lesson = _lesson(s, "02", 11)  # 03:00–04:00 UTC; the clock is at 02:00 UTC
    ok(_mark(s, lesson, a, "leave"))  # a's roll-call stands
    clock.advance(hours=3)
    for _ in range(2):  # run twice: idempotent
        run_periodic(tenant.runtime, "scheduling", "consume", tenant.id)
    assert ok(s.get(f"/accounts/{acc_a['id']}"))["consumed_purchased"] == "1.00"  # the late leave, once
    assert ok(s.get(f"/accounts/{acc_b['id']}"))["consumed_purchased"] == "1.00"  # filled in as present, once
    ok(_mark(s, lesson, b, "present"))  # the teacher confirms: no second charge
    assert ok(s.get(f"/accounts/{acc_b['id']}"))["consumed_purchased"] == "1.00"


def test_unused_hours_expire_and_their_value_is_recognised(app, tenant, clock):
    s = school(tenant, hours="4", price="100.00")
    lead = s.student("13800000151")
    account = s.buy(lead)
    ok(s.post(f"/classes/{s.klass}/students", {"lead_id": lead}), 201)
    ok(_mark(s, _lesson(s, "02", 8), lead, "present"))
    clock.advance(days=366)
    for _ in range(2):
        run_periodic(tenant.runtime, "scheduling", "expire", tenant.id)
    acc = ok(s.get(f"/accounts/{account['id']}"))
    assert acc["status"] == "expired" and acc["recognised"] == "100.00" and acc["remaining_value"] == "0.00"
    assert [e["kind"] for e in acc["ledger"]] == ["purchase", "consume", "expire"]


@pytest.mark.postgres
def test_concurrent_roll_calls_on_an_account_with_one_hour_left_consume_it_once(app, tenant, clock):
    s = school(tenant, hours="1", price="100.00")
    lead = s.student("13800000161")
    account = s.buy(lead)
    classes = [s.new_class(f"C{i}", teacher=s.teacher if i % 2 else tenant.users["rep2"], room=None)
               for i in range(8)]
    lessons = []
    for i, k in enumerate(classes):
        ok(s.post(f"/classes/{k}/students", {"lead_id": lead, "account_id": account["id"]}), 201)
        lessons.append(int(ok(s.lesson(f"2026-03-02T{i:02d}:00:00+08:00", f"2026-03-02T{i:02d}:50:00+08:00",
                                       klass=k), 201)["id"]))
    barrier = threading.Barrier(len(lessons))
    codes: list[int] = []

    def call(lesson: int) -> None:
        client = app.test_client()
        barrier.wait()
        codes.append(client.post(f"/api/v1/scheduling/lessons/{lesson}/attendance", headers=tenant.headers(),
                                 json={"marks": [{"lead_id": lead, "status": "present"}]}).status_code)

    threads = [threading.Thread(target=call, args=(x,)) for x in lessons]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(codes) == [200] + [409] * (len(lessons) - 1)
    acc = ok(s.get(f"/accounts/{account['id']}"))
    assert acc["remaining_hours"] == "0.00" and acc["recognised"] == "100.00"
    assert [e["kind"] for e in acc["ledger"]] == ["purchase", "consume"]


def test_a_transfer_keeps_one_balance_and_a_makeup_is_linked_to_the_missed_lesson(app, tenant, clock):
    s = school(tenant, hours="10", price="1000.00")
    lead = s.student("13800000171")
    account = s.buy(lead)
    ok(s.post(f"/classes/{s.klass}/students", {"lead_id": lead, "account_id": account["id"]}), 201)
    missed = _lesson(s, "02", 7)
    ok(_mark(s, missed, lead, "leave"))  # asked too late: charged one hour
    other = s.new_class("Maths G5 B", teacher=tenant.users["rep2"], room=None)
    makeup = int(ok(s.lesson("2026-03-02T08:00:00+08:00", "2026-03-02T09:00:00+08:00", klass=other), 201)["id"])
    out = ok(s.post("/makeups", {"lead_id": lead, "missed_lesson_id": missed, "lesson_id": makeup}), 201)
    assert lead in out["students"] and out["makeups"] == [{"lead_id": lead, "missed_lesson_id": missed}]
    # the makeup charges the same account (found by the student, not the class)
    ok(_mark(s, makeup, lead, "present"))
    assert ok(s.get(f"/accounts/{account['id']}"))["consumed_purchased"] == "2.00"
    # moved to the other class: same account, one balance; the old class's future lessons free her
    future = ok(s.lesson("2026-03-09T09:00:00+08:00", "2026-03-09T10:00:00+08:00"), 201)
    assert lead in future["students"]
    moved = ok(s.post(f"/classes/{s.klass}/transfer", {"lead_id": lead, "to_class_id": other}))
    assert lead in moved["students"] and lead not in ok(s.get(f"/classes/{s.klass}"))["students"]
    assert lead not in ok(s.get(f"/lessons/{future['id']}"))["students"]
    later = int(ok(s.lesson("2026-03-02T09:30:00+08:00", "2026-03-02T10:00:00+08:00", klass=other), 201)["id"])
    ok(_mark(s, later, lead, "present"))
    acc = ok(s.get(f"/accounts/{account['id']}"))
    assert acc["consumed_purchased"] == "3.00" and acc["remaining_hours"] == "7.00"
    assert [e["kind"] for e in acc["ledger"]] == ["purchase", "consume", "consume", "consume"]
    # the lesson she left is free for another class's student at that time now
    with tenant_context(tenant.runtime, tenant.id) as ctx:
        from pelago.plugins.scheduling import booking

        assert booking.double_bookings(ctx) == 0


def test_an_account_changed_after_the_batch_read_sends_the_roll_call_one_by_one(app, tenant, clock, monkeypatch):
    """The batch's conditional update comes out short: nothing of the batch stays, each mark is taken again alone."""
    from pelago.plugins.scheduling import attendance

    s = school(tenant, hours="10", gift="1", price="1000.00")
    leads = [s.student(f"1380000017{i}") for i in range(2)]
    accounts = [s.buy(lead) for lead in leads]
    for lead, account in zip(leads, accounts, strict=True):
        ok(s.post(f"/classes/{s.klass}/students", {"lead_id": lead, "account_id": account["id"]}), 201)
    lesson = _lesson(s, "02", 8)
    read, taken_alone = attendance._accounts_for, []
    apply_one = attendance._apply

    def stale(ctx, lessons, pairs):  # the first account as another writer's charge left it before the batch read
        out, known = read(ctx, lessons, pairs)
        first = known[accounts[0]["id"]]
        moved = list(first)
        moved[6] = first[6] - 1  # consumed_gift one lower than the database holds
        return out, {**known, first[0]: tuple(moved)}

    def alone(ctx, lesson, lead_id, status, **kw):
        taken_alone.append(lead_id)
        return apply_one(ctx, lesson, lead_id, status, **kw)

    monkeypatch.setattr(attendance, "_accounts_for", stale)
    monkeypatch.setattr(attendance, "_apply", alone)
    items = ok(s.post(f"/lessons/{lesson}/attendance",
                      {"marks": [{"lead_id": x, "status": "present"} for x in reversed(leads)]}))["items"]
    assert sorted(taken_alone) == sorted(leads)
    assert [(i["lead_id"], i["charged"], i["remaining_hours"]) for i in items] == [
        (x, True, "10.00") for x in sorted(leads)]
    for account in accounts:
        acc = ok(s.get(f"/accounts/{account['id']}"))
        assert (acc["consumed_gift"], acc["consumed_purchased"], acc["recognised"]) == ("1.00", "0.00", "0.00")
        assert [e["kind"] for e in acc["ledger"]] == ["purchase", "consume"]
