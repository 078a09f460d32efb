"""Scheduling's console pages (``/console/p/scheduling/``): a week timetable per teacher, room or class,
the roll-call of a lesson, and the students' class-hour accounts.

Built on the console's plugin page contract (docs/console.md, "Adding a
page"). Lessons are found with :func:`.schedule.list_lessons` (the API's
filters), the roll-call goes through :func:`.attendance.mark` (so the ledger
charges, reverses and refuses exactly as for the API) and accounts are shown
by :func:`.ledger.account_out`. Any user of the tenant may use them, as the
API allows; a student's name is shown only to those who may see the lead
(a rep her own), others see the number.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import request
from sqlalchemy import select

from pelago.plugin import (
    CONSOLE_PAGE,
    Conflict,
    InvalidInput,
    Lead,
    User,
    console_blueprint,
    console_form,
    console_redirect,
    console_refused,
    console_requires,
    console_text,
    current_context,
    paginate,
    render_page,
    visible_leads,
)

from . import api, attendance, booking, ledger, schedule
from . import schemas as s
from .models import ATTENDANCE, Account, Attendance, Campus, Klass, Lesson, Room, Teacher

pages = console_blueprint("scheduling", __name__)
PAGE = CONSOLE_PAGE
KINDS = ("teacher", "room", "class")


def _names(lead_ids: set[int]) -> dict[int, str]:
    """Names of the students the user may see (the core's rule); the others stay numbers."""
    if not lead_ids:
        return {}
    c = current_context()
    rows = c.session.execute(visible_leads(c).with_only_columns(Lead.id, Lead.name).where(Lead.id.in_(lead_ids)))
    return {i: name or f"#{i}" for i, name in rows}


def _choices() -> dict[str, list[tuple[int, str]]]:
    c = current_context()
    teachers = c.session.execute(
        select(Teacher.user_id, User.name, User.email).join(User, User.id == Teacher.user_id).order_by(User.name)
    ).all()
    return {
        "teacher": [(i, name or email) for i, name, email in teachers],
        "room": [(i, n) for i, n in c.session.execute(select(Room.id, Room.name).order_by(Room.name))],
        "class": [(i, n) for i, n in c.session.execute(select(Klass.id, Klass.name).order_by(Klass.name))],
    }


def _zone(kind: str, ident: int | None) -> ZoneInfo:
    """The week's clock: the campus's of a room or class, else the tenant's (a teacher may teach anywhere)."""
    c = current_context()
    campus_id = None
    if ident is not None and kind == "room":
        campus_id = c.session.scalar(select(Room.campus_id).where(Room.id == ident))
    elif ident is not None and kind == "class":
        campus_id = c.session.scalar(select(Klass.campus_id).where(Klass.id == ident))
    tz = c.session.scalar(select(Campus.timezone).where(Campus.id == campus_id)) if campus_id else None
    return ZoneInfo(tz) if tz else c.tenant.tz


@pages.get("/")
def week() -> Any:
    """One week (Monday to Sunday) of a teacher's, room's or class's lessons, with the previous and next weeks."""
    c = current_context()
    choices = _choices()
    kind = request.args.get("kind", "teacher")
    errors: dict[str, Any] = {}
    if kind not in KINDS:
        errors["kind"] = [console_text("Choose teacher, room or class.")]
        kind = "teacher"
    raw = request.args.get("id", "")
    ident = int(raw) if raw.isdigit() else (choices[kind][0][0] if choices[kind] else None)
    zone = _zone(kind, ident)
    try:
        day = date.fromisoformat(request.args["week"]) if request.args.get("week") else c.now().astimezone(zone).date()
    except ValueError:
        errors["week"] = [console_text("A date, YYYY-MM-DD.")]
        day = c.now().astimezone(zone).date()
    monday = day - timedelta(days=day.weekday())
    start = datetime.combine(monday, time(0), zone)
    days: list[tuple[date, list[dict[str, Any]]]] = [(monday + timedelta(days=i), []) for i in range(7)]
    if ident is not None:
        args = {f"{kind}_id": ident, "starts_from": start, "starts_before": datetime.combine(
            monday + timedelta(days=7), time(0), zone), "include_cancelled": True}
        rows = list(c.session.scalars(schedule.list_lessons(c, args).order_by(Lesson.starts_at)))
        students = booking.students_of(c, rows)
        classes = dict(c.session.execute(select(Klass.id, Klass.name).where(
            Klass.id.in_({r.class_id for r in rows}))).all()) if rows else {}
        rooms = dict(choices["room"])
        teachers = dict(choices["teacher"])
        for lesson in rows:
            local = lesson.starts_at.astimezone(zone)
            days[(local.date() - monday).days][1].append({
                "lesson": lesson, "starts": local.strftime("%H:%M"),
                "ends": lesson.ends_at.astimezone(zone).strftime("%H:%M"),
                "klass": classes.get(lesson.class_id, lesson.class_id), "room": rooms.get(lesson.room_id, ""),
                "teacher": teachers.get(lesson.teacher_id, lesson.teacher_id), "students": len(students[lesson.id]),
            })
    return render_page("scheduling/week.html", days=days, kind=kind, ident=ident, choices=choices, errors=errors,
                       monday=monday, previous=(monday - timedelta(days=7)).isoformat(),
                       following=(monday + timedelta(days=7)).isoformat(), zone=str(zone))


# -- roll-call ---------------------------------------------------------------------------------------------

@pages.get("/lessons/<int:lesson_id>")
def lesson_page(lesson_id: int, *, error: str | None = None, errors: dict[str, Any] | None = None,
                posted: dict[int, str] | None = None, status: int = 200) -> Any:
    """A lesson with its students and their roll-call marks, as a form."""
    c = current_context()
    lesson = schedule.get(c, Lesson, lesson_id, "lesson")
    members = booking.students_of(c, [lesson])[lesson.id]
    marks = dict(c.session.execute(select(Attendance.lead_id, Attendance.status)
                                   .where(Attendance.lesson_id == lesson.id)).all())
    zone = _zone("class", lesson.class_id)
    klass = c.session.scalar(select(Klass.name).where(Klass.id == lesson.class_id))
    return render_page("scheduling/lesson.html", lesson=lesson, klass=klass, students=members,
                       names=_names(set(members)), marks=marks, posted=posted or {}, statuses=ATTENDANCE,
                       starts=lesson.starts_at.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
                       ends=lesson.ends_at.astimezone(zone).strftime("%H:%M"), error=error,
                       errors=errors or {}), status


@pages.post("/lessons/<int:lesson_id>/attendance")
def roll_call(lesson_id: int) -> Any:
    """Post the marks that changed (an empty mark undoes one); the ledger charges or reverses accordingly."""
    c = current_context()
    lesson = schedule.get(c, Lesson, lesson_id, "lesson")
    current = dict(c.session.execute(select(Attendance.lead_id, Attendance.status)
                                     .where(Attendance.lesson_id == lesson.id)).all())
    posted: dict[int, str] = {}
    marks: list[dict[str, Any]] = []
    for key, value in request.form.items():
        if key.startswith("mark-") and key[5:].isdigit():
            lead_id = int(key[5:])
            posted[lead_id] = value
            if (value or None) != current.get(lead_id):
                marks.append({"lead_id": lead_id, "status": value or None})
    if not marks:
        return console_redirect(".lesson_page", console_text("Nothing changed."), lesson_id=lesson_id)
    data, errors = console_form(s.RollCall(), {"marks": marks})
    if not errors:
        try:
            attendance.mark(c, lesson_id, data["marks"])
        except (InvalidInput, Conflict) as exc:
            c.session.rollback()
            return lesson_page(lesson_id, error=exc.message, errors=_by_student(exc.errors, marks), posted=posted,
                               status=exc.status)
        return console_redirect(".lesson_page", console_text("Roll-call saved."), lesson_id=lesson_id)
    return lesson_page(lesson_id, error=console_refused()[0],
                       errors=_by_student(errors, marks), posted=posted, status=422)


def _by_student(errors: Any, marks: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"marks": {"0": {...}}}`` → ``{"mark-<lead>": [...]}``; other errors (the lesson's) stay as they are."""
    out: dict[str, Any] = {}
    for key, value in dict(errors or {}).items():
        if key == "marks" and isinstance(value, dict):
            for index, fields in value.items():
                if str(index).isdigit() and int(index) < len(marks):
                    texts = [m for v in (fields.values() if isinstance(fields, dict) else [fields]) for m in
                             (v if isinstance(v, list) else [v])]
                    out[f"mark-{marks[int(index)]['lead_id']}"] = [str(t) for t in texts]
        else:
            out[key] = value if isinstance(value, list) else [str(value)]
    return out


@pages.post("/lessons/<int:lesson_id>/cancel")
@console_requires("manager")
def lesson_cancel(lesson_id: int) -> Any:
    """Cancel a lesson with a reason (managers, as in the API): its teacher, room and students are free again."""
    c = current_context()
    data, errors = console_form(s.CancelIn())
    if errors:
        return lesson_page(lesson_id, error=console_refused()[0], errors=errors,
                           status=422)
    try:
        schedule.cancel(c, lesson_id, data["reason"])
    except Conflict as exc:
        c.session.rollback()
        return lesson_page(lesson_id, error=exc.message, status=exc.status)
    return console_redirect(".lesson_page", console_text("Lesson cancelled."), lesson_id=lesson_id)


# -- accounts ----------------------------------------------------------------------------------------------

@pages.get("/accounts")
def account_list() -> Any:
    """Students' class-hour accounts, newest first: purchased, gift, consumed, remaining hours, expiry."""
    c = current_context()
    args, errors = console_form(s.AccountArgs(), request.args)
    items: list[dict[str, Any]] = []
    next_cursor = None
    if not errors:
        q = select(Account)
        if args.get("lead_id"):
            q = q.where(Account.lead_id == args["lead_id"])
        try:
            page = paginate(c.session, q, Account.id, args.get("cursor"), PAGE)
        except InvalidInput as exc:
            errors = dict(exc.errors or {"cursor": [exc.message]})
        else:
            items, next_cursor = [ledger.account_out(a) for a in page.items], page.next_cursor
    return render_page("scheduling/accounts.html", items=items, next_cursor=next_cursor, errors=errors,
                       names=_names({a["lead_id"] for a in items}), lead_id=request.args.get("lead_id", ""))


@pages.get("/accounts/<int:account_id>")
def account_page(account_id: int) -> Any:
    """One account with its whole ledger, oldest line first."""
    out = api._account(current_context(), account_id)
    return render_page("scheduling/account.html", a=out, names=_names({out["lead_id"]}))


MESSAGES = {"zh-CN": {
    "Course scheduling (排课)": "排课",
    "Classes, recurring lessons, attendance and class-hour consumption.": "班级、循环排课、考勤与课时消耗。",
    "gift first": "先扣赠送课时",
    "consume gift hours before purchased ones": "先消耗赠送课时，再消耗购买课时",
    "leave free hours": "免扣请假提前小时数",
    "leave asked at least this many hours before the lesson is not charged": "课前至少提前这么多小时请假则不扣课时",
    "auto consume": "自动消课",
    "after a lesson ends, charge enrolled students with no roll-call as present": "课程结束后，未点名的在读学员按出勤扣课时",
    "auto consume after minutes": "下课后多少分钟自动消课",
    "low balance hours": "课时不足提醒阈值",
    "max occurrences": "最多排课次数",
    "policy": "规则",
    "enabled": "启用",
    "max prepaid hours": "最多预付课时",
    "max prepaid months": "最长预付月数",
    "online max minutes": "线上课最长分钟数",
    "online break minutes": "线上课间休息分钟数",
    "latest end": "最晚下课时间",
    "no subject on holidays": "节假日不上学科类课程",
    "attended": "已参加",
    "no_show": "未到",
    "converted": "已转化",
    "not_interested": "无意向",
    "trial": "试听",
    "lesson": "上课",
    "Trial lesson booked ({klass})": "已预约试听（{klass}）",
    "Trial attended ({klass})": "已参加试听（{klass}）",
    "Trial missed ({klass})": "试听未到（{klass}）",
    "Trial converted ({klass})": "试听已转化（{klass}）",
    "Trial: not interested ({klass})": "试听：无意向（{klass}）",
    "Present at a lesson ({klass})": "上课出勤（{klass}）",
    "Late for a lesson ({klass})": "上课迟到（{klass}）",
    "On leave from a lesson ({klass})": "上课请假（{klass}）",
    "Absent from a lesson ({klass})": "上课缺勤（{klass}）",
    "Timetable": "课表",
    "Roll-call": "点名",
    "Accounts": "课时账户",
    "Student accounts": "学员课时账户",
    "Teacher": "老师",
    "Room": "教室",
    "Class": "班级",
    "Show": "查看",
    "Week of {day}": "{day} 这一周",
    "Week": "周",
    "Previous week": "上一周",
    "Next week": "下一周",
    "Mon": "周一", "Tue": "周二", "Wed": "周三", "Thu": "周四", "Fri": "周五", "Sat": "周六", "Sun": "周日",
    "No lessons.": "没有课。",
    "cancelled": "已取消",
    "students": "名学员",
    "Choose teacher, room or class.": "请选择老师、教室或班级。",
    "A date, YYYY-MM-DD.": "日期，格式 YYYY-MM-DD。",
    "Lesson": "课次",
    "Student": "学员",
    "Mark": "考勤",
    "present": "出勤",
    "late": "迟到",
    "leave": "请假",
    "absent": "缺勤",
    "not marked": "未点名",
    "Save roll-call": "保存点名",
    "Roll-call saved.": "点名已保存。",
    "Nothing changed.": "没有改动。",
    "Cancel lesson": "取消课次",
    "Reason": "原因",
    "Lesson cancelled.": "课次已取消。",
    "Times in {zone}.": "时间为 {zone} 时区。",
    "Purchased": "购买课时",
    "Gift": "赠送课时",
    "Consumed": "已消耗",
    "Remaining": "剩余课时",
    "Expires": "到期",
    "Status": "状态",
    "open": "有效",
    "refunded": "已退费",
    "expired": "已过期",
    "Paid": "已付",
    "Recognised": "已确认收入",
    "Ledger": "流水",
    "Kind": "类型",
    "Hours": "课时",
    "Amount": "金额",
    "Note": "备注",
    "purchase": "购买",
    "consume": "消耗",
    "reversal": "冲回",
    "refund": "退费",
    "expire": "过期",
    "Filter": "筛选",
    "Date": "日期",
    "Lead": "线索",
}}
