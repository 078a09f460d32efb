"""scheduling_generate: a term of 2,000 classes × 20 weeks generated versus a bare insert of the same lessons.

Two tenants, set up alike: 400 teachers and 400 rooms on one campus
(Asia/Shanghai), 2,000 classes; class ``i`` has teacher and room ``i % 400``
and meets weekly on weekday ``(i // 400) % 5`` at 18:00 for 90 minutes, so no
two classes clash. ``--students N`` enrols N students in each class (their
busy rows are checked too).

Generated, on the first tenant: :func:`pelago.plugins.scheduling.schedule.generate_term`
as ``pelago scheduling generate`` runs it, 200 classes per transaction: each
class's RRULE (``FREQ=WEEKLY;BYDAY=..;COUNT=20`` from Monday 2026-03-02) is
expanded in the campus's time, statutory holidays (Qingming, Labour Day,
Dragon Boat) and 调休 days classified with ``chinese-calendar`` and skipped,
the series and lessons inserted — on PostgreSQL the lesson table's
exclusion constraints check every lesson's teacher and room as it is
inserted — and every lesson's students written to the busy-resource table,
whose exclusion constraint checks them (on SQLite, one query per batch).

Baseline, on the second tenant: the same lesson rows (computed beforehand,
not timed) inserted with ``INSERT`` in the same batches — no expansion, no
calendar, no busy rows, no conflict check — into ``bench_bare_lesson``, made
by the benchmark on PostgreSQL as the lesson table stood before its
exclusion constraints (migration ``scheduling_0003``): the same columns,
keys, CHECK, foreign keys and indexes, with the btree indexes
``(tenant_id, teacher_id, starts_at)`` and ``(tenant_id, room_id,
starts_at)`` that the constraints' GiST indexes replaced, and no exclusion
constraint. Inserting the baseline into ``scheduling_lesson`` itself would
make it pay for the conflict check it is compared against. On SQLite (no
constraints there) the baseline goes into ``scheduling_lesson``.

Fairness (PostgreSQL): the set-up ends with ``VACUUM ANALYZE`` and a
``CHECKPOINT``; the Python objects made before the timed part are frozen out
of the garbage collector (``gc.freeze``); the sides take turns going first;
after each pair of batches, not timed, the written tables are analysed, as
autovacuum would on a production server (it is off on the benchmark server:
see :func:`_analyze`). Besides the wall-time ratio the result gives each
batch's ratio (``batch_ratios``: lowest, median, highest), the CPU time of
this process and the server's backend per side (``cpu_ratio``: the work,
whatever else the machine runs) and the checkpoints the server made during
the timed part (``checkpoints_during``).

    python -m bench.scheduling_generate [--rows 40000] [--students 0] [--db postgresql]
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.common import arguments, bench_database, kinds, log, make_runtime, make_tenant, peak_rss_mb, result

WEEKS = 20
TEACHERS = 400
BATCH = 200
DAYS = ("MO", "TU", "WE", "TH", "FR")
GOAL = "<=2"


def setup(runtime: Any, classes: int, students: int, offset: int) -> tuple[Any, list[int]]:
    from sqlalchemy import insert, text

    from pelago.plugins.scheduling.models import Campus, Course, Enrolment, Klass, Room, Student, Teacher

    teachers = min(TEACHERS, classes)
    tenant = make_tenant(runtime, reps=teachers, auto_routing=False, plugins=("scheduling",))
    now = runtime.clock()
    t = tenant.id
    with runtime.engine.begin() as conn:
        campus = conn.execute(insert(Campus).returning(Campus.id), [{"tenant_id": t, "name": "Main",
                              "timezone": "Asia/Shanghai", "created_at": now}]).scalar()
        course = conn.execute(insert(Course).returning(Course.id), [{"tenant_id": t, "name": "Maths",
                              "subject": True}]).scalar()
        conn.execute(insert(Teacher), [{"tenant_id": t, "user_id": u, "active": True, "subjects": ""}
                                       for u in tenant.rep_ids])
        rooms = list(conn.execute(insert(Room).returning(Room.id, sort_by_parameter_order=True), [
            {"tenant_id": t, "campus_id": campus, "name": f"R{i}", "capacity": 30} for i in range(teachers)
        ]).scalars())
        class_ids = list(conn.execute(insert(Klass).returning(Klass.id, sort_by_parameter_order=True), [
            {"tenant_id": t, "name": f"class {i}", "kind": "class", "campus_id": campus, "course_id": course,
             "teacher_id": tenant.rep_ids[i % teachers], "room_id": rooms[i % teachers], "capacity": 30,
             "online": False, "hours_per_lesson": Decimal("1.5"), "trial": False, "created_at": now}
            for i in range(classes)
        ]).scalars())
        if students:
            n = classes * students
            lead_ids = list(conn.execute(text(
                "INSERT INTO core_lead (tenant_id, name, phone, stage, is_customer, locked, attributes, created_at,"
                " updated_at, stage_changed_at, version) SELECT :t, 'student ' || g, '+86' || (13900000000 + g + :off)::text, 'won',"
                " true, false, '{}', :now, :now, :now, 1 FROM generate_series(1, :n) g RETURNING id"
            ) if runtime.engine.dialect.name == "postgresql" else text(
                "INSERT INTO core_lead (tenant_id, name, phone, stage, is_customer, locked, attributes, created_at,"
                " updated_at, stage_changed_at, version) SELECT :t, 'student ' || value, '+86' || (13900000000 + value + :off),"
                " 'won', 1, 0, '{}', :now, :now, :now, 1 FROM generate_series(1, :n) RETURNING id"
            ), {"t": t, "n": n, "off": offset, "now": now}).scalars())
            conn.execute(insert(Student), [{"tenant_id": t, "lead_id": x, "created_at": now} for x in lead_ids])
            conn.execute(insert(Enrolment), [
                {"tenant_id": t, "class_id": class_ids[i // students], "lead_id": x, "account_id": None,
                 "enrolled_at": now} for i, x in enumerate(sorted(lead_ids))
            ])
    return tenant, class_ids


def _bare_lesson_table(runtime: Any) -> Any:
    """``bench_bare_lesson``: ``scheduling_lesson`` as it stood before its exclusion constraints (PostgreSQL).

    Columns, defaults (its id sequence), CHECK, primary key, unique and btree
    indexes copied with ``LIKE``; the exclusion constraints dropped; the
    btree indexes on the teacher and the room they replaced put back; its
    foreign keys copied from the catalogue.
    """
    from sqlalchemy import MetaData, text

    from pelago.plugins.scheduling.models import Lesson

    with runtime.engine.begin() as conn:
        conn.execute(text("CREATE TABLE bench_bare_lesson (LIKE scheduling_lesson INCLUDING DEFAULTS"
                          " INCLUDING CONSTRAINTS INCLUDING INDEXES)"))
        for (name,) in conn.execute(text("SELECT conname FROM pg_constraint WHERE conrelid = 'bench_bare_lesson'::regclass"
                                         " AND contype = 'x'")):
            conn.execute(text(f'ALTER TABLE bench_bare_lesson DROP CONSTRAINT "{name}"'))
        conn.execute(text("CREATE INDEX ON bench_bare_lesson (tenant_id, teacher_id, starts_at)"))
        conn.execute(text("CREATE INDEX ON bench_bare_lesson (tenant_id, room_id, starts_at)"))
        for (definition,) in conn.execute(text("SELECT pg_get_constraintdef(oid) FROM pg_constraint"
                                               " WHERE conrelid = 'scheduling_lesson'::regclass AND contype = 'f'")):
            conn.execute(text(f"ALTER TABLE bench_bare_lesson ADD {definition}"))
    return Lesson.__table__.to_metadata(MetaData(), name="bench_bare_lesson")


def _checkpoints(runtime: Any) -> int | None:
    """The server's checkpoints so far (PostgreSQL): a ``DROP DATABASE`` anywhere on the server forces one
    (another session's tests do), and writing out every dirty page slows whatever runs meanwhile."""
    from sqlalchemy import text

    if runtime.engine.dialect.name != "postgresql":
        return None
    with runtime.engine.connect() as conn:
        return int(conn.execute(text("SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")).scalar())


def _cpu(runtime: Any) -> tuple[float, float | None]:
    """CPU seconds so far of this process and of the database's server processes (``None`` when the server's
    ``/proc`` cannot be read: another machine).

    Wall time on a shared machine is whatever the other processes leave over; CPU time is the work itself. A
    side's CPU is this process's and its connection's: what it made the server do.
    """
    from sqlalchemy import text

    mine = time.process_time()
    if runtime.engine.dialect.name != "postgresql":
        return mine, None
    with runtime.engine.connect() as conn:
        pids = list(conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"))
                    .scalars())
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:  # a server on another machine (or in a container) has pids this machine does not know as its own
            if b"postgres" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                return mine, None
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return mine, None
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return mine, total


def _since(runtime: Any, before: tuple[float, float | None]) -> float | None:
    """The CPU seconds of this process and the server spent since ``before`` (:func:`_cpu`)."""
    mine, server = _cpu(runtime)
    if server is None or before[1] is None:
        return None
    return mine - before[0] + server - before[1]


def _analyze(runtime: Any) -> None:
    """``ANALYZE`` the tables both sides write, between two pairs of batches (not timed): what autovacuum
    does on a production server, and not on the shared benchmark server (``autovacuum = off`` there).

    Without it the statistics are the set-up's, of empty tables: the first foreign-key check of a lesson
    on its series plans a sequential scan of a 200-row ``scheduling_series``, and the backend keeps that
    plan while the table grows to 2,000 rows (38,000 scans, 38 million rows read) until something
    invalidates it (another session's DDL can, at a random moment): the ratio moved between 1.3 and 3.1
    with it. Autovacuum's threshold (50 rows and 10%) is crossed by every batch of 200 series.
    """
    from sqlalchemy import text

    if runtime.engine.dialect.name != "postgresql":
        return
    with runtime.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE scheduling_series, scheduling_lesson, bench_bare_lesson"))


def spec(i: int) -> dict[str, Any]:
    return {"rrule": f"FREQ=WEEKLY;BYDAY={DAYS[(i // TEACHERS) % 5]};COUNT={WEEKS}", "start": "2026-03-02T18:00",
            "duration_minutes": 90, "holidays": "skip", "makeup_workdays": "skip", "unknown_days": "refuse",
            "skip_dates": []}


def measure(kind: str, lessons_wanted: int, students: int) -> dict[str, Any]:
    from zoneinfo import ZoneInfo

    from sqlalchemy import func, insert, select

    from pelago.plugins.scheduling import schedule
    from pelago.plugins.scheduling.models import Busy, Klass, Lesson
    from pelago.plugins.scheduling.recurrence import expand

    classes = max(lessons_wanted // WEEKS, 1)
    with bench_database(kind) as url:
        runtime = make_runtime(url, plugins=("scheduling",))
        log(f"{kind}: setting up 2 tenants × {classes:,} classes, {students} students each")
        gen_tenant, gen_classes = setup(runtime, classes, students, 0)
        base_tenant, base_classes = setup(runtime, classes, students, 10_000_000)

        bare = Lesson.__table__
        if kind == "postgresql":
            from sqlalchemy import text

            bare = _bare_lesson_table(runtime)
            with runtime.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE"))
                conn.execute(text("CHECKPOINT"))
        log("baseline rows (not timed)")
        tz = ZoneInfo("Asia/Shanghai")
        now = runtime.clock()
        with runtime.tenant_context(base_tenant.id) as ctx:
            klass = {k.id: k for k in ctx.session.scalars(select(Klass))}
        batches: list[list[dict[str, Any]]] = []
        for i in range(0, classes, BATCH):
            rows = []
            for k, class_id in enumerate(base_classes[i:i + BATCH], start=i):
                c = klass[class_id]
                for o in expand(spec(k)["rrule"], datetime(2026, 3, 2, 18), timedelta(minutes=90), tz, cap=200,
                                days={"holiday": "skip", "makeup_workday": "skip", "unknown": "refuse"}):
                    if o.action == "keep":
                        rows.append({"tenant_id": base_tenant.id, "class_id": class_id, "series_id": None,
                                     "recurrence_id": o.starts_at, "starts_at": o.starts_at, "ends_at": o.ends_at,
                                     "teacher_id": c.teacher_id, "room_id": c.room_id, "kind": "regular",
                                     "status": "scheduled", "reason": "", "makeup_of": None,
                                     "hours": c.hours_per_lesson, "online": False, "auto_consumed": False,
                                     "created_at": now})
            batches.append(rows)

        def generate(i: int) -> tuple[float, float | None]:
            cpu = _cpu(runtime)
            started = time.perf_counter()
            with runtime.tenant_context(gen_tenant.id) as ctx:
                out = schedule.create_many(ctx, [{**spec(k), "class_id": c}
                                                 for k, c in enumerate(gen_classes[i:i + BATCH], start=i)])
                made.append(sum(x["lessons"] for x in out))
            return time.perf_counter() - started, _since(runtime, cpu)

        def bare_insert(n: int) -> tuple[float, float | None]:
            cpu = _cpu(runtime)
            started = time.perf_counter()
            with runtime.engine.begin() as conn:
                conn.execute(insert(bare), batches[n])
            return time.perf_counter() - started, _since(runtime, cpu)

        # Both sides start from the same state: the set-up's dirty pages already written (CHECKPOINT above;
        # a side would otherwise pay for writing them when it evicts them), and the set-up's and the
        # baseline's Python objects (tens of thousands of rows) frozen out of the garbage collector's way
        # (each full collection during the generation would otherwise walk the baseline's rows).
        checkpoints = _checkpoints(runtime)
        gc.collect()
        gc.freeze()
        log(f"generating the term, {BATCH} classes a transaction, alternating with the bare INSERT of the same")
        made: list[int] = []
        pairs: list[tuple[float, float]] = []
        cpu_pairs: list[tuple[float | None, float | None]] = []
        for n, i in enumerate(range(0, classes, BATCH)):
            # each side goes first in every other pair, so what the one before leaves behind (its WAL
            # still being written, the pages it dirtied) falls on both alike
            if n % 2 == 0:
                g, g_cpu = generate(i)
                b, b_cpu = bare_insert(n)
            else:
                b, b_cpu = bare_insert(n)
                g, g_cpu = generate(i)
            pairs.append((g, b))
            cpu_pairs.append((g_cpu, b_cpu))
            _analyze(runtime)
            log(f"batch {n + 1}: generated {g:.3f} s, bare {b:.3f} s ({g / b:.2f})"
                + (f"; CPU {g_cpu:.3f} s, {b_cpu:.3f} s" if g_cpu is not None and b_cpu is not None else ""))
        gc.unfreeze()
        generate_s = sum(g for g, _ in pairs)
        bare_s = sum(b for _, b in pairs)
        generate_cpu = sum(g or 0.0 for g, _ in cpu_pairs) if all(g is not None for g, _ in cpu_pairs) else None
        bare_cpu = sum(b or 0.0 for _, b in cpu_pairs) if all(b is not None for _, b in cpu_pairs) else None
        after = _checkpoints(runtime)
        forced = after - checkpoints if after is not None and checkpoints is not None else None
        rows = [r for batch in batches for r in batch]

        with runtime.tenant_context(gen_tenant.id) as ctx:
            lessons = ctx.session.scalar(select(func.count()).select_from(Lesson))
            busy = ctx.session.scalar(select(func.count()).select_from(Busy))
        if lessons != sum(made) or lessons != len(rows):
            raise AssertionError(f"generated {lessons} lessons ({sum(made)} reported), baseline {len(rows)}")
        runtime.engine.dispose()
    r = sorted(round(g / b, 2) for g, b in pairs)
    return result(
        "scheduling_generate" if kind == "postgresql" else f"scheduling_generate_{kind}", generate_s / bare_s, db=kind, classes=classes, weeks=WEEKS, lessons=lessons,
        students_per_class=students, busy_rows=busy, skipped_per_class=WEEKS - lessons // classes,
        generate_s=round(generate_s, 2), bare_insert_s=round(bare_s, 2),
        batch_ratios=f"{r[0]}-{statistics.median(r)}-{r[-1]}",
        **({"cpu_ratio": round(generate_cpu / bare_cpu, 3), "generate_cpu_s": round(generate_cpu, 2),
            "bare_cpu_s": round(bare_cpu, 2)} if generate_cpu and bare_cpu else {}),
        **({"checkpoints_during": forced} if forced is not None else {}),
        lessons_per_s=round(lessons / generate_s), peak_rss_mb=round(peak_rss_mb(), 1),
        **({"goal": GOAL} if kind == "postgresql" else {}),  # the goal is PostgreSQL's
    )


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__.split("\n", 1)[0], 40_000)
    parser.add_argument("--students", type=int, default=0, help="students enrolled in each class (default 0)")
    args = parser.parse_args(argv)
    for kind in kinds(args.db):
        measure(kind, args.rows, args.students)
    return 0


if __name__ == "__main__":
    sys.exit(main())
