"""The scheduling tables: catalogue, classes and lessons, the busy-resource table, attendance and the ledger.

Every table is the tenant's (``TenantScoped``: its primary key starts with
``tenant_id``). Foreign keys onto tenant tables, the plugin's own and the
core's leads and deals, carry ``tenant_id`` (``(tenant_id, x_id) ->
(tenant_id, id)``), so a row can never point at another tenant's row even
through a hand-written statement; keys onto core users (a reference table)
are single-column. No core table is altered: a teacher is a core user with
a row here, a student a core lead with a row here.

Hours are kept with the ``Money`` column type: an exact two-place decimal
(``NUMERIC(18, 2)`` on PostgreSQL, integer hundredths on SQLite), so hour
arithmetic inside SQL is exact on both databases.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from pelago.plugin import Base, BigId, Money, TenantScoped, tenant_key

#: lesson participants' attendance states; leave is not charged when asked early enough
ATTENDANCE = ("present", "late", "leave", "absent")
CLASS_KINDS = ("one_on_one", "small_group", "class")
LESSON_KINDS = ("regular", "trial", "makeup")
TRIAL_OUTCOMES = ("attended", "no_show", "converted", "not_interested")
ENTRY_KINDS = ("purchase", "consume", "reversal", "refund", "expire")


def _own(cols: list[str], table: str, ondelete: str | None = "CASCADE") -> ForeignKeyConstraint:
    """A key onto one of this plugin's tables, through ``(tenant_id, id)`` (students, teachers: their core id)."""
    key = {"scheduling_student": "lead_id", "scheduling_teacher": "user_id"}.get(table, "id")
    return ForeignKeyConstraint(["tenant_id", *cols], [f"{table}.tenant_id", f"{table}.{key}"], ondelete=ondelete)


class Campus(TenantScoped, Base):
    """A campus (校区): lessons there are planned in its timezone."""

    __tablename__ = "scheduling_campus"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    timezone: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class Room(TenantScoped, Base):
    """A room of a campus, with the number of seats."""

    __tablename__ = "scheduling_room"
    __table_args__ = (UniqueConstraint("tenant_id", "campus_id", "name"),
        _own(["campus_id"], "scheduling_campus"),
        CheckConstraint("capacity > 0", name="capacity"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campus_id: Mapped[int] = mapped_column(BigId)
    name: Mapped[str] = mapped_column(String(100))
    capacity: Mapped[int] = mapped_column(Integer)


class Teacher(TenantScoped, Base):
    """A core user who teaches (the teacher flag lives here, not on ``core_user``)."""

    __tablename__ = "scheduling_teacher"

    user_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("core_user.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    subjects: Mapped[str] = mapped_column(String(200), default="")


class Course(TenantScoped, Base):
    """What is taught. ``subject``: subject tutoring (学科类), which the K12 policy restricts."""

    __tablename__ = "scheduling_course"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    subject: Mapped[bool] = mapped_column(Boolean, default=True)


class Package(TenantScoped, Base):
    """A class-hour package (课时包): hours, gift hours, price, validity; sold as a core deal."""

    __tablename__ = "scheduling_package"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),
        _own(["course_id"], "scheduling_course"),
        CheckConstraint("hours > 0 AND gift_hours >= 0 AND price >= 0 AND validity_days > 0", name="amounts"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    course_id: Mapped[int] = mapped_column(BigId)
    name: Mapped[str] = mapped_column(String(100))
    hours: Mapped[Decimal] = mapped_column(Money)
    gift_hours: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    price: Mapped[Decimal] = mapped_column(Money)
    validity_days: Mapped[int] = mapped_column(Integer)


class Student(TenantScoped, Base):
    """A core lead (or customer) who takes lessons."""

    __tablename__ = "scheduling_student"
    __table_args__ = (tenant_key(["lead_id"], "core_lead", ondelete="CASCADE"),)

    lead_id: Mapped[int] = mapped_column(
        BigId, primary_key=True, autoincrement=False
    )
    created_at: Mapped[datetime]


class Account(TenantScoped, Base):
    """A student's class hours from one purchase (one core deal): the balance and its value.

    ``consumed_*`` only change through conditional updates that keep them
    within ``purchased_hours``/``gift_hours`` (and the CHECK holds it too), so
    a balance never goes negative. ``recognised`` is the revenue recognised so
    far: ``paid × consumed_purchased / purchased_hours`` rounded to the cent,
    the rounding residue landing on the last hour. ``unit_price`` is shown;
    the arithmetic uses ``paid`` and the hours.
    """

    __tablename__ = "scheduling_account"
    __table_args__ = (
        tenant_key(["deal_id"], "core_deal", ondelete="SET NULL"),
        _own(["lead_id"], "scheduling_student"),  # (tenant_id, lead_id) → scheduling_student
        _own(["package_id"], "scheduling_package", ondelete=None),
        Index("uq_scheduling_account_deal", "tenant_id", "deal_id", unique=True,
              postgresql_where=text("deal_id IS NOT NULL"), sqlite_where=text("deal_id IS NOT NULL")),
        Index("ix_scheduling_account_lead", "tenant_id", "lead_id", "id"),
        CheckConstraint(
            "consumed_purchased >= 0 AND consumed_gift >= 0 AND consumed_purchased <= purchased_hours"
            " AND consumed_gift <= gift_hours AND recognised >= 0 AND refunded >= 0"
            " AND recognised + refunded <= paid",
            name="balance",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lead_id: Mapped[int] = mapped_column(BigId)
    package_id: Mapped[int] = mapped_column(BigId)
    deal_id: Mapped[int | None] = mapped_column(BigId)
    purchased_hours: Mapped[Decimal] = mapped_column(Money)
    gift_hours: Mapped[Decimal] = mapped_column(Money)
    consumed_purchased: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    consumed_gift: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    paid: Mapped[Decimal] = mapped_column(Money)
    unit_price: Mapped[Decimal] = mapped_column(Money)
    recognised: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    refunded: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    status: Mapped[str] = mapped_column(String(16), default="open")  # open, refunded, expired
    opened_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]


class Klass(TenantScoped, Base):
    """A class (班级): one-on-one, small group or class, with its teacher, room and capacity."""

    __tablename__ = "scheduling_class"
    __table_args__ = (
        _own(["campus_id"], "scheduling_campus", ondelete=None),
        _own(["course_id"], "scheduling_course", ondelete=None),
        _own(["teacher_id"], "scheduling_teacher", ondelete=None),
        _own(["room_id"], "scheduling_room", ondelete=None),
        CheckConstraint("capacity > 0 AND hours_per_lesson > 0", name="sizes"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    campus_id: Mapped[int] = mapped_column(BigId)
    course_id: Mapped[int] = mapped_column(BigId)
    teacher_id: Mapped[int] = mapped_column(BigId)  # a scheduling_teacher's user_id
    room_id: Mapped[int | None] = mapped_column(BigId)
    capacity: Mapped[int] = mapped_column(Integer)
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    hours_per_lesson: Mapped[Decimal] = mapped_column(Money, default=Decimal("1"))
    trial: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]


class Enrolment(TenantScoped, Base):
    """A student in a class, consuming hours from ``account_id`` (kept when moved to another class)."""

    __tablename__ = "scheduling_enrolment"
    __table_args__ = (
        _own(["class_id"], "scheduling_class"),
        _own(["lead_id"], "scheduling_student"),
        _own(["account_id"], "scheduling_account", ondelete=None),
        Index("ix_scheduling_enrolment_lead", "tenant_id", "lead_id"),
    )

    class_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    lead_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    account_id: Mapped[int | None] = mapped_column(BigId)
    enrolled_at: Mapped[datetime]


class Series(TenantScoped, Base):
    """A weekly rule (RRULE) of a class, expanded in the campus's local time.

    ``start_local`` is the first occurrence's wall-clock time (``YYYY-MM-DDTHH:MM``)
    in ``timezone``: occurrences keep that wall-clock time whatever the UTC
    offset does.
    """

    __tablename__ = "scheduling_series"
    __table_args__ = (_own(["class_id"], "scheduling_class"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    class_id: Mapped[int] = mapped_column(BigId)
    rrule: Mapped[str] = mapped_column(String(500))
    start_local: Mapped[str] = mapped_column(String(16))
    duration_minutes: Mapped[int] = mapped_column(Integer)
    timezone: Mapped[str] = mapped_column(String(64))
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]


class Lesson(TenantScoped, Base):
    """One lesson on [starts_at, ends_at). ``recurrence_id``: its series' original start (iCalendar's).

    A scheduled lesson takes its teacher and (unless online) its room: on
    PostgreSQL the exclusion constraints ``scheduling_lesson_teacher_free``
    and ``scheduling_lesson_room_free`` (migration ``scheduling_0003``)
    refuse two overlapping scheduled lessons of one teacher or one room, so a
    double booking cannot be committed whatever the concurrency; their GiST
    indexes also find a teacher's or a room's lessons over a period. On
    SQLite :mod:`.booking` checks in the writing transaction.
    """

    __tablename__ = "scheduling_lesson"
    __table_args__ = (
        UniqueConstraint("tenant_id", "series_id", "recurrence_id"),
        _own(["class_id"], "scheduling_class"),
        _own(["series_id"], "scheduling_series", ondelete=None),
        _own(["teacher_id"], "scheduling_teacher", ondelete=None),
        _own(["room_id"], "scheduling_room", ondelete=None),
        _own(["makeup_of"], "scheduling_lesson", ondelete=None),
        Index("ix_scheduling_lesson_class", "tenant_id", "class_id", "starts_at"),
        Index("ix_scheduling_lesson_time", "tenant_id", "starts_at"),
        CheckConstraint("ends_at > starts_at", name="interval"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    class_id: Mapped[int] = mapped_column(BigId)
    series_id: Mapped[int | None] = mapped_column(BigId)
    recurrence_id: Mapped[datetime | None]
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    teacher_id: Mapped[int] = mapped_column(BigId)
    room_id: Mapped[int | None] = mapped_column(BigId)
    kind: Mapped[str] = mapped_column(String(16), default="regular")
    status: Mapped[str] = mapped_column(String(16), default="scheduled")  # scheduled, cancelled
    reason: Mapped[str] = mapped_column(String(500), default="")
    makeup_of: Mapped[int | None] = mapped_column(BigId)
    hours: Mapped[Decimal] = mapped_column(Money)
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    auto_consumed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]


class Participant(TenantScoped, Base):
    """A student in one lesson beyond its class's enrolment: a trial, or a makeup of ``makeup_of`` (the missed one)."""

    __tablename__ = "scheduling_participant"
    __table_args__ = (
        _own(["lesson_id"], "scheduling_lesson"),
        _own(["lead_id"], "scheduling_student"),
        ForeignKeyConstraint(["tenant_id", "makeup_of"], ["scheduling_lesson.tenant_id", "scheduling_lesson.id"],
                             name="fk_scheduling_participant_makeup_of"),
        Index("ix_scheduling_participant_lead", "tenant_id", "lead_id"),
    )

    lesson_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    lead_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    role: Mapped[str] = mapped_column(String(16))  # trial, makeup
    makeup_of: Mapped[int | None] = mapped_column(BigId)


class Busy(TenantScoped, Base):
    """A student taken by a lesson over [starts_at, ends_at) (``resource`` is ``student``).

    One row per (lesson, student) of a scheduled lesson; a cancelled lesson
    has none. Teachers and rooms are held by the lesson row itself (see
    :class:`Lesson`); a lesson has one of each but many students, so these
    need rows of their own. On PostgreSQL an exclusion constraint (btree_gist) refuses two
    overlapping rows of one resource, so a double booking cannot be committed
    whatever the concurrency; on SQLite :mod:`.booking` checks in the writing
    transaction (SQLite has one writer at a time).
    """

    __tablename__ = "scheduling_busy"
    __table_args__ = (
        _own(["lesson_id"], "scheduling_lesson"),
        Index("ix_scheduling_busy_resource", "tenant_id", "resource", "resource_id", "starts_at"),
        CheckConstraint("ends_at > starts_at", name="interval"),
    )

    lesson_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    resource: Mapped[str] = mapped_column(String(8), primary_key=True)  # student (teacher, room: before 0003)
    resource_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]


class Attendance(TenantScoped, Base):
    """Roll-call of one student at one lesson. ``generation`` grows each time its charge is reversed."""

    __tablename__ = "scheduling_attendance"
    __table_args__ = (
        UniqueConstraint("tenant_id", "lesson_id", "lead_id"),
        _own(["lesson_id"], "scheduling_lesson"),
        _own(["lead_id"], "scheduling_student"),
        Index("ix_scheduling_attendance_lead", "tenant_id", "lead_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lesson_id: Mapped[int] = mapped_column(BigId)
    lead_id: Mapped[int] = mapped_column(BigId)
    status: Mapped[str | None] = mapped_column(String(16))  # None: undone
    charged: Mapped[bool] = mapped_column(Boolean, default=False)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    leave_asked_at: Mapped[datetime | None]
    marked_by: Mapped[int | None] = mapped_column(BigId)
    marked_at: Mapped[datetime]


class Entry(TenantScoped, Base):
    """One line of an account's ledger (append-only). Hours and amounts are signed.

    ``consume`` and ``reversal`` lines of an attendance record are unique per
    ``(attendance_id, generation)``: one consumption per roll-call, and a
    changed or undone roll-call writes one reversal of it. A reversal names
    the line it reverses (``reverses_id``, unique): nothing is reversed twice.
    """

    __tablename__ = "scheduling_entry"
    __table_args__ = (
        _own(["account_id"], "scheduling_account"),
        _own(["attendance_id"], "scheduling_attendance", ondelete=None),
        _own(["lesson_id"], "scheduling_lesson", ondelete=None),
        Index("uq_scheduling_entry_charge", "tenant_id", "attendance_id", "generation", "kind", unique=True,
              postgresql_where=text("attendance_id IS NOT NULL"), sqlite_where=text("attendance_id IS NOT NULL")),
        _own(["reverses_id"], "scheduling_entry", ondelete=None),
        Index("uq_scheduling_entry_reversal", "tenant_id", "reverses_id", unique=True,
              postgresql_where=text("reverses_id IS NOT NULL"), sqlite_where=text("reverses_id IS NOT NULL")),
        Index("uq_scheduling_entry_once", "tenant_id", "account_id", "kind", unique=True,
              postgresql_where=text("kind IN ('purchase', 'refund', 'expire')"),
              sqlite_where=text("kind IN ('purchase', 'refund', 'expire')")),
        Index("ix_scheduling_entry_account", "tenant_id", "account_id", "id"),
        Index("ix_scheduling_entry_month", "tenant_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(BigId)
    kind: Mapped[str] = mapped_column(String(16))
    purchased_hours: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    gift_hours: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    amount: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    attendance_id: Mapped[int | None] = mapped_column(BigId)
    generation: Mapped[int | None] = mapped_column(Integer)
    lesson_id: Mapped[int | None] = mapped_column(BigId)
    refund_id: Mapped[int | None] = mapped_column(BigId)
    reverses_id: Mapped[int | None] = mapped_column(BigId)
    note: Mapped[str] = mapped_column(String(500), default="")
    at: Mapped[datetime]


class Trial(TenantScoped, Base):
    """A trial lesson (试听) booked for a lead, and its outcome."""

    __tablename__ = "scheduling_trial"
    __table_args__ = (
        UniqueConstraint("tenant_id", "lesson_id", "lead_id"),
        _own(["lesson_id"], "scheduling_lesson"),
        _own(["lead_id"], "scheduling_student"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lesson_id: Mapped[int] = mapped_column(BigId)
    lead_id: Mapped[int] = mapped_column(BigId)
    source: Mapped[str | None] = mapped_column(String(100))
    outcome: Mapped[str | None] = mapped_column(String(16))
    deal_id: Mapped[int | None] = mapped_column(BigId)
    booked_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]


class FeedToken(TenantScoped, Base):
    """A revocable token for the read-only iCalendar feed of a teacher or a student.

    Only the SHA-256 of the token is kept; the feed URL carries the token.
    """

    __tablename__ = "scheduling_feed_token"
    __tenant_reference__ = "the feed URL carries only the token: its row is found by the token's hash, before the tenant"
    __table_args__ = (UniqueConstraint("token_hash"), Index("ix_scheduling_feed_owner", "tenant_id", "kind", "owner_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # teacher, student
    owner_id: Mapped[int] = mapped_column(BigId)
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
