"""The settlement plugin's tables: branches, their teams, and the fair division of leads.

Every table is the tenant's (``TenantScoped``). Foreign keys between the
plugin's own tables carry ``tenant_id`` (each table the others point at has a
unique ``(tenant_id, id)``), so a row can never point at another tenant's
branch or policy; foreign keys to core tables are single-column, as the
core has no ``(tenant_id, id)`` unique yet. No core table is altered: a
team's branch is this plugin's row keyed by the team's id.

Division (:mod:`.division`): a *policy* is one version of the weights for a
source ("" is the default for every other source), effective over
``[effective_from, effective_to)``; its *entries* name each branch's weight,
intake team and optional daily cap. Its *state* row holds the smooth
weighted round robin's current weights and the length of its log; routing
locks it once per batch. Every lead it divides is one *allocation* row.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from pelago.plugin import Base, BigId, TenantScoped


class Branch(TenantScoped, Base):
    """A branch (分公司) of the tenant: its own timezone (for daily caps and periods) and currency."""

    __tablename__ = "settlement_branch"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        UniqueConstraint("tenant_id", "name"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    timezone: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class BranchTeam(TenantScoped, Base):
    """A team's branch: at most one per team (the primary key), never a column on the core's team."""

    __tablename__ = "settlement_branch_team"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "branch_id"], ["settlement_branch.tenant_id", "settlement_branch.id"],
            ondelete="CASCADE",  # deleting a branch frees its teams
        ),
        Index("ix_settlement_branch_team_branch", "tenant_id", "branch_id", "team_id"),
    )

    tenant_id: Mapped[int] = mapped_column(  # type: ignore[assignment]
        BigId, ForeignKey("core_tenant.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    team_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("core_team.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    branch_id: Mapped[int] = mapped_column(BigId)
    created_at: Mapped[datetime]


class Policy(TenantScoped, Base):
    """One version of a distribution policy for a source (``""``: every source without its own).

    Versions of one source never overlap: ``version`` is unique per (tenant,
    source), at most one version is open-ended (``effective_to`` null, a
    partial unique index), and a new version closes the open one with a
    conditional update (``api/policies.py``). On PostgreSQL an exclusion
    constraint (``ex_settlement_policy_no_overlap``, in the migration: SQLite
    has none) also refuses any two versions of a (tenant, source) whose
    ``[effective_from, effective_to)`` ranges overlap, whoever writes them.
    """

    __tablename__ = "settlement_policy"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        UniqueConstraint("tenant_id", "source", "version"),
        Index(
            "uq_settlement_policy_open", "tenant_id", "source", unique=True,
            postgresql_where=text("effective_to IS NULL"), sqlite_where=text("effective_to IS NULL"),
        ),
        CheckConstraint("effective_to IS NULL OR effective_to > effective_from", name="range"),
        CheckConstraint("version > 0", name="version"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    effective_from: Mapped[datetime]
    effective_to: Mapped[datetime | None]
    note: Mapped[str] = mapped_column(String(500), default="")
    created_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("core_user.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]


class PolicyEntry(TenantScoped, Base):
    """A branch's share in a policy: its weight, the team that receives its leads, its daily cap."""

    __tablename__ = "settlement_policy_entry"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "policy_id"], ["settlement_policy.tenant_id", "settlement_policy.id"], ondelete="CASCADE",
        ),
        ForeignKeyConstraint(
            ["tenant_id", "branch_id"], ["settlement_branch.tenant_id", "settlement_branch.id"],
            ondelete="RESTRICT",
        ),
        UniqueConstraint("tenant_id", "policy_id", "branch_id"),
        Index("ix_settlement_policy_entry_branch", "tenant_id", "branch_id"),
        CheckConstraint("weight > 0", name="weight"),
        CheckConstraint("daily_cap IS NULL OR daily_cap > 0", name="daily_cap"),
    )

    policy_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    branch_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    team_id: Mapped[int] = mapped_column(BigId, ForeignKey("core_team.id", ondelete="RESTRICT"))
    weight: Mapped[int] = mapped_column(Integer)
    daily_cap: Mapped[int | None] = mapped_column(Integer)


class DivisionState(TenantScoped, Base):
    """The round robin of one policy version: ``current`` weight per branch id, and its log length.

    Written only under its row lock (``SELECT … FOR UPDATE``), once per batch.
    """

    __tablename__ = "settlement_division_state"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "policy_id"], ["settlement_policy.tenant_id", "settlement_policy.id"], ondelete="CASCADE",
        ),
    )

    policy_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    current: Mapped[dict[str, Any]] = mapped_column(default=dict)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime]


class BranchDay(TenantScoped, Base):
    """Leads divided to a branch on one day of the branch's own calendar (for daily caps)."""

    __tablename__ = "settlement_branch_day"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "branch_id"], ["settlement_branch.tenant_id", "settlement_branch.id"], ondelete="CASCADE",
        ),
    )

    tenant_id: Mapped[int] = mapped_column(  # type: ignore[assignment]
        BigId, ForeignKey("core_tenant.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    branch_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    allocated: Mapped[int] = mapped_column(Integer, default=0)


class Allocation(TenantScoped, Base):
    """One lead divided by a policy: append-only, in the order of the policy's log (``seq``).

    ``branch_id`` is null when every branch was at its cap (``reason`` says
    where the lead went). Routing runs before the lead is written, so the row
    is written with the lead's ``lead_key`` (its phone, else its email) and
    ``lead_id`` is filled in once, by the ``lead_created`` event of the same
    transaction; a lead that merged into an existing one instead keeps none.

    The log is the hot path of an import (1,000 rows a batch), so each row
    is checked once, not per column: its (policy, branch) must be an entry of
    its policy (one composite foreign key to ``settlement_policy_entry``,
    whose own keys hold the policy and the branch, ``RESTRICT``: a branch
    named by a log row cannot be deleted). A row with no branch (every
    branch was full) is written only from its policy's locked state.
    ``lead_id`` is neither indexed nor a foreign key: it is written once, by
    the plugin, from the core's own ``lead_created`` event (the core never
    deletes a lead), and the fill-in is then a HOT update (PostgreSQL
    rewrites no index entry); a lead's allocations are found by its key
    (``ix_settlement_allocation_key``), then its id.
    """

    __tablename__ = "settlement_allocation"
    __table_args__ = (
        UniqueConstraint("tenant_id", "policy_id", "seq"),
        ForeignKeyConstraint(
            ["tenant_id", "policy_id", "branch_id"],
            ["settlement_policy_entry.tenant_id", "settlement_policy_entry.policy_id",
             "settlement_policy_entry.branch_id"],
            ondelete="RESTRICT",
        ),
        Index("ix_settlement_allocation_key", "tenant_id", "lead_key"),
        Index("ix_settlement_allocation_list", "tenant_id", "id"),
        {"postgresql_with": {"fillfactor": 80}},  # room on each page for the HOT fill-in of lead_id
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    policy_id: Mapped[int] = mapped_column(BigId)
    version: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(BigInteger)
    branch_id: Mapped[int | None] = mapped_column(BigId)
    team_id: Mapped[int | None] = mapped_column(BigId)
    lead_id: Mapped[int | None] = mapped_column(BigId)
    lead_key: Mapped[str] = mapped_column(String(260))
    reason: Mapped[str] = mapped_column(String(300))
    at: Mapped[datetime]
