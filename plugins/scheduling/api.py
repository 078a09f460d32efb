"""``/api/v1/scheduling``: catalogue, accounts and their ledger, classes, series, lessons, attendance, trials.

The host answers 404 (naming the plugin) for a tenant that has scheduling off,
and another tenant's ids are simply not found (404). Bad input is a 422 with
the fields named and nothing written; a clash with another lesson is a 409
whose ``errors.conflicts`` name it.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from pelago.plugin import (
    Blueprint,
    InvalidInput,
    Lead,
    NotFound,
    User,
    commit,
    current_context,
    paginate,
    requires,
    visible_leads,
)

from . import attendance, booking, feeds, ledger, reports, sales, schedule, trials
from . import schemas as s
from .models import Account, Campus, Course, Entry, Klass, Lesson, Package, Room, Teacher, Trial

blp = Blueprint("scheduling", __name__, description="K12 course scheduling (排课), attendance and class hours")


def _visible_lead(c: Any, lead_id: int) -> bool:
    """Whether the caller may see the lead (a rep only her own: the core's rule)."""
    return c.session.scalar(visible_leads(c).with_only_columns(Lead.id).where(Lead.id == lead_id)) is not None


def _own_lead(c: Any, lead_id: int, field: str = "lead_id", *, not_found: bool = False) -> None:
    """422 naming ``field`` (404 with ``not_found``) unless the caller may act on the lead (:func:`_visible_lead`).

    The same answer the route gives for a lead that does not exist or is
    another tenant's: a rep learns nothing of another rep's leads.
    """
    if not _visible_lead(c, lead_id):
        if not_found:
            raise NotFound(f"student {lead_id} not found")
        raise InvalidInput("unknown lead", {field: [f"no lead {lead_id} visible to you"]})


def _teaches(c: Any, lesson_id: int) -> bool:
    """Whether the caller is the lesson's teacher (she takes its roll-call, whoever owns its students)."""
    teacher = c.session.scalar(select(Lesson.teacher_id).where(Lesson.id == lesson_id))
    return c.actor is not None and teacher is not None and teacher == c.actor.user_id


def _only_visible(c: Any, q: Any, lead_col: Any) -> Any:
    """``q`` limited to rows of leads the caller may see (a rep: her own); unchanged for those who see all."""
    visible = visible_leads(c)
    if visible.whereclause is None:
        return q
    return q.where(lead_col.in_(visible.with_only_columns(Lead.id)))


def _page(c: Any, stmt: Any, col: Any, args: dict[str, Any], out: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    page = paginate(c.session, stmt, col, args.get("cursor"), args["limit"])
    return {"items": [out(r) for r in page.items], "next_cursor": page.next_cursor}


def _cols(row: Any, *names: str) -> dict[str, Any]:
    return {n: getattr(row, n) for n in names}


# --- catalogue -----------------------------------------------------------------------------------

def _campus(r: Campus) -> dict[str, Any]:
    return _cols(r, "id", "name", "timezone")


@blp.route("/campuses", methods=["GET"])
@blp.arguments(s.PageArgs, location="query")
@blp.response(200, s.SchedCampus(many=True))
def list_campuses(args: dict[str, Any]) -> Any:
    """List campuses.

    Any user of the tenant (rep or higher). Returns the first `limit` campuses (default 50, at most 200) by id, each
    with its IANA timezone, in which its lessons are planned; `cursor` is accepted but this list is not paged.
    """
    c = current_context()
    return [_campus(r) for r in c.session.scalars(select(Campus).order_by(Campus.id).limit(args["limit"]))]


@blp.route("/campuses", methods=["POST"])
@blp.arguments(s.CampusIn)
@blp.response(201, s.SchedCampus)
@requires("manager")
def create_campus(data: dict[str, Any]) -> Any:
    """Create a campus.

    Manager or higher. The timezone defaults to Asia/Shanghai; a name another campus has, or an unknown timezone, is
    a 422 naming the field, and nothing is written.
    """
    c = current_context()
    if c.session.scalar(select(Campus.id).where(Campus.name == data["name"])) is not None:
        raise InvalidInput("name taken", {"name": ["a campus has this name"]})
    row = Campus(created_at=c.now(), **data)
    c.session.add(row)
    c.session.flush()
    out = _campus(row)
    commit()
    return out


def _room(r: Room) -> dict[str, Any]:
    return _cols(r, "id", "campus_id", "name", "capacity")


@blp.route("/rooms", methods=["GET"])
@blp.arguments(s.PageArgs, location="query")
@blp.response(200, s.SchedRoom(many=True))
def list_rooms(args: dict[str, Any]) -> Any:
    """List rooms.

    Any user of the tenant (rep or higher). Returns the first `limit` rooms (default 50, at most 200) of every
    campus by id, with their seats; `cursor` is accepted but this list is not paged.
    """
    c = current_context()
    return [_room(r) for r in c.session.scalars(select(Room).order_by(Room.id).limit(args["limit"]))]


@blp.route("/rooms", methods=["POST"])
@blp.arguments(s.RoomIn)
@blp.response(201, s.SchedRoom)
@requires("manager")
def create_room(data: dict[str, Any]) -> Any:
    """Create a room of a campus.

    Manager or higher. An unknown `campus_id`, or a name another room of that campus has, is a 422 naming the field,
    and nothing is written. A room's capacity limits the lessons held in it.
    """
    c = current_context()
    schedule.get(c, Campus, data["campus_id"], "campus", field="campus_id")
    if c.session.scalar(select(Room.id).where(Room.campus_id == data["campus_id"], Room.name == data["name"])):
        raise InvalidInput("name taken", {"name": ["a room of this campus has this name"]})
    row = Room(**data)
    c.session.add(row)
    c.session.flush()
    out = _room(row)
    commit()
    return out


def _teacher(c: Any, rows: list[Teacher]) -> list[dict[str, Any]]:
    names = dict(c.session.execute(select(User.id, User.name).where(User.id.in_([r.user_id for r in rows]))).all())
    return [{"user_id": r.user_id, "subjects": r.subjects, "active": r.active, "name": names.get(r.user_id, "")}
            for r in rows]


@blp.route("/teachers", methods=["GET"])
@blp.arguments(s.PageArgs, location="query")
@blp.response(200, s.SchedTeacher(many=True))
def list_teachers(args: dict[str, Any]) -> Any:
    """List teachers.

    Any user of the tenant (rep or higher). Returns the first `limit` teachers (default 50, at most 200) by user id,
    with their name, subjects and whether they are active; `cursor` is accepted but this list is not paged.
    """
    c = current_context()
    return _teacher(c, list(c.session.scalars(select(Teacher).order_by(Teacher.user_id).limit(args["limit"]))))


@blp.route("/teachers", methods=["POST"])
@blp.arguments(s.TeacherIn)
@blp.response(201, s.SchedTeacher)
@requires("manager")
def add_teacher(data: dict[str, Any]) -> Any:
    """Flag a user of the tenant as a teacher (or change the flag).

    Manager or higher. A teacher is a core user of the tenant with a scheduling row of its own; posting an existing
    teacher updates its subjects and active flag. A user id not in the tenant is a 422 naming `user_id`.
    """
    c = current_context()
    out = _teacher(c, [schedule.add_teacher(c, data)])[0]
    commit()
    return out


def _course(r: Course) -> dict[str, Any]:
    return _cols(r, "id", "name", "subject")


@blp.route("/courses", methods=["GET"])
@blp.arguments(s.PageArgs, location="query")
@blp.response(200, s.SchedCourse(many=True))
def list_courses(args: dict[str, Any]) -> Any:
    """List courses.

    Any user of the tenant (rep or higher). Returns the first `limit` courses (default 50, at most 200) by id, with
    their subject; `cursor` is accepted but this list is not paged.
    """
    c = current_context()
    return [_course(r) for r in c.session.scalars(select(Course).order_by(Course.id).limit(args["limit"]))]


@blp.route("/courses", methods=["POST"])
@blp.arguments(s.CourseIn)
@blp.response(201, s.SchedCourse)
@requires("manager")
def create_course(data: dict[str, Any]) -> Any:
    """Create a course.

    Manager or higher. A name another course has is a 422 naming `name`, and nothing is written. The subject marks
    subject tutoring for the `no_subject_on_holidays` policy.
    """
    c = current_context()
    if c.session.scalar(select(Course.id).where(Course.name == data["name"])) is not None:
        raise InvalidInput("name taken", {"name": ["a course has this name"]})
    row = Course(**data)
    c.session.add(row)
    c.session.flush()
    out = _course(row)
    commit()
    return out


def _package(r: Package) -> dict[str, Any]:
    out = _cols(r, "id", "course_id", "name", "validity_days")
    out |= {"hours": str(r.hours), "gift_hours": str(r.gift_hours), "price": str(r.price),
            "product": sales.product_of(r)}
    return out


@blp.route("/packages", methods=["GET"])
@blp.arguments(s.PageArgs, location="query")
@blp.response(200, s.SchedPackage(many=True))
def list_packages(args: dict[str, Any]) -> Any:
    """List class-hour packages.

    Any user of the tenant (rep or higher). Returns the first `limit` packages (default 50, at most 200) by id:
    hours, gift hours and price as decimal strings, validity, and the `product` a CRM deal names to open an account
    for it; `cursor` is accepted but this list is not paged.
    """
    c = current_context()
    return [_package(r) for r in c.session.scalars(select(Package).order_by(Package.id).limit(args["limit"]))]


@blp.route("/packages", methods=["POST"])
@blp.arguments(s.PackageIn)
@blp.response(201, s.SchedPackage)
@requires("manager")
def create_package(data: dict[str, Any]) -> Any:
    """Create a class-hour package for a course.

    Manager or higher. Hours, gift hours and price are decimal strings (a JSON number is a 422); an unknown
    `course_id` or a name another package has is a 422 naming the field, and nothing is written.
    """
    c = current_context()
    schedule.get(c, Course, data["course_id"], "course", field="course_id")
    if c.session.scalar(select(Package.id).where(Package.name == data["name"])) is not None:
        raise InvalidInput("name taken", {"name": ["a package has this name"]})
    row = Package(course_id=data["course_id"], name=data["name"], hours=Decimal(data["hours"]),
                  gift_hours=Decimal(data["gift_hours"]), price=Decimal(data["price"]),
                  validity_days=data["validity_days"])
    c.session.add(row)
    c.session.flush()
    out = _package(row)
    commit()
    return out


# --- accounts --------------------------------------------------------------------------------------

def _account(c: Any, account_id: int) -> dict[str, Any]:
    row = schedule.get(c, Account, account_id, "account")
    if not _visible_lead(c, row.lead_id):  # another rep's student's account: as if it did not exist
        raise NotFound(f"account {account_id} not found")
    c.session.refresh(row)
    entries = list(c.session.scalars(select(Entry).where(Entry.account_id == account_id).order_by(Entry.id)))
    return ledger.account_out(row, entries)


@blp.route("/accounts", methods=["GET"])
@blp.arguments(s.AccountArgs, location="query")
@blp.response(200, s.SchedAccountPage)
def list_accounts(args: dict[str, Any]) -> Any:
    """List class-hour accounts.

    Any user of the tenant (rep or higher); a rep sees her own leads' accounts only. Paged by cursor (`limit` default 50, at most 200), newest account first;
    `lead_id` keeps one student's accounts. Each account shows its hours, money and status; its ledger lines are in
    `GET /accounts/{id}`.
    """
    c = current_context()
    q = _only_visible(c, select(Account), Account.lead_id)
    if args.get("lead_id"):
        q = q.where(Account.lead_id == args["lead_id"])
    return _page(c, q, Account.id, args, ledger.account_out)


@blp.route("/accounts", methods=["POST"])
@blp.arguments(s.Purchase)
@blp.response(201, s.SchedAccount)
@requires("rep")
def purchase(data: dict[str, Any]) -> Any:
    """Sell a package to a lead: a core deal (stage won, ``deal_won``) and the account it opens.

    Rep or higher; a rep sells only to her own leads (another's is a 422 like an unknown lead). Records a core deal for the package (the lead goes to stage won and `deal_won` is sent) and opens
    the student's account with its purchase line, in one transaction. An unknown lead or package, or a sale the
    tenant's K12 policy refuses (`errors.policy`), is a 422 and nothing is written.
    """
    c = current_context()
    _own_lead(c, data["lead_id"])
    _, account_id = sales.sell(c, data["lead_id"], data["package_id"])
    out = _account(c, account_id)
    commit()
    return out


@blp.route("/accounts/<int:account_id>", methods=["GET"])
@blp.response(200, s.SchedAccount)
def show_account(account_id: int) -> Any:
    """The account with its whole ledger, oldest line first.

    Any user of the tenant (rep or higher); another rep's student's account is a 404 for a rep. Purchased, gift and consumed hours, paid, recognised and refunded money,
    expiry and every ledger line (purchase, consume, reversal, refund, expire). Another tenant's id is a 404.
    """
    return _account(current_context(), account_id)


@blp.route("/accounts/<int:account_id>/refund", methods=["POST"])
@blp.arguments(s.RefundIn)
@blp.response(200, s.SchedRefundOut)
@requires("manager")
def refund_account(data: dict[str, Any], account_id: int) -> Any:
    """Refund the unconsumed purchased hours (a core refund of the deal) and close the account.

    Manager or higher. Unconsumed purchased hours are refunded at the unit price (gift hours are worth nothing) as a
    core refund of the original deal, so settlement claws back proportionally, and a refund ledger line is written.
    An account that is not open, e.g. refunded already, is a 409: nothing is refunded twice.
    """
    c = current_context()
    _account(c, account_id)  # 404 unless the caller may see it
    amount, refund_id = ledger.refund(c, account_id, data["reason"])
    out = {"account": _account(c, account_id), "amount": str(amount), "refund_id": refund_id}
    commit()
    return out


# --- classes -------------------------------------------------------------------------------------

def _class(c: Any, k: Klass) -> dict[str, Any]:
    out = _cols(k, "id", "name", "kind", "campus_id", "course_id", "teacher_id", "room_id", "capacity", "online",
                "trial")
    return out | {"hours_per_lesson": str(k.hours_per_lesson), "students": schedule.class_students(c, k.id)}


@blp.route("/classes", methods=["GET"])
@blp.arguments(s.PageArgs, location="query")
@blp.response(200, s.SchedClassPage)
def list_classes(args: dict[str, Any]) -> Any:
    """List classes.

    Any user of the tenant (rep or higher). Paged by cursor (`limit` default 50, at most 200), newest class first;
    each class with its teacher, room, capacity, hours per lesson and enrolled students.
    """
    c = current_context()
    return _page(c, select(Klass), Klass.id, args, lambda k: _class(c, k))


@blp.route("/classes", methods=["POST"])
@blp.arguments(s.ClassIn)
@blp.response(201, s.SchedClass)
@requires("manager")
def create_class(data: dict[str, Any]) -> Any:
    """Create a class.

    Manager or higher. A 1-on-1, small group or class with a course, an active teacher and, unless online, a room of
    its campus. A user who is not an active teacher, a room of another campus or a capacity over the room's seats is
    a 422 naming the field, and nothing is written.
    """
    c = current_context()
    out = _class(c, schedule.create_class(c, data))
    commit()
    return out


@blp.route("/classes/<int:class_id>", methods=["GET"])
@blp.response(200, s.SchedClass)
def show_class(class_id: int) -> Any:
    """Show a class.

    Any user of the tenant (rep or higher). The class with its teacher, room, capacity, hours per lesson and
    enrolled students; another tenant's id is a 404.
    """
    c = current_context()
    return _class(c, schedule.get(c, Klass, class_id, "class"))


@blp.route("/classes/<int:class_id>/students", methods=["POST"])
@blp.arguments(s.EnrolIn)
@blp.response(201, s.SchedClass)
@requires("manager")
def enrol(data: dict[str, Any], class_id: int) -> Any:
    """Enrol a student: busy in the class's future lessons (409 names a clash), within capacity.

    Manager or higher. The student is made busy in every future lesson of the class and consumes from the given
    account. A student already enrolled or a full class is a 409, as is a clash with another of the student's
    lessons (`errors.conflicts` names it); an account of another student is a 422. Nothing is written on an error.
    """
    c = current_context()
    _own_lead(c, data["lead_id"], not_found=True)
    schedule.enrol(c, class_id, data["lead_id"], data["account_id"])
    out = _class(c, schedule.get(c, Klass, class_id, "class"))
    commit()
    return out


@blp.route("/classes/<int:class_id>/transfer", methods=["POST"])
@blp.arguments(s.TransferIn)
@blp.response(200, s.SchedClass)
@requires("manager")
def transfer(data: dict[str, Any], class_id: int) -> Any:
    """Move a student to another class with the same account (one balance).

    Manager or higher. The student leaves this class's future lessons and joins those of `to_class_id`, keeping the
    same account. A student not in this class is a 404; a clash in the new class is a 409 naming it, and nothing is
    written.
    """
    c = current_context()
    _own_lead(c, data["lead_id"], not_found=True)
    schedule.transfer(c, class_id, data["lead_id"], data["to_class_id"])
    out = _class(c, schedule.get(c, Klass, data["to_class_id"], "class"))
    commit()
    return out


# --- series and lessons ----------------------------------------------------------------------------

@blp.route("/series/preview", methods=["POST"])
@blp.arguments(s.SeriesIn)
@blp.response(200, s.SchedPreview)
def preview_series(data: dict[str, Any]) -> Any:
    """What a series would be: each occurrence, its day (holiday, 调休, unknown …) and clashes; writes nothing.

    Any user of the tenant (rep or higher). Expands the RRULE in the campus's timezone and shows, for each
    occurrence, its day (workday, weekend, holiday, 调休 makeup workday or unknown), whether it would be kept or
    skipped, and the clashes it would have. An RRULE that never ends or exceeds `max_occurrences` is a 422 naming
    `rrule`.
    """
    return schedule.preview(current_context(), data["class_id"], data)


@blp.route("/series", methods=["POST"])
@blp.arguments(s.SeriesIn)
@blp.response(201, s.SchedSeriesOut)
@requires("manager")
def create_series(data: dict[str, Any]) -> Any:
    """Generate a class's lessons from a weekly rule, as one batch checked once (409 names a clash).

    Manager or higher. Days are skipped or refused as the preview shows (a year not yet announced is refused by
    default), and each lesson keeps its original start as `recurrence_id`. A clash is a 409 whose `errors.conflicts`
    names the other lesson; bad input or a policy refusal is a 422. Either way no lesson of the batch is written.
    """
    c = current_context()
    out = schedule.create_series(c, data)
    commit()
    return out


def _lessons(c: Any, rows: list[Lesson]) -> list[dict[str, Any]]:
    from .models import Participant

    students = booking.students_of(c, rows)
    makeups: dict[int, list[dict[str, int]]] = {}
    for lesson_id, lead_id, missed in c.session.execute(
        select(Participant.lesson_id, Participant.lead_id, Participant.makeup_of)
        .where(Participant.lesson_id.in_([x.id for x in rows]), Participant.role == "makeup")
    ):
        makeups.setdefault(lesson_id, []).append({"lead_id": lead_id, "missed_lesson_id": missed})
    return [schedule.lesson_out(x, students[x.id]) | {"makeups": makeups.get(x.id, [])} for x in rows]


@blp.route("/lessons", methods=["GET"])
@blp.arguments(s.LessonArgs, location="query")
@blp.response(200, s.SchedLessonPage)
def list_lessons(args: dict[str, Any]) -> Any:
    """Lessons by teacher, room, student, class, campus and start time; newest id first.

    Any user of the tenant (rep or higher); a rep filtering by another rep's lead gets no lessons. Filters: `teacher_id`, `room_id`, `lead_id` (a student's lessons),
    `class_id`, `campus_id`, `starts_from`/`starts_before`; cancelled lessons only with `include_cancelled`. Paged
    by cursor (`limit` default 50, at most 200); each lesson lists its students and makeups.
    """
    c = current_context()
    if args.get("lead_id") and not _visible_lead(c, args["lead_id"]):
        return {"items": [], "next_cursor": None}  # as for a lead with no lessons
    page = paginate(c.session, schedule.list_lessons(c, args), Lesson.id, args.get("cursor"), args["limit"])
    return {"items": _lessons(c, list(page.items)), "next_cursor": page.next_cursor}


@blp.route("/lessons", methods=["POST"])
@blp.arguments(s.LessonIn)
@blp.response(201, s.SchedLesson)
@requires("manager")
def create_lesson(data: dict[str, Any]) -> Any:
    """One lesson of a class (409 names the lesson it clashes with).

    Manager or higher. The lesson's teacher, room (unless online) and enrolled students are made busy over
    `[starts_at, ends_at)`. A clash is a 409 naming the other lesson; `ends_at` before `starts_at`, a time without
    its offset or a policy refusal is a 422. Nothing is written on an error.
    """
    c = current_context()
    out = _lessons(c, [schedule.create_lesson(c, data)])[0]
    commit()
    return out


@blp.route("/lessons/<int:lesson_id>", methods=["GET"])
@blp.response(200, s.SchedLesson)
def show_lesson(lesson_id: int) -> Any:
    """Show a lesson.

    Any user of the tenant (rep or higher). The lesson with its times, teacher, room, status, students and makeups;
    another tenant's id is a 404.
    """
    c = current_context()
    return _lessons(c, [schedule.get(c, Lesson, lesson_id, "lesson")])[0]


@blp.route("/lessons/<int:lesson_id>", methods=["PATCH"])
@blp.arguments(s.LessonEdit)
@blp.response(200, s.SchedEditOut)
@requires("manager")
def edit_lesson(data: dict[str, Any], lesson_id: int) -> Any:
    """Reschedule or re-staff this lesson, this and the following, or all future ones of its series.

    Manager or higher. `scope` is `this` (default), `following` or `all` future lessons: a new `starts_at` moves each
    by the same wall-clock shift, `duration_minutes` changes their length, and `teacher_id` and `room_id` re-staff
    them (a teacher change for `all` touches only lessons not yet started, so past attendance keeps its teacher). The
    edit is checked for clashes as one batch: a clash is a 409 naming the other lesson, as is a lesson that is not
    scheduled, and bad input is a 422; nothing is written then.
    """
    c = current_context()
    out = {"lessons": _lessons(c, schedule.edit(c, lesson_id, data))}
    commit()
    return out


@blp.route("/lessons/<int:lesson_id>/cancel", methods=["POST"])
@blp.arguments(s.CancelIn)
@blp.response(200, s.SchedLesson)
@requires("manager")
def cancel_lesson(data: dict[str, Any], lesson_id: int) -> Any:
    """Cancel a lesson with a reason: its teacher, room and students are free again.

    Manager or higher. The lesson's busy rows go, so the slot is free at once, and the reason is kept (it shows in
    the iCalendar feeds as a cancelled event). A lesson already cancelled is a 409.
    """
    c = current_context()
    out = _lessons(c, [schedule.cancel(c, lesson_id, data["reason"])])[0]
    commit()
    return out


@blp.route("/lessons/<int:lesson_id>/attendance", methods=["POST"])
@blp.arguments(s.RollCall)
@blp.response(200, s.SchedRollCallOut)
def roll_call(data: dict[str, Any], lesson_id: int) -> Any:
    """Take, change or undo (status null) the roll-call; charges and reversals follow in the ledger.

    Any user of the tenant (rep or higher): the lesson's teacher marks any of its students, another rep only her own leads (another's is a 422 naming the mark). Marks are `present`, `late`, `leave`, `absent` or null to undo. Present,
    late and absent are charged the class's hours per lesson, leave asked in time is not, and a trial seat never is;
    each charge writes one consume line to the ledger and each change or undo one reversal, so the same roll-call
    taken twice charges once. A student without enough hours makes it a 409 naming them, a student not in the lesson
    or a roll-call over an hour before the start a 422, and nothing is written then.
    """
    c = current_context()
    schedule.get(c, Lesson, lesson_id, "lesson")  # another tenant's lesson: 404 before anything about the marks
    if not _teaches(c, lesson_id):
        for k, m in enumerate(data["marks"]):
            if not _visible_lead(c, m["lead_id"]):
                raise InvalidInput("unknown lead", {"marks": {str(k): {"lead_id": [
                    f"no lead {m['lead_id']} visible to you (only the lesson's teacher marks any student)"]}}})
    out = {"items": attendance.mark(c, lesson_id, data["marks"])}
    commit()
    return out


@blp.route("/lessons/<int:lesson_id>/leave", methods=["POST"])
@blp.arguments(s.LeaveIn)
@blp.response(200, s.SchedAttendanceOut)
def ask_leave(data: dict[str, Any], lesson_id: int) -> Any:
    """A leave request; not charged when asked ``leave_free_hours`` ahead.

    Any user of the tenant (rep or higher); a rep only for her own leads (another's is a 422). Records the request now and marks the student `leave`; it is free when
    asked at least `leave_free_hours` (default 24) before the lesson, otherwise charged like an absence in the
    ledger. A lead who is not a student of the lesson is a 422.
    """
    c = current_context()
    schedule.get(c, Lesson, lesson_id, "lesson")  # another tenant's lesson: 404 before the lead's 422
    _own_lead(c, data["lead_id"])
    out = attendance.ask_leave(c, lesson_id, data["lead_id"])
    commit()
    return out


@blp.route("/makeups", methods=["POST"])
@blp.arguments(s.MakeupIn)
@blp.response(201, s.SchedLesson)
@requires("manager")
def book_makeup(data: dict[str, Any]) -> Any:
    """Put a student who missed a lesson into another one (linked to the missed one).

    Manager or higher. The student becomes busy in the target lesson as a makeup participant linked to the missed
    lesson. A student not in the missed lesson is a 422; a target lesson not scheduled, already holding the student,
    or clashing with another of the student's lessons is a 409. Nothing is written on an error.
    """
    c = current_context()
    _own_lead(c, data["lead_id"])
    attendance.makeup(c, data["lead_id"], data["missed_lesson_id"], data["lesson_id"])
    out = _lessons(c, [schedule.get(c, Lesson, data["lesson_id"], "lesson")])[0]
    commit()
    return out


@blp.route("/free-slots", methods=["GET"])
@blp.arguments(s.SlotArgs, location="query")
@blp.response(200, s.SchedSlotList)
def free_slots(args: dict[str, Any]) -> Any:
    """Starts when the teacher, the student and the room are all free (for makeups and trials).

    Any user of the tenant (rep or higher); a rep names only her own leads as `lead_id` (another's is a 422). Required: `teacher_id`, `campus_id`, `date_from`, `date_to`; optional
    `lead_id` and `room_id`. Suggests starts every `step_minutes` within `day_start`–`day_end` (campus time) where a
    lesson of `duration_minutes` clashes with none of them, up to `limit` (default 20). Writes nothing.
    """
    c = current_context()
    if args.get("lead_id"):
        _own_lead(c, args["lead_id"])
    return {"items": schedule.free_slots(c, args)}


# --- trials ----------------------------------------------------------------------------------------

@blp.route("/trials", methods=["GET"])
@blp.arguments(s.PageArgs, location="query")
@blp.response(200, s.SchedTrialPage)
def list_trials(args: dict[str, Any]) -> Any:
    """List trial lessons.

    Any user of the tenant (rep or higher); a rep sees her own leads' trials only. Paged by cursor (`limit` default 50, at most 200), newest trial first;
    each trial with its lead, lesson and outcome.
    """
    c = current_context()
    return _page(c, _only_visible(c, select(Trial), Trial.lead_id), Trial.id, args, trials.trial_out)


@blp.route("/trials", methods=["POST"])
@blp.arguments(s.TrialIn)
@blp.response(201, s.SchedTrial)
def book_trial(data: dict[str, Any]) -> Any:
    """A trial lesson for a lead: a seat in a lesson, or a new lesson of a trial class.

    Any user of the tenant (rep or higher); a rep books only her own leads (another's is a 422 like an unknown lead). With `lesson_id` the lead takes a seat in an existing lesson; with
    `class_id`, `starts_at` and `ends_at` a new lesson of a trial class is made. The lead becomes a student, busy in
    that lesson, and gets a "trial lesson booked" activity. An unknown lead is a 422; a full or cancelled lesson, a
    lead already in it, or a clash is a 409, and nothing is written.
    """
    c = current_context()
    _own_lead(c, data["lead_id"])
    out = trials.trial_out(trials.book(c, data))
    commit()
    return out


@blp.route("/trials/<int:trial_id>/outcome", methods=["POST"])
@blp.arguments(s.TrialOutcomeIn)
@blp.response(200, s.SchedTrial)
def decide_trial(data: dict[str, Any], trial_id: int) -> Any:
    """The outcome: written to the lead's history and stage; ``converted`` sells a package (a deal).

    Any user of the tenant (rep or higher): the lead's rep or the lesson's teacher; for another rep the trial is a 404. `attended`, `no_show`, `not_interested` or `converted` writes an
    automatic activity and a stage change to the lead through the core; `converted` with `package_id` records a core
    deal for the package, which opens the account. A trial that already has an outcome is a 409.
    """
    c = current_context()
    trial = schedule.get(c, Trial, trial_id, "trial")
    if not _visible_lead(c, trial.lead_id) and not _teaches(c, trial.lesson_id):
        raise NotFound(f"trial {trial_id} not found")
    out = trials.decide(c, trial_id, data["outcome"], data["package_id"], data["note"])
    commit()
    return out


# --- reports and feeds -----------------------------------------------------------------------------

@blp.route("/reports/consumption", methods=["GET"])
@blp.arguments(s.MonthArgs, location="query")
@blp.response(200, s.SchedMonthReport)
def consumption_report(args: dict[str, Any]) -> Any:
    """Hours consumed and revenue recognised, refunded and expired per month (the tenant's timezone).

    Any user of the tenant (rep or higher). One row per month from `month_from` to `month_to` (`YYYY-MM`, both
    required): hours and gift hours consumed, and money recognised, refunded and expired, in the tenant's timezone.
    Read-only.
    """
    c = current_context()
    return {"items": reports.months(c, args["month_from"], args["month_to"])}


@blp.route("/reports/trials", methods=["GET"])
@blp.response(200, s.SchedConversionReport)
def trial_report() -> Any:
    """Trial-to-deal conversion by teacher, course and lead source.

    Any user of the tenant (rep or higher). Trials booked, decided and converted, and the conversion rate, per
    teacher, course and lead source. Read-only.
    """
    return {"items": trials.conversion(current_context())}


@blp.route("/teachers/<int:user_id>/feed", methods=["POST"])
@blp.response(201, s.SchedFeedOut)
@requires("manager")
def teacher_feed(user_id: int) -> Any:
    """A new iCalendar feed token for a teacher (shown once).

    Manager or higher. Returns the token and the feed's path `/api/v1/scheduling/feeds/{token}.ics`; only the
    token's SHA-256 is stored, so it cannot be shown again. A user who is not a teacher is a 404. Each call makes
    another token; revoke old ones with `DELETE /feeds/{id}`.
    """
    c = current_context()
    schedule.get(c, Teacher, user_id, "teacher")
    out = feeds.issue(c, "teacher", user_id)
    commit()
    return out


@blp.route("/students/<int:lead_id>/feed", methods=["POST"])
@blp.response(201, s.SchedFeedOut)
@requires("rep")
def student_feed(lead_id: int) -> Any:
    """A new iCalendar feed token for a student (shown once).

    Rep or higher. Returns the token and the feed's path `/api/v1/scheduling/feeds/{token}.ics`; only the token's
    SHA-256 is stored, so it cannot be shown again. A lead who is not a student (no sale, enrolment or trial yet) is
    a 404. Each call makes another token; revoke old ones with `DELETE /feeds/{id}`.
    """
    c = current_context()
    from .models import Student

    if c.session.get(Student, lead_id) is None or not _visible_lead(c, lead_id):
        raise NotFound(f"student {lead_id} not found")
    out = feeds.issue(c, "student", lead_id)
    commit()
    return out


@blp.route("/feeds/<int:feed_id>", methods=["DELETE"])
@blp.response(204)
@requires("manager")
def revoke_feed(feed_id: int) -> Any:
    """Revoke a feed token: its URL answers 404 from now on.

    Manager or higher. Marks the token revoked; calendar apps polling its URL get 404 from then on. An unknown or
    already revoked feed is a 404.
    """
    c = current_context()
    feeds.revoke(c, feed_id)
    commit()
    return ""


feeds.route(blp)

