"""scheduling tables: catalogue, accounts and ledger, classes, series, lessons, busy resources, attendance.

The first revision of the plugin's own branch (label ``scheduling``). No core
table is altered; keys onto core tables (leads, users, deals) are single
column, keys among the plugin's tables carry ``tenant_id``.

On PostgreSQL, ``scheduling_busy_no_overlap`` is an exclusion constraint
(``btree_gist``): no two rows of one resource (teacher, room, student) may
have overlapping half-open intervals ``[starts_at, ends_at)``, so a double
booking cannot be committed, whatever the concurrency. A resource's id (a
user's, a room's, a lead's) is unique across tenants, so ``tenant_id`` need
not be in the constraint (each key column makes the GiST index dearer). SQLite has no
such constraint; the plugin checks in the writing transaction there.

Revision ID: scheduling_0001
Revises:
Create Date: 2026-12-04 22:35:51.098239
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import pelago.plugin

revision: str = 'scheduling_0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ('scheduling',)
depends_on: str | Sequence[str] | None = '0004'


def upgrade() -> None:
    op.create_table('scheduling_campus',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('created_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_scheduling_campus_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scheduling_campus')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_scheduling_campus_tenant_id_id')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_scheduling_campus_tenant_id_name'))
    )
    op.create_table('scheduling_course',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('subject', sa.Boolean(), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_scheduling_course_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scheduling_course')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_scheduling_course_tenant_id_id')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_scheduling_course_tenant_id_name'))
    )
    op.create_table('scheduling_feed_token',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('owner_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', pelago.plugin.UtcDateTime(timezone=True), nullable=True),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_scheduling_feed_token_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scheduling_feed_token')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_scheduling_feed_token_token_hash'))
    )
    with op.batch_alter_table('scheduling_feed_token', schema=None) as batch_op:
        batch_op.create_index('ix_scheduling_feed_owner', ['tenant_id', 'kind', 'owner_id'], unique=False)

    op.create_table('scheduling_package',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('course_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('hours', pelago.plugin.Money(precision=18, scale=2), nullable=False),
    sa.Column('gift_hours', pelago.plugin.Money(precision=18, scale=2), nullable=False),
    sa.Column('price', pelago.plugin.Money(precision=18, scale=2), nullable=False),
    sa.Column('validity_days', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.CheckConstraint('hours > 0 AND gift_hours >= 0 AND price >= 0 AND validity_days > 0', name=op.f('ck_scheduling_package_amounts')),
    sa.ForeignKeyConstraint(['tenant_id', 'course_id'], ['scheduling_course.tenant_id', 'scheduling_course.id'], name=op.f('fk_scheduling_package_tenant_id_scheduling_course'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_scheduling_package_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scheduling_package')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_scheduling_package_tenant_id_id')),
    sa.UniqueConstraint('tenant_id', 'name', name=op.f('uq_scheduling_package_tenant_id_name'))
    )
    op.create_table('scheduling_room',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('campus_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('capacity', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.CheckConstraint('capacity > 0', name=op.f('ck_scheduling_room_capacity')),
    sa.ForeignKeyConstraint(['tenant_id', 'campus_id'], ['scheduling_campus.tenant_id', 'scheduling_campus.id'], name=op.f('fk_scheduling_room_tenant_id_scheduling_campus'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_scheduling_room_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scheduling_room')),
    sa.UniqueConstraint('tenant_id', 'campus_id', 'name', name=op.f('uq_scheduling_room_tenant_id_campus_id_name')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_scheduling_room_tenant_id_id'))
    )
    op.create_table('scheduling_teacher',
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('subjects', sa.String(length=200), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_scheduling_teacher_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['core_user.id'], name=op.f('fk_scheduling_teacher_user_id_core_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_scheduling_teacher')),
    sa.UniqueConstraint('tenant_id', 'user_id', name=op.f('uq_scheduling_teacher_tenant_id_user_id'))
    )
    op.create_table('scheduling_class',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('campus_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('course_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('teacher_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('room_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('capacity', sa.Integer(), nullable=False),
    sa.Column('online', sa.Boolean(), nullable=False),
    sa.Column('hours_per_lesson', pelago.plugin.Money(precision=18, scale=2), nullable=False),
    sa.Column('trial', sa.Boolean(), nullable=False),
    sa.Column('created_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.CheckConstraint('capacity > 0 AND hours_per_lesson > 0', name=op.f('ck_scheduling_class_sizes')),
    sa.ForeignKeyConstraint(['tenant_id', 'campus_id'], ['scheduling_campus.tenant_id', 'scheduling_campus.id'], name=op.f('fk_scheduling_class_tenant_id_scheduling_campus')),
    sa.ForeignKeyConstraint(['tenant_id', 'course_id'], ['scheduling_course.tenant_id', 'scheduling_course.id'], name=op.f('fk_scheduling_class_tenant_id_scheduling_course')),
    sa.ForeignKeyConstraint(['tenant_id', 'room_id'], ['scheduling_room.tenant_id', 'scheduling_room.id'], name=op.f('fk_scheduling_class_tenant_id_scheduling_room')),
    sa.ForeignKeyConstraint(['tenant_id', 'teacher_id'], ['scheduling_teacher.tenant_id', 'scheduling_teacher.user_id'], name=op.f('fk_scheduling_class_tenant_id_scheduling_teacher')),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_scheduling_class_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scheduling_class')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_scheduling_class_tenant_id_id'))
    )
    with op.batch_alter_table('scheduling_class', schema=None) as batch_op:
        batch_op.create_index('ix_scheduling_class_list', ['tenant_id', 'id'], unique=False)

    op.create_table('scheduling_student',
    sa.Column('lead_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('created_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    pelago.plugin.tenant_key_as_migrated(['lead_id'], 'core_lead', name=op.f('fk_scheduling_student_lead_id_core_lead'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_scheduling_student_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('lead_id', name=op.f('pk_scheduling_student')),
    sa.UniqueConstraint('tenant_id', 'lead_id', name=op.f('uq_scheduling_student_tenant_id_lead_id'))
    )
    op.create_table('scheduling_account',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('lead_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('package_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('deal_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('purchased_hours', pelago.plugin.Money(precision=18, scale=2), nullable=False),
    sa.Column('gift_hours', pelago.plugin.Money(precision=18, scale=2), nullable=False),
    sa.Column('consumed_purchased', pelago.plugin.Money(precision=18, scale=2), nullable=False),
    sa.Column('consumed_gift', pelago.plugin.Money(precision=18, scale=2), nullable=False),
    sa.Column('paid', pelago.plugin.Money(precision=18, scale=2), nullable=False),
    sa.Column('unit_price', pelago.plugin.Money(precision=18, scale=2), nullable=False),
    sa.Column('recognised', pelago.plugin.Money(precision=18, scale=2), nullable=False),
    sa.Column('refunded', pelago.plugin.Money(precision=18, scale=2), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('opened_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('closed_at', pelago.plugin.UtcDateTime(timezone=True), nullable=True),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.CheckConstraint('consumed_purchased >= 0 AND consumed_gift >= 0 AND consumed_purchased <= purchased_hours AND consumed_gift <= gift_hours AND recognised >= 0 AND refunded >= 0 AND recognised + refunded <= paid', name=op.f('ck_scheduling_account_balance')),
    pelago.plugin.tenant_key_as_migrated(['deal_id'], 'core_deal', name=op.f('fk_scheduling_account_deal_id_core_deal'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id', 'lead_id'], ['scheduling_student.tenant_id', 'scheduling_student.lead_id'], name=op.f('fk_scheduling_account_tenant_id_scheduling_student'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id', 'package_id'], ['scheduling_package.tenant_id', 'scheduling_package.id'], name=op.f('fk_scheduling_account_tenant_id_scheduling_package')),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_scheduling_account_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scheduling_account')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_scheduling_account_tenant_id_id'))
    )
    with op.batch_alter_table('scheduling_account', schema=None) as batch_op:
        batch_op.create_index('ix_scheduling_account_lead', ['tenant_id', 'lead_id', 'id'], unique=False)
        batch_op.create_index('uq_scheduling_account_deal', ['tenant_id', 'deal_id'], unique=True, postgresql_where=sa.text('deal_id IS NOT NULL'), sqlite_where=sa.text('deal_id IS NOT NULL'))

    op.create_table('scheduling_series',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('class_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('rrule', sa.String(length=500), nullable=False),
    sa.Column('start_local', sa.String(length=16), nullable=False),
    sa.Column('duration_minutes', sa.Integer(), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('options', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'class_id'], ['scheduling_class.tenant_id', 'scheduling_class.id'], name=op.f('fk_scheduling_series_tenant_id_scheduling_class'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_scheduling_series_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scheduling_series')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_scheduling_series_tenant_id_id'))
    )
    op.create_table('scheduling_enrolment',
    sa.Column('class_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('lead_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('enrolled_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'account_id'], ['scheduling_account.tenant_id', 'scheduling_account.id'], name=op.f('fk_scheduling_enrolment_tenant_id_scheduling_account')),
    sa.ForeignKeyConstraint(['tenant_id', 'class_id'], ['scheduling_class.tenant_id', 'scheduling_class.id'], name=op.f('fk_scheduling_enrolment_tenant_id_scheduling_class'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id', 'lead_id'], ['scheduling_student.tenant_id', 'scheduling_student.lead_id'], name=op.f('fk_scheduling_enrolment_tenant_id_scheduling_student'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_scheduling_enrolment_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('class_id', 'lead_id', name=op.f('pk_scheduling_enrolment'))
    )
    with op.batch_alter_table('scheduling_enrolment', schema=None) as batch_op:
        batch_op.create_index('ix_scheduling_enrolment_lead', ['tenant_id', 'lead_id'], unique=False)

    op.create_table('scheduling_lesson',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('class_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('series_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('recurrence_id', pelago.plugin.UtcDateTime(timezone=True), nullable=True),
    sa.Column('starts_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('ends_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('teacher_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('room_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('makeup_of', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('hours', pelago.plugin.Money(precision=18, scale=2), nullable=False),
    sa.Column('online', sa.Boolean(), nullable=False),
    sa.Column('auto_consumed', sa.Boolean(), nullable=False),
    sa.Column('created_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.CheckConstraint('ends_at > starts_at', name=op.f('ck_scheduling_lesson_interval')),
    sa.ForeignKeyConstraint(['tenant_id', 'class_id'], ['scheduling_class.tenant_id', 'scheduling_class.id'], name=op.f('fk_scheduling_lesson_tenant_id_scheduling_class'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id', 'makeup_of'], ['scheduling_lesson.tenant_id', 'scheduling_lesson.id'], name=op.f('fk_scheduling_lesson_tenant_id_scheduling_lesson')),
    sa.ForeignKeyConstraint(['tenant_id', 'room_id'], ['scheduling_room.tenant_id', 'scheduling_room.id'], name=op.f('fk_scheduling_lesson_tenant_id_scheduling_room')),
    sa.ForeignKeyConstraint(['tenant_id', 'series_id'], ['scheduling_series.tenant_id', 'scheduling_series.id'], name=op.f('fk_scheduling_lesson_tenant_id_scheduling_series')),
    sa.ForeignKeyConstraint(['tenant_id', 'teacher_id'], ['scheduling_teacher.tenant_id', 'scheduling_teacher.user_id'], name=op.f('fk_scheduling_lesson_tenant_id_scheduling_teacher')),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_scheduling_lesson_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scheduling_lesson')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_scheduling_lesson_tenant_id_id')),
    sa.UniqueConstraint('tenant_id', 'series_id', 'recurrence_id', name=op.f('uq_scheduling_lesson_tenant_id_series_id_recurrence_id'))
    )
    with op.batch_alter_table('scheduling_lesson', schema=None) as batch_op:
        batch_op.create_index('ix_scheduling_lesson_class', ['tenant_id', 'class_id', 'starts_at'], unique=False)
        batch_op.create_index('ix_scheduling_lesson_room', ['tenant_id', 'room_id', 'starts_at'], unique=False)
        batch_op.create_index('ix_scheduling_lesson_teacher', ['tenant_id', 'teacher_id', 'starts_at'], unique=False)
        batch_op.create_index('ix_scheduling_lesson_time', ['tenant_id', 'starts_at'], unique=False)

    op.create_table('scheduling_attendance',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('lesson_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('lead_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=True),
    sa.Column('charged', sa.Boolean(), nullable=False),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('leave_asked_at', pelago.plugin.UtcDateTime(timezone=True), nullable=True),
    sa.Column('marked_by', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('marked_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'lead_id'], ['scheduling_student.tenant_id', 'scheduling_student.lead_id'], name=op.f('fk_scheduling_attendance_tenant_id_scheduling_student'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id', 'lesson_id'], ['scheduling_lesson.tenant_id', 'scheduling_lesson.id'], name=op.f('fk_scheduling_attendance_tenant_id_scheduling_lesson'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_scheduling_attendance_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scheduling_attendance')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_scheduling_attendance_tenant_id_id')),
    sa.UniqueConstraint('tenant_id', 'lesson_id', 'lead_id', name=op.f('uq_scheduling_attendance_tenant_id_lesson_id_lead_id'))
    )
    with op.batch_alter_table('scheduling_attendance', schema=None) as batch_op:
        batch_op.create_index('ix_scheduling_attendance_lead', ['tenant_id', 'lead_id'], unique=False)

    op.create_table('scheduling_busy',
    sa.Column('lesson_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('resource', sa.String(length=8), nullable=False),
    sa.Column('resource_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('starts_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('ends_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.CheckConstraint('ends_at > starts_at', name=op.f('ck_scheduling_busy_interval')),
    sa.ForeignKeyConstraint(['tenant_id', 'lesson_id'], ['scheduling_lesson.tenant_id', 'scheduling_lesson.id'], name=op.f('fk_scheduling_busy_tenant_id_scheduling_lesson'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_scheduling_busy_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('lesson_id', 'resource', 'resource_id', name=op.f('pk_scheduling_busy'))
    )
    with op.batch_alter_table('scheduling_busy', schema=None) as batch_op:
        batch_op.create_index('ix_scheduling_busy_resource', ['tenant_id', 'resource', 'resource_id', 'starts_at'], unique=False)

    op.create_table('scheduling_participant',
    sa.Column('lesson_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('lead_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('makeup_of', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'makeup_of'], ['scheduling_lesson.tenant_id', 'scheduling_lesson.id'], name='fk_scheduling_participant_makeup_of'),
    sa.ForeignKeyConstraint(['tenant_id', 'lead_id'], ['scheduling_student.tenant_id', 'scheduling_student.lead_id'], name=op.f('fk_scheduling_participant_tenant_id_scheduling_student'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id', 'lesson_id'], ['scheduling_lesson.tenant_id', 'scheduling_lesson.id'], name=op.f('fk_scheduling_participant_tenant_id_scheduling_lesson'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_scheduling_participant_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('lesson_id', 'lead_id', name=op.f('pk_scheduling_participant'))
    )
    with op.batch_alter_table('scheduling_participant', schema=None) as batch_op:
        batch_op.create_index('ix_scheduling_participant_lead', ['tenant_id', 'lead_id'], unique=False)

    op.create_table('scheduling_trial',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('lesson_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('lead_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('source', sa.String(length=100), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=True),
    sa.Column('deal_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('booked_at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('decided_at', pelago.plugin.UtcDateTime(timezone=True), nullable=True),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'lead_id'], ['scheduling_student.tenant_id', 'scheduling_student.lead_id'], name=op.f('fk_scheduling_trial_tenant_id_scheduling_student'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id', 'lesson_id'], ['scheduling_lesson.tenant_id', 'scheduling_lesson.id'], name=op.f('fk_scheduling_trial_tenant_id_scheduling_lesson'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_scheduling_trial_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scheduling_trial')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_scheduling_trial_tenant_id_id')),
    sa.UniqueConstraint('tenant_id', 'lesson_id', 'lead_id', name=op.f('uq_scheduling_trial_tenant_id_lesson_id_lead_id'))
    )
    with op.batch_alter_table('scheduling_trial', schema=None) as batch_op:
        batch_op.create_index('ix_scheduling_trial_list', ['tenant_id', 'id'], unique=False)

    op.create_table('scheduling_entry',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('purchased_hours', pelago.plugin.Money(precision=18, scale=2), nullable=False),
    sa.Column('gift_hours', pelago.plugin.Money(precision=18, scale=2), nullable=False),
    sa.Column('amount', pelago.plugin.Money(precision=18, scale=2), nullable=False),
    sa.Column('attendance_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('generation', sa.Integer(), nullable=True),
    sa.Column('lesson_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('refund_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('reverses_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('note', sa.String(length=500), nullable=False),
    sa.Column('at', pelago.plugin.UtcDateTime(timezone=True), nullable=False),
    sa.Column('tenant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'account_id'], ['scheduling_account.tenant_id', 'scheduling_account.id'], name=op.f('fk_scheduling_entry_tenant_id_scheduling_account'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id', 'attendance_id'], ['scheduling_attendance.tenant_id', 'scheduling_attendance.id'], name=op.f('fk_scheduling_entry_tenant_id_scheduling_attendance')),
    sa.ForeignKeyConstraint(['tenant_id', 'lesson_id'], ['scheduling_lesson.tenant_id', 'scheduling_lesson.id'], name=op.f('fk_scheduling_entry_tenant_id_scheduling_lesson')),
    sa.ForeignKeyConstraint(['tenant_id', 'reverses_id'], ['scheduling_entry.tenant_id', 'scheduling_entry.id'], name=op.f('fk_scheduling_entry_tenant_id_scheduling_entry')),
    sa.ForeignKeyConstraint(['tenant_id'], ['core_tenant.id'], name=op.f('fk_scheduling_entry_tenant_id_core_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scheduling_entry')),
    sa.UniqueConstraint('tenant_id', 'id', name=op.f('uq_scheduling_entry_tenant_id_id'))
    )
    with op.batch_alter_table('scheduling_entry', schema=None) as batch_op:
        batch_op.create_index('ix_scheduling_entry_account', ['tenant_id', 'account_id', 'id'], unique=False)
        batch_op.create_index('ix_scheduling_entry_month', ['tenant_id', 'at'], unique=False)
        batch_op.create_index('uq_scheduling_entry_charge', ['tenant_id', 'attendance_id', 'generation', 'kind'], unique=True, postgresql_where=sa.text('attendance_id IS NOT NULL'), sqlite_where=sa.text('attendance_id IS NOT NULL'))
        batch_op.create_index('uq_scheduling_entry_once', ['tenant_id', 'account_id', 'kind'], unique=True, postgresql_where=sa.text("kind IN ('purchase', 'refund', 'expire')"), sqlite_where=sa.text("kind IN ('purchase', 'refund', 'expire')"))
        batch_op.create_index('uq_scheduling_entry_reversal', ['tenant_id', 'reverses_id'], unique=True, postgresql_where=sa.text('reverses_id IS NOT NULL'), sqlite_where=sa.text('reverses_id IS NOT NULL'))



    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        op.execute(
            "ALTER TABLE scheduling_busy ADD CONSTRAINT scheduling_busy_no_overlap EXCLUDE USING gist "
            "(resource_id WITH =, resource WITH =, tstzrange(starts_at, ends_at, '[)') WITH &&)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE scheduling_busy DROP CONSTRAINT IF EXISTS scheduling_busy_no_overlap")
    with op.batch_alter_table('scheduling_entry', schema=None) as batch_op:
        batch_op.drop_index('uq_scheduling_entry_reversal', postgresql_where=sa.text('reverses_id IS NOT NULL'), sqlite_where=sa.text('reverses_id IS NOT NULL'))
        batch_op.drop_index('uq_scheduling_entry_once', postgresql_where=sa.text("kind IN ('purchase', 'refund', 'expire')"), sqlite_where=sa.text("kind IN ('purchase', 'refund', 'expire')"))
        batch_op.drop_index('uq_scheduling_entry_charge', postgresql_where=sa.text('attendance_id IS NOT NULL'), sqlite_where=sa.text('attendance_id IS NOT NULL'))
        batch_op.drop_index('ix_scheduling_entry_month')
        batch_op.drop_index('ix_scheduling_entry_account')

    op.drop_table('scheduling_entry')
    with op.batch_alter_table('scheduling_trial', schema=None) as batch_op:
        batch_op.drop_index('ix_scheduling_trial_list')

    op.drop_table('scheduling_trial')
    with op.batch_alter_table('scheduling_participant', schema=None) as batch_op:
        batch_op.drop_index('ix_scheduling_participant_lead')

    op.drop_table('scheduling_participant')
    with op.batch_alter_table('scheduling_busy', schema=None) as batch_op:
        batch_op.drop_index('ix_scheduling_busy_resource')

    op.drop_table('scheduling_busy')
    with op.batch_alter_table('scheduling_attendance', schema=None) as batch_op:
        batch_op.drop_index('ix_scheduling_attendance_lead')

    op.drop_table('scheduling_attendance')
    with op.batch_alter_table('scheduling_lesson', schema=None) as batch_op:
        batch_op.drop_index('ix_scheduling_lesson_time')
        batch_op.drop_index('ix_scheduling_lesson_teacher')
        batch_op.drop_index('ix_scheduling_lesson_room')
        batch_op.drop_index('ix_scheduling_lesson_class')

    op.drop_table('scheduling_lesson')
    with op.batch_alter_table('scheduling_enrolment', schema=None) as batch_op:
        batch_op.drop_index('ix_scheduling_enrolment_lead')

    op.drop_table('scheduling_enrolment')
    op.drop_table('scheduling_series')
    with op.batch_alter_table('scheduling_account', schema=None) as batch_op:
        batch_op.drop_index('uq_scheduling_account_deal', postgresql_where=sa.text('deal_id IS NOT NULL'), sqlite_where=sa.text('deal_id IS NOT NULL'))
        batch_op.drop_index('ix_scheduling_account_lead')

    op.drop_table('scheduling_account')
    op.drop_table('scheduling_student')
    with op.batch_alter_table('scheduling_class', schema=None) as batch_op:
        batch_op.drop_index('ix_scheduling_class_list')

    op.drop_table('scheduling_class')
    op.drop_table('scheduling_teacher')
    op.drop_table('scheduling_room')
    op.drop_table('scheduling_package')
    with op.batch_alter_table('scheduling_feed_token', schema=None) as batch_op:
        batch_op.drop_index('ix_scheduling_feed_owner')

    op.drop_table('scheduling_feed_token')
    op.drop_table('scheduling_course')
    op.drop_table('scheduling_campus')
