"""teacher and room conflicts on the lesson table: two exclusion constraints instead of two busy rows per lesson

A scheduled lesson used to take its teacher and its room through one
``scheduling_busy`` row each, checked by that table's exclusion constraint.
The lesson row already carries the teacher, the room and the interval, so on
PostgreSQL the lesson table now refuses the overlaps itself:

- ``scheduling_lesson_teacher_free``: no two scheduled lessons of one teacher
  overlap;
- ``scheduling_lesson_room_free``: no two scheduled, not online lessons in one
  room overlap.

Each is ``EXCLUDE USING gist (scheduling_span(x_id, starts_at, ends_at)
WITH &&, tenant_id WITH =) WHERE (status = 'scheduled' …)``. The function
``scheduling_span`` maps a resource's half-open interval ``[start, end)`` to
a box: x from the start to the end less one microsecond (microseconds since
2000-01-01), y from the resource's id to the id plus one half. Timestamps are
whole microseconds, so the closed ``[start, end - 1]`` holds the same
instants as the half-open ``[start, end)``. A float8 holds every whole
number of microseconds exactly up to 2^53 of them, about 285 years: the
coordinates are exact from 1714 to 2285 (half a microsecond, the end this
function first used, was exact only until 2142). Two boxes overlap exactly
when the ids are equal and the intervals overlap: back-to-back lessons (one's
end is the other's start) do not. A box is the native GiST key of PostgreSQL: its
penalty and consistency tests are a few float comparisons, where the
``btree_gist`` key ``(resource_id WITH =, tstzrange WITH &&)`` calls an
operator class per column; measured on the term benchmark's rows, the
constraint costs about half as much (docs/benchmarks.md). ``tenant_id WITH =``
is in each (Citus enforces an exclusion constraint only with the
distribution column), second: GiST chooses a page and tests an entry by its
columns in order, and the box alone tells entries apart (within a tenant
every ``tenant_id`` is the same), so with the box first the ``btree_gist``
test of ``tenant_id`` is seldom reached (about 20% cheaper, measured).

A cancelled lesson is outside both constraints (the ``WHERE``), so
cancelling frees its slot by its status alone. The teacher and room rows of
``scheduling_busy`` go; students keep theirs (a lesson has many). The lesson
indexes ``(tenant_id, teacher_id, starts_at)`` and ``(tenant_id, room_id,
starts_at)`` go too: the constraints' GiST indexes find a teacher's or a
room's scheduled lessons over a period (``booking.teacher_span`` …).

On SQLite there is no such constraint: the plugin checks the lessons in the
writing transaction, as it did the busy rows.

Revision ID: scheduling_0003
Revises: scheduling_0002
Create Date: 2026-12-06 01:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = 'scheduling_0003'
down_revision: str | Sequence[str] | None = 'scheduling_0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SPAN = """
CREATE OR REPLACE FUNCTION scheduling_span(resource_id bigint, starts_at timestamptz, ends_at timestamptz)
RETURNS box LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT box(point(extract(epoch FROM starts_at - timestamptz '2000-01-01 00:00:00+00') * 1000000, resource_id),
             point(extract(epoch FROM ends_at - timestamptz '2000-01-01 00:00:00+00') * 1000000 - 1,
                   resource_id + 0.5))
$$
"""
TEACHER = ("ALTER TABLE scheduling_lesson ADD CONSTRAINT scheduling_lesson_teacher_free EXCLUDE USING gist "
           "(scheduling_span(teacher_id, starts_at, ends_at) WITH &&, tenant_id WITH =) "
           "WHERE (status = 'scheduled')")
ROOM = ("ALTER TABLE scheduling_lesson ADD CONSTRAINT scheduling_lesson_room_free EXCLUDE USING gist "
        "(scheduling_span(room_id, starts_at, ends_at) WITH &&, tenant_id WITH =) "
        "WHERE (status = 'scheduled' AND room_id IS NOT NULL AND NOT online)")


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        op.execute(SPAN)
        op.execute(TEACHER)
        op.execute(ROOM)
    op.execute("DELETE FROM scheduling_busy WHERE resource IN ('teacher', 'room')")
    with op.batch_alter_table('scheduling_lesson', schema=None) as batch_op:
        batch_op.drop_index('ix_scheduling_lesson_teacher')
        batch_op.drop_index('ix_scheduling_lesson_room')


def downgrade() -> None:
    with op.batch_alter_table('scheduling_lesson', schema=None) as batch_op:
        batch_op.create_index('ix_scheduling_lesson_teacher', ['tenant_id', 'teacher_id', 'starts_at'], unique=False)
        batch_op.create_index('ix_scheduling_lesson_room', ['tenant_id', 'room_id', 'starts_at'], unique=False)
    op.execute(
        "INSERT INTO scheduling_busy (tenant_id, lesson_id, resource, resource_id, starts_at, ends_at)"
        " SELECT tenant_id, id, 'teacher', teacher_id, starts_at, ends_at FROM scheduling_lesson"
        " WHERE status = 'scheduled'"
        " UNION ALL SELECT tenant_id, id, 'room', room_id, starts_at, ends_at FROM scheduling_lesson"
        " WHERE status = 'scheduled' AND room_id IS NOT NULL AND NOT online"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE scheduling_lesson DROP CONSTRAINT scheduling_lesson_room_free")
        op.execute("ALTER TABLE scheduling_lesson DROP CONSTRAINT scheduling_lesson_teacher_free")
        op.execute("DROP FUNCTION scheduling_span(bigint, timestamptz, timestamptz)")
