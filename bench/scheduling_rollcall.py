"""scheduling_rollcall: 100,000 attendance records with their ledger lines versus a bare insert of the records.

Three tenants, set up alike (not timed): ``--rows / 20`` lessons that have
taken place, each with 20 enrolled students, every student with an open
account of 200 hours (2 gift hours) bought for 10,000.00, named on the
enrolment. Ten lessons a class, one an hour; each class has its own
teacher (the lesson table refuses a teacher in two lessons at once).

Roll-call, on the first tenant: :func:`pelago.plugins.scheduling.attendance.settle`
— what ``POST /lessons/{id}/attendance`` and the automatic consumption
run — with every student present, ``--per-txn`` lessons per transaction
(default 50: a school's afternoon of roll-calls): the records made and
locked, each account charged by a conditional update (gift hours first,
revenue recognised to the cent), one ledger line per record, the
low-balance check.

Baseline (``ratio``), on the second tenant: the same attendance rows
(status present) inserted with one ``INSERT`` per batch of the same size —
no accounts, no ledger.

Same writes by hand (``ratio_sql``), on the third tenant: the minimal
hand-written SQL making the roll-call's writes (bench/_rollcall_by_hand.py:
the records, the accounts' conditional updates, the ledger lines with the
same split and rounding), one statement per batch of the same size. Its
ledger must come out equal to the roll-call's (lines, revenue recognised,
gift hours used), or the benchmark fails.

The three sides alternate batch by batch.

    python -m bench.scheduling_rollcall [--rows 100000] [--per-txn 50] [--db postgresql]
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

from bench.common import arguments, bench_database, kinds, log, make_runtime, make_tenant, peak_rss_mb, result

PER_LESSON = 20
GOAL = "<=2"
GOAL_SQL = "<=1.3"
LESSON_HOURS = Decimal("1")  # every lesson's hours (its class's hours_per_lesson)


def setup(runtime: Any, lessons: int, offset: int) -> tuple[Any, list[int], list[tuple[int, int, int]]]:
    """A tenant with ``lessons`` past lessons of 20 students each; returns (tenant, lesson ids, marks).

    A mark is (lesson, student, the student's account), in the lessons' order.
    """
    from sqlalchemy import insert, text

    from pelago.plugins.scheduling.models import (
        Account,
        Campus,
        Course,
        Enrolment,
        Entry,
        Klass,
        Lesson,
        Package,
        Student,
        Teacher,
    )

    classes = max(lessons // 10, 1)  # ten lessons a class
    # a teacher per class: the lessons of one hour are the classes' (one each), and a teacher cannot be in two
    tenant = make_tenant(runtime, reps=classes, auto_routing=False, plugins=("scheduling",))
    now = runtime.clock()
    t = tenant.id
    start = now - timedelta(days=2)
    with runtime.engine.begin() as conn:
        campus = conn.execute(insert(Campus).returning(Campus.id), [{"tenant_id": t, "name": "Main",
                              "timezone": "Asia/Shanghai", "created_at": now}]).scalar()
        course = conn.execute(insert(Course).returning(Course.id), [{"tenant_id": t, "name": "Maths",
                              "subject": True}]).scalar()
        package = conn.execute(insert(Package).returning(Package.id), [{
            "tenant_id": t, "course_id": course, "name": "200h", "hours": Decimal("200"), "gift_hours": Decimal("2"),
            "price": Decimal("10000.00"), "validity_days": 3650}]).scalar()
        conn.execute(insert(Teacher), [{"tenant_id": t, "user_id": u, "active": True, "subjects": ""}
                                       for u in tenant.rep_ids])
        class_ids = list(conn.execute(insert(Klass).returning(Klass.id, sort_by_parameter_order=True), [
            {"tenant_id": t, "name": f"class {i}", "kind": "class", "campus_id": campus, "course_id": course,
             "teacher_id": tenant.rep_ids[i], "room_id": None, "capacity": 30, "online": True,
             "hours_per_lesson": LESSON_HOURS, "trial": False, "created_at": now} for i in range(classes)
        ]).scalars())
        n = classes * PER_LESSON
        leads = sorted(conn.execute(text(
            "INSERT INTO core_lead (tenant_id, name, phone, stage, is_customer, locked, attributes, created_at,"
            " updated_at, stage_changed_at, version) SELECT :t, 'student ' || g, '+86' || (13900000000 + g + :off)::text, 'won',"
            " true, false, '{}', :now, :now, :now, 1 FROM generate_series(1, :n) g RETURNING id"
        ), {"t": t, "n": n, "off": offset, "now": now}).scalars())
        conn.execute(insert(Student), [{"tenant_id": t, "lead_id": x, "created_at": now} for x in leads])
        accounts = list(conn.execute(insert(Account).returning(Account.id, sort_by_parameter_order=True), [
            {"tenant_id": t, "lead_id": x, "package_id": package, "deal_id": None, "purchased_hours": Decimal("200"),
             "gift_hours": Decimal("2"), "consumed_purchased": Decimal("0"), "consumed_gift": Decimal("0"),
             "paid": Decimal("10000.00"), "unit_price": Decimal("50.00"), "recognised": Decimal("0"),
             "refunded": Decimal("0"), "status": "open", "opened_at": now,
             "expires_at": now + timedelta(days=3650), "closed_at": None} for x in leads
        ]).scalars())
        conn.execute(insert(Entry), [
            {"tenant_id": t, "account_id": a, "kind": "purchase", "purchased_hours": Decimal("200"),
             "gift_hours": Decimal("2"), "amount": Decimal("10000.00"), "note": "200h", "at": now} for a in accounts
        ])
        conn.execute(insert(Enrolment), [
            {"tenant_id": t, "class_id": class_ids[i // PER_LESSON], "lead_id": x, "account_id": accounts[i],
             "enrolled_at": now} for i, x in enumerate(leads)
        ])
        lesson_rows = [
            {"tenant_id": t, "class_id": class_ids[k % classes], "series_id": None, "recurrence_id": None,
             "starts_at": start + timedelta(hours=k // classes), "ends_at": start + timedelta(hours=k // classes,
                                                                                              minutes=50),
             "teacher_id": tenant.rep_ids[k % classes], "room_id": None, "kind": "regular", "status": "scheduled",
             "reason": "", "makeup_of": None, "hours": LESSON_HOURS, "online": True, "auto_consumed": False,
             "created_at": now} for k in range(lessons)
        ]
        lesson_ids = list(conn.execute(insert(Lesson).returning(Lesson.id, sort_by_parameter_order=True),
                                       lesson_rows).scalars())
        by_class: dict[int, list[int]] = {}
        for i, x in enumerate(leads):
            by_class.setdefault(class_ids[i // PER_LESSON], []).append(x)
        account_of = dict(zip(leads, accounts, strict=True))
        pairs = [(lid, x, account_of[x]) for lid, row in zip(lesson_ids, lesson_rows, strict=True)
                 for x in by_class[row["class_id"]]]
    return tenant, lesson_ids, pairs


def ledger_of(runtime: Any, tenant_id: int) -> tuple[int, int, Any, Any]:
    """A tenant's (records, consumption lines, revenue recognised, gift hours used)."""
    from sqlalchemy import func, select

    from pelago.plugins.scheduling.models import Account, Attendance, Entry

    with runtime.tenant_context(tenant_id) as ctx:
        records = ctx.session.scalar(select(func.count()).select_from(Attendance))
        lines = ctx.session.scalar(select(func.count()).select_from(Entry).where(Entry.kind == "consume"))
        recognised = ctx.session.scalar(select(func.sum(Account.recognised)))
        gift = ctx.session.scalar(select(func.sum(Account.consumed_gift)))
    return records, lines, recognised, gift


def measure(kind: str, rows: int, per_txn: int) -> dict[str, Any]:
    from sqlalchemy import insert, select, text

    from bench import _rollcall_by_hand
    from pelago.plugins.scheduling import attendance
    from pelago.plugins.scheduling.models import Attendance, Lesson

    lessons = max(rows // PER_LESSON, 1)
    with bench_database(kind) as url:
        runtime = make_runtime(url, plugins=("scheduling",))
        log(f"{kind}: setting up 3 tenants × {lessons:,} lessons × {PER_LESSON} students")
        rolled, rolled_lessons, _ = setup(runtime, lessons, 0)
        based, _, based_pairs = setup(runtime, lessons, 10_000_000)
        by_hand, _, hand_marks = setup(runtime, lessons, 20_000_000)
        with runtime.tenant_context(by_hand.id) as ctx:
            gift_first = bool(ctx.settings("scheduling")["gift_first"])

        with runtime.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
        log(f"roll-call, {per_txn} lessons a transaction, alternating with the bare INSERT of the same records"
            " and the same writes by hand")
        now = runtime.clock()
        batch = per_txn * PER_LESSON
        roll_s = bare_s = sql_s = 0.0
        for n, i in enumerate(range(0, lessons, per_txn)):
            started = time.perf_counter()
            with runtime.tenant_context(rolled.id) as ctx:
                chunk = list(ctx.session.scalars(select(Lesson).where(Lesson.id.in_(rolled_lessons[i:i + per_txn]))))
                students = attendance.booking.students_of(ctx, chunk)
                attendance.settle(ctx, [attendance.Item(x, s, "present") for x in chunk for s in students[x.id]])
            roll_s += time.perf_counter() - started
            bare_rows = [{"tenant_id": based.id, "lesson_id": lid, "lead_id": x, "status": "present", "charged": True,
                          "generation": 0, "marked_at": now} for lid, x, _ in based_pairs[n * batch:(n + 1) * batch]]
            started = time.perf_counter()
            with runtime.engine.begin() as conn:
                conn.execute(insert(Attendance.__table__), bare_rows)
            bare_s += time.perf_counter() - started
            marks = hand_marks[n * batch:(n + 1) * batch]
            started = time.perf_counter()
            with runtime.engine.begin() as conn:
                _rollcall_by_hand.roll_call(conn, by_hand.id, marks, LESSON_HOURS, now, gift_first)
            sql_s += time.perf_counter() - started

        records, lines, recognised, gift = ledger_of(runtime, rolled.id)
        expected = lessons * PER_LESSON
        if records != expected or lines != expected:
            raise AssertionError(f"{records} records and {lines} consumption lines, expected {expected}")
        hand = ledger_of(runtime, by_hand.id)
        if hand != (records, lines, recognised, gift):
            raise AssertionError(f"by hand wrote {hand} (records, lines, recognised, gift hours), "
                                 f"the roll-call {(records, lines, recognised, gift)}")
        runtime.engine.dispose()
    return result(
        "scheduling_rollcall", roll_s / bare_s, db=kind, records=expected, lessons=lessons, per_txn=per_txn,
        ledger_lines=lines, recognised=str(recognised), gift_hours_used=str(gift), rollcall_s=round(roll_s, 2),
        bare_insert_s=round(bare_s, 2), by_hand_sql_s=round(sql_s, 2), ratio_sql=round(roll_s / sql_s, 3),
        records_per_s=round(expected / roll_s), peak_rss_mb=round(peak_rss_mb(), 1), goal=GOAL, goal_sql=GOAL_SQL,
    )


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__.split("\n", 1)[0], 100_000)
    parser.add_argument("--per-txn", type=int, default=50, help="lessons per transaction (default 50)")
    args = parser.parse_args(argv)
    for kind in kinds(args.db):
        if kind != "postgresql":
            parser.error("scheduling_rollcall's set-up uses PostgreSQL (generate_series)")
        measure(kind, args.rows, args.per_txn)
    return 0


if __name__ == "__main__":
    sys.exit(main())
