"""Marshmallow schemas: the tenant's settings (and its K12 policy), and the API's input and output.

Hours and money are decimal strings (``"1.5"``, ``"4800.00"``): a JSON number
is refused, as a float may already have lost the digits. Times are ISO 8601
with an offset; a naive time is refused.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from pelago.plugin import MAX_LIMIT, LocalTime, MoneyString

from .models import ATTENDANCE, CLASS_KINDS, TRIAL_OUTCOMES

MAX_ID = 2**63 - 1
HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


def _id(**kw: Any) -> fields.Integer:
    return fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_ID), **kw)


def _qid(**kw: Any) -> fields.Integer:
    return fields.Integer(validate=validate.Range(min=1, max=MAX_ID), **kw)


def Hours(**kw: Any) -> MoneyString:  # noqa: N802 - a field factory
    """Class hours as a decimal string, 0.01 to 10,000."""
    return MoneyString(places=2, as_string=True, validate=validate.Range(min=Decimal("0.01"), max=Decimal("10000")), **kw)


def Amount(**kw: Any) -> MoneyString:  # noqa: N802
    return MoneyString(places=2, as_string=True, validate=validate.Range(min=Decimal("0"), max=Decimal("1e12")), **kw)


def _tz(value: str) -> None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError("not an IANA timezone (e.g. Asia/Shanghai)") from None


def _local_start(value: str) -> None:
    """A wall-clock time ``YYYY-MM-DDTHH:MM`` between 1900 and 2999 (no offset: the campus's time)."""
    from datetime import datetime

    try:
        at = datetime.strptime(value, "%Y-%m-%dT%H:%M")
    except ValueError:
        raise ValidationError("a local time YYYY-MM-DDTHH:MM (the campus's, no offset)") from None
    if not 1900 <= at.year <= 2999 or len(value) != 16:
        raise ValidationError("a local time YYYY-MM-DDTHH:MM between 1900 and 2999")


MONTH = r"^(19|2[0-9])[0-9]{2}-(0[1-9]|1[0-2])$"


class Policy(Schema):
    """Regulatory limits for K12 tutoring: off by default; when on, a violation is refused naming the rule."""

    enabled = fields.Boolean(load_default=False)
    max_prepaid_hours = Hours(load_default="60")
    max_prepaid_months = fields.Integer(strict=True, load_default=3, validate=validate.Range(min=1, max=120))
    online_max_minutes = fields.Integer(strict=True, load_default=30, validate=validate.Range(min=1, max=600))
    online_break_minutes = fields.Integer(strict=True, load_default=10, validate=validate.Range(min=0, max=600))
    latest_end = fields.String(load_default="21:00", validate=validate.Regexp(HHMM))
    no_subject_on_holidays = fields.Boolean(load_default=True)


class Settings(Schema):
    gift_first = fields.Boolean(load_default=True, metadata={"description": "consume gift hours before purchased ones"})
    leave_free_hours = fields.Integer(
        strict=True, load_default=24, validate=validate.Range(min=0, max=24 * 30),
        metadata={"description": "leave asked at least this many hours before the lesson is not charged"},
    )
    auto_consume = fields.Boolean(
        load_default=False,
        metadata={"description": "after a lesson ends, charge enrolled students with no roll-call as present"},
    )
    auto_consume_after_minutes = fields.Integer(strict=True, load_default=60, validate=validate.Range(min=0, max=10080))
    low_balance_hours = Hours(load_default="5")
    max_occurrences = fields.Integer(strict=True, load_default=200, validate=validate.Range(min=1, max=1000))
    policy = fields.Nested(Policy, load_default=lambda: Policy().load({}))


class PageArgs(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=MAX_LIMIT))
    cursor = fields.String(load_default=None, validate=validate.Length(max=200))


# --- catalogue ---------------------------------------------------------------------------

class CampusIn(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    timezone = fields.String(load_default="Asia/Shanghai", validate=[validate.Length(max=64), _tz])


class SchedCampus(CampusIn):
    id = fields.Integer()


class RoomIn(Schema):
    campus_id = _id(required=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    capacity = fields.Integer(strict=True, required=True, validate=validate.Range(min=1, max=10000))


class SchedRoom(RoomIn):
    id = fields.Integer()


class TeacherIn(Schema):
    user_id = _id(required=True)
    subjects = fields.String(load_default="", validate=validate.Length(max=200))
    active = fields.Boolean(load_default=True)


class SchedTeacher(TeacherIn):
    name = fields.String()


class CourseIn(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    subject = fields.Boolean(load_default=True, metadata={"description": "subject tutoring (学科类)"})


class SchedCourse(CourseIn):
    id = fields.Integer()


class PackageIn(Schema):
    course_id = _id(required=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    hours = Hours(required=True)
    gift_hours = MoneyString(places=2, as_string=True, load_default="0",
                             validate=validate.Range(min=Decimal("0"), max=Decimal("10000")))
    price = Amount(required=True)
    validity_days = fields.Integer(strict=True, required=True, validate=validate.Range(min=1, max=3650))


class SchedPackage(PackageIn):
    id = fields.Integer()
    product = fields.String(metadata={"description": "name a core deal's product this way to open an account"})


# --- accounts and the ledger -------------------------------------------------------------

class Purchase(Schema):
    lead_id = _id(required=True)
    package_id = _id(required=True)


class SchedEntry(Schema):
    id = fields.Integer()
    kind = fields.String()
    purchased_hours = fields.String()
    gift_hours = fields.String()
    amount = fields.String()
    attendance_id = fields.Integer(allow_none=True)
    lesson_id = fields.Integer(allow_none=True)
    refund_id = fields.Integer(allow_none=True)
    note = fields.String()
    at = LocalTime()


class SchedAccount(Schema):
    id = fields.Integer()
    lead_id = fields.Integer()
    package_id = fields.Integer()
    deal_id = fields.Integer(allow_none=True)
    status = fields.String()
    purchased_hours = fields.String()
    gift_hours = fields.String()
    consumed_purchased = fields.String()
    consumed_gift = fields.String()
    remaining_hours = fields.String()
    paid = fields.String()
    unit_price = fields.String()
    recognised = fields.String()
    refunded = fields.String()
    remaining_value = fields.String()
    opened_at = LocalTime()
    expires_at = LocalTime()
    closed_at = LocalTime(allow_none=True)
    ledger = fields.List(fields.Nested(SchedEntry))


class SchedAccountPage(Schema):
    items = fields.List(fields.Nested(SchedAccount))
    next_cursor = fields.String(allow_none=True)


class AccountArgs(PageArgs):
    lead_id = _qid(load_default=None)


class RefundIn(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class SchedRefundOut(Schema):
    account = fields.Nested(SchedAccount)
    amount = fields.String()
    refund_id = fields.Integer(allow_none=True)


# --- classes, series and lessons ------------------------------------------------------------

class ClassIn(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    kind = fields.String(required=True, validate=validate.OneOf(CLASS_KINDS))
    campus_id = _id(required=True)
    course_id = _id(required=True)
    teacher_id = _id(required=True, metadata={"description": "a teacher's user id"})
    room_id = _id(load_default=None, allow_none=True)
    capacity = fields.Integer(strict=True, required=True, validate=validate.Range(min=1, max=10000))
    online = fields.Boolean(load_default=False)
    hours_per_lesson = Hours(load_default="1")
    trial = fields.Boolean(load_default=False, metadata={"description": "a class for trial lessons"})

    @validates_schema
    def _one_on_one(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("kind") == "one_on_one" and data.get("capacity", 1) != 1:
            raise ValidationError("a one-on-one class has capacity 1", "capacity")


class SchedClass(ClassIn):
    id = fields.Integer()
    students = fields.List(fields.Integer())


class SchedClassPage(Schema):
    items = fields.List(fields.Nested(SchedClass))
    next_cursor = fields.String(allow_none=True)


class EnrolIn(Schema):
    lead_id = _id(required=True)
    account_id = _id(load_default=None, allow_none=True)


class TransferIn(Schema):
    lead_id = _id(required=True)
    to_class_id = _id(required=True)


class SeriesIn(Schema):
    class_id = _id(required=True)
    rrule = fields.String(required=True, validate=validate.Length(min=1, max=500),
                          metadata={"example": "FREQ=WEEKLY;BYDAY=SA;COUNT=20"})
    start = fields.String(required=True, validate=_local_start,
                          metadata={"description": "first occurrence, the campus's wall-clock time YYYY-MM-DDTHH:MM"})
    duration_minutes = fields.Integer(strict=True, required=True, validate=validate.Range(min=5, max=720))
    holidays = fields.String(load_default="skip", validate=validate.OneOf(("skip", "keep")))
    makeup_workdays = fields.String(load_default="skip", validate=validate.OneOf(("skip", "keep")),
                                    metadata={"description": "调休 days (weekend days worked): students are at school"})
    unknown_days = fields.String(load_default="refuse", validate=validate.OneOf(("refuse", "skip", "keep")),
                                 metadata={"description": "days of a year the holiday calendar does not know yet"})
    skip_dates = fields.List(fields.Date(), load_default=list, validate=validate.Length(max=366))


class SchedOccurrence(Schema):
    local_start = fields.String()
    starts_at = LocalTime()
    ends_at = LocalTime()
    day = fields.String()
    holiday = fields.String(allow_none=True)
    action = fields.String()
    reason = fields.String()
    conflicts = fields.List(fields.Dict())


class SchedPreview(Schema):
    occurrences = fields.List(fields.Nested(SchedOccurrence))
    kept = fields.Integer()
    skipped = fields.Integer()
    unknown_days = fields.Integer(metadata={"description": "occurrences on days the holiday calendar does not know"})


class SchedSeriesOut(Schema):
    id = fields.Integer()
    class_id = fields.Integer()
    rrule = fields.String()
    start = fields.String()
    duration_minutes = fields.Integer()
    timezone = fields.String()
    lessons = fields.Integer()
    skipped = fields.List(fields.Nested(SchedOccurrence))


class SchedLesson(Schema):
    id = fields.Integer()
    class_id = fields.Integer()
    series_id = fields.Integer(allow_none=True)
    recurrence_id = LocalTime(allow_none=True)
    starts_at = LocalTime()
    ends_at = LocalTime()
    teacher_id = fields.Integer()
    room_id = fields.Integer(allow_none=True)
    kind = fields.String()
    status = fields.String()
    reason = fields.String()
    makeup_of = fields.Integer(allow_none=True)
    hours = fields.String()
    online = fields.Boolean()
    students = fields.List(fields.Integer())
    makeups = fields.List(fields.Dict(), metadata={"description": "[{lead_id, missed_lesson_id}]: makeup seats"})


class SchedLessonPage(Schema):
    items = fields.List(fields.Nested(SchedLesson))
    next_cursor = fields.String(allow_none=True)


class LessonArgs(PageArgs):
    teacher_id = _qid(load_default=None)
    room_id = _qid(load_default=None)
    lead_id = _qid(load_default=None, metadata={"description": "a student's lessons"})
    campus_id = _qid(load_default=None)
    class_id = _qid(load_default=None)
    starts_from = LocalTime(load_default=None)
    starts_before = LocalTime(load_default=None)
    include_cancelled = fields.Boolean(load_default=False)


class LessonIn(Schema):
    class_id = _id(required=True)
    starts_at = LocalTime(required=True)
    ends_at = LocalTime(required=True)
    room_id = _id(load_default=None, allow_none=True)

    @validates_schema
    def _order(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("starts_at") and data.get("ends_at") and data["ends_at"] <= data["starts_at"]:
            raise ValidationError("must be after starts_at", "ends_at")


class LessonEdit(Schema):
    scope = fields.String(load_default="this", validate=validate.OneOf(("this", "following", "all")),
                          metadata={"description": "this lesson, this and the following of its series, or all future ones"})
    starts_at = LocalTime(load_default=None, metadata={"description": "new start of this lesson; the others move by as much"})
    duration_minutes = fields.Integer(strict=True, load_default=None, validate=validate.Range(min=5, max=720))
    teacher_id = _id(load_default=None)
    room_id = _id(load_default=None)
    reason = fields.String(load_default="", validate=validate.Length(max=500))


class CancelIn(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class SchedEditOut(Schema):
    lessons = fields.List(fields.Nested(SchedLesson))


# --- attendance, leave, makeups, trials --------------------------------------------------------

class Mark(Schema):
    lead_id = _id(required=True)
    status = fields.String(required=True, allow_none=True, validate=validate.OneOf(ATTENDANCE),
                           metadata={"description": "null undoes the roll-call"})


class RollCall(Schema):
    marks = fields.List(fields.Nested(Mark), required=True, validate=validate.Length(min=1, max=500))


class SchedAttendanceOut(Schema):
    id = fields.Integer()
    lesson_id = fields.Integer()
    lead_id = fields.Integer()
    status = fields.String(allow_none=True)
    charged = fields.Boolean()
    account_id = fields.Integer(allow_none=True)
    remaining_hours = fields.String(allow_none=True)


class SchedRollCallOut(Schema):
    items = fields.List(fields.Nested(SchedAttendanceOut))


class LeaveIn(Schema):
    lead_id = _id(required=True)
    note = fields.String(load_default="", validate=validate.Length(max=500))


class MakeupIn(Schema):
    lead_id = _id(required=True)
    missed_lesson_id = _id(required=True)
    lesson_id = _id(required=True, metadata={"description": "the lesson the student makes it up in"})


class TrialIn(Schema):
    lead_id = _id(required=True)
    lesson_id = _id(load_default=None, metadata={"description": "an existing lesson to sit in"})
    class_id = _id(load_default=None, metadata={"description": "or a trial class, with starts_at/ends_at"})
    starts_at = LocalTime(load_default=None)
    ends_at = LocalTime(load_default=None)

    @validates_schema
    def _where(self, data: dict[str, Any], **_: Any) -> None:
        if (data.get("lesson_id") is None) == (data.get("class_id") is None):
            raise ValidationError("give lesson_id, or class_id with starts_at and ends_at", "lesson_id")
        if data.get("class_id") is not None:
            if data.get("starts_at") is None or data.get("ends_at") is None:
                raise ValidationError("required with class_id", "starts_at")
            if data["ends_at"] <= data["starts_at"]:
                raise ValidationError("must be after starts_at", "ends_at")


class TrialOutcomeIn(Schema):
    outcome = fields.String(required=True, validate=validate.OneOf(TRIAL_OUTCOMES))
    package_id = _id(load_default=None, metadata={"description": "converted: sell this package (a core deal)"})
    note = fields.String(load_default="", validate=validate.Length(max=500))


class SchedTrial(Schema):
    id = fields.Integer()
    lesson_id = fields.Integer()
    lead_id = fields.Integer()
    source = fields.String(allow_none=True)
    outcome = fields.String(allow_none=True)
    deal_id = fields.Integer(allow_none=True)
    account_id = fields.Integer(allow_none=True)
    booked_at = LocalTime()
    decided_at = LocalTime(allow_none=True)


class SchedTrialPage(Schema):
    items = fields.List(fields.Nested(SchedTrial))
    next_cursor = fields.String(allow_none=True)


class SlotArgs(Schema):
    teacher_id = _qid(required=True)
    lead_id = _qid(load_default=None)
    room_id = _qid(load_default=None)
    campus_id = _qid(required=True)
    date_from = fields.Date(required=True)
    date_to = fields.Date(required=True)
    duration_minutes = fields.Integer(load_default=60, validate=validate.Range(min=5, max=720))
    day_start = fields.String(load_default="09:00", validate=validate.Regexp(HHMM))
    day_end = fields.String(load_default="21:00", validate=validate.Regexp(HHMM))
    step_minutes = fields.Integer(load_default=30, validate=validate.Range(min=5, max=240))
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=MAX_LIMIT))

    @validates_schema
    def _range(self, data: dict[str, Any], **_: Any) -> None:
        if data["date_to"] < data["date_from"]:
            raise ValidationError("must not be before date_from", "date_to")
        if (data["date_to"] - data["date_from"]).days > 62:
            raise ValidationError("at most 62 days", "date_to")
        if data["day_end"] <= data["day_start"]:
            raise ValidationError("must be after day_start", "day_end")


class SchedSlot(Schema):
    starts_at = LocalTime()
    ends_at = LocalTime()


class SchedSlotList(Schema):
    items = fields.List(fields.Nested(SchedSlot))


class MonthArgs(Schema):
    month_from = fields.String(required=True, validate=validate.Regexp(MONTH), metadata={"example": "2026-09"})
    month_to = fields.String(required=True, validate=validate.Regexp(MONTH), metadata={"example": "2026-12"})


class SchedMonthRow(Schema):
    month = fields.String()
    hours = fields.String()
    gift_hours = fields.String()
    recognised = fields.String()
    refunded = fields.String()
    expired = fields.String()


class SchedMonthReport(Schema):
    items = fields.List(fields.Nested(SchedMonthRow))


class SchedConversionRow(Schema):
    by = fields.String()
    key = fields.String(allow_none=True)
    trials = fields.Integer()
    decided = fields.Integer()
    converted = fields.Integer()
    rate = fields.String(allow_none=True)


class SchedConversionReport(Schema):
    items = fields.List(fields.Nested(SchedConversionRow))


class SchedFeedOut(Schema):
    id = fields.Integer()
    kind = fields.String()
    owner_id = fields.Integer()
    token = fields.String()
    path = fields.String()
