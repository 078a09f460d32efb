"""The stage machine in the database: core_lead.stage moves only along allowed transitions

A trigger refuses any UPDATE of ``core_lead.stage`` from one stage to
another that the machine does not allow (PostgreSQL: ``check_violation``;
SQLite: ``RAISE(ABORT)``, a constraint error). The allowed moves are the
service's (``STAGE_TRANSITIONS``) plus a deal's (any stage but won → won),
frozen here as they were when this revision was written; a later change
of the machine is a new revision. ``tests/test_stages.py`` checks that the
trigger and the code agree.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 22:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0007'
down_revision: str | Sequence[str] | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ALLOWED = (
    "new>contacted", "new>qualified", "new>won", "new>lost",
    "contacted>qualified", "contacted>won", "contacted>lost",
    "qualified>won", "qualified>lost",
    "lost>new", "lost>won",
)
_LIST = ", ".join(f"'{pair}'" for pair in ALLOWED)

PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION core_lead_stage_machine() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.stage <> OLD.stage AND (OLD.stage || '>' || NEW.stage) NOT IN ({_LIST}) THEN
        RAISE EXCEPTION 'core_lead %: stage cannot move from % to %', OLD.id, OLD.stage, NEW.stage
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute("CREATE TRIGGER core_lead_stage_machine BEFORE UPDATE OF stage ON core_lead "
                   "FOR EACH ROW EXECUTE FUNCTION core_lead_stage_machine()")
    else:
        op.execute(
            "CREATE TRIGGER core_lead_stage_machine BEFORE UPDATE OF stage ON core_lead FOR EACH ROW "
            f"WHEN NEW.stage <> OLD.stage AND (OLD.stage || '>' || NEW.stage) NOT IN ({_LIST}) "
            "BEGIN SELECT RAISE(ABORT, 'core_lead: stage move not allowed by the stage machine'); END"
        )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS core_lead_stage_machine" + (
        " ON core_lead" if op.get_bind().dialect.name == "postgresql" else ""))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS core_lead_stage_machine()")
