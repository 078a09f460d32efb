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
from decimal import Decimal
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

from pelago.plugin import Base, BigId, JsonDoc, Money, TenantScoped, tenant_key


class Branch(TenantScoped, Base):
    """A branch (分公司) of the tenant: its own timezone (for daily caps and periods) and currency."""

    __tablename__ = "settlement_branch"
    __table_args__ = (
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
        tenant_key(["team_id"], "core_team", ondelete="CASCADE"),
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
        BigId, primary_key=True, autoincrement=False
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
        tenant_key(["team_id"], "core_team", ondelete="RESTRICT"),
        ForeignKeyConstraint(
            ["tenant_id", "policy_id"], ["settlement_policy.tenant_id", "settlement_policy.id"], ondelete="CASCADE",
        ),
        ForeignKeyConstraint(
            ["tenant_id", "branch_id"], ["settlement_branch.tenant_id", "settlement_branch.id"],
            ondelete="RESTRICT",
        ),
        Index("ix_settlement_policy_entry_branch", "tenant_id", "branch_id"),
        CheckConstraint("weight > 0", name="weight"),
        CheckConstraint("daily_cap IS NULL OR daily_cap > 0", name="daily_cap"),
    )

    policy_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    branch_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    team_id: Mapped[int] = mapped_column(BigId)
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
    where the lead went). Routing runs before the lead is written, with the
    id the intake line reserved for it (``LeadInfo.new_id``), so the row is
    written once, complete: ``lead_id`` and ``lead_key`` (its phone, else its
    email). A lead that lost a race to a concurrent duplicate was merged into
    that one instead: its row keeps the reserved id, which no lead has.

    The log is the hot path of an import (1,000 rows a batch), so each row
    is checked once, not per column: its (policy, branch) must be an entry of
    its policy (one composite foreign key to ``settlement_policy_entry``,
    whose own keys hold the policy and the branch, ``RESTRICT``: a branch
    named by a log row cannot be deleted). A row with no branch (every
    branch was full) is written only from its policy's locked state.
    ``lead_id`` is neither indexed nor a foreign key (it is written before
    the lead's row, and the core never deletes a lead); a lead's allocations
    are found by its key (``ix_settlement_allocation_key``), then its id.
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
        {"postgresql_with": {"fillfactor": 80}},  # from when lead_id was filled in later (a HOT update)
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


# --- money: attribution, commission, the ledger, periods ---------------------------------
#
# Attribution *rules* and commission *plans* are versioned like policies: a
# version per (situation) or (branch, role), effective over [from, to), at
# most one open-ended, a new version closing the open one by a conditional
# update. A deal's credits are a *credit set* (version 1 from the rule,
# later versions from admins' overrides, never edited) of *credit lines*.
# The *ledger* is append-only *entries*, each in one *period* of its branch;
# a unique business key per entry makes redelivered events write nothing.
# On both databases triggers refuse an entry into a period that is not open
# and any change of an entry; on PostgreSQL the insert trigger also takes a
# share lock on the period row, which the lock takes exclusively, so no entry
# can slip into a period while it is being locked (settlement_0002).

SITUATIONS = ("first_purchase", "repurchase", "referral", "walk_in")
METHODS = ("owner_at_win", "first_owner", "split")
PERIOD_STATES = ("open", "locked", "paid")
ENTRY_KINDS = ("credit", "commission")
ORIGINS = ("won", "refund", "override", "true_up")


def _fk(local: str, cols: list[str], table: str, ondelete: str = "RESTRICT") -> ForeignKeyConstraint:
    """``(tenant_id, col) → table(tenant_id, id)``, named after the column (the convention's would clash)."""
    return ForeignKeyConstraint(["tenant_id", *cols], [f"{table}.tenant_id", f"{table}.id"], ondelete=ondelete,
                                name=f"fk_{local}_{'_'.join(cols)}")


class Rule(TenantScoped, Base):
    """One version of the attribution rule of a situation (see :mod:`.attribution`).

    ``splits`` (method ``split``): ``[{"role": "inviter", "percent": "50"}, …]``,
    percents adding up to exactly 100.
    """

    __tablename__ = "settlement_rule"
    __table_args__ = (
        UniqueConstraint("tenant_id", "situation", "version"),
        Index(
            "uq_settlement_rule_open", "tenant_id", "situation", unique=True,
            postgresql_where=text("effective_to IS NULL"), sqlite_where=text("effective_to IS NULL"),
        ),
        CheckConstraint("effective_to IS NULL OR effective_to > effective_from", name="range"),
        CheckConstraint("version > 0", name="version"),
        CheckConstraint("situation IN ('first_purchase','repurchase','referral','walk_in')", name="situation"),
        CheckConstraint("method IN ('owner_at_win','first_owner','split')", name="method"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    situation: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    effective_from: Mapped[datetime]
    effective_to: Mapped[datetime | None]
    method: Mapped[str] = mapped_column(String(16))
    splits: Mapped[list[dict[str, Any]]] = mapped_column(JsonDoc, default=list)
    note: Mapped[str] = mapped_column(String(500), default="")
    created_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("core_user.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]


class Plan(TenantScoped, Base):
    """One version of the commission plan of a branch for a role (``rep``, ``manager``, ``admin``).

    ``tiers``: ``[{"up_to": "150000.00", "rate": "0.05"}, {"up_to": null, "rate": "0.08"}]``
    (:mod:`.tiers`); ``mode`` step or marginal; ``scope`` per ``deal`` or
    cumulative over the ``period`` (trued up at the lock); ``base`` ``net``
    (refunds claw commission back) or ``gross`` (they do not).
    """

    __tablename__ = "settlement_plan"
    __table_args__ = (
        UniqueConstraint("tenant_id", "branch_id", "role", "version"),
        _fk("settlement_plan", ["branch_id"], "settlement_branch"),
        Index(
            "uq_settlement_plan_open", "tenant_id", "branch_id", "role", unique=True,
            postgresql_where=text("effective_to IS NULL"), sqlite_where=text("effective_to IS NULL"),
        ),
        CheckConstraint("effective_to IS NULL OR effective_to > effective_from", name="range"),
        CheckConstraint("version > 0", name="version"),
        CheckConstraint("role IN ('admin','manager','rep')", name="role"),
        CheckConstraint("mode IN ('step','marginal')", name="mode"),
        CheckConstraint("scope IN ('deal','period')", name="scope"),
        CheckConstraint("base IN ('net','gross')", name="base"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    branch_id: Mapped[int] = mapped_column(BigId)
    role: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    effective_from: Mapped[datetime]
    effective_to: Mapped[datetime | None]
    mode: Mapped[str] = mapped_column(String(8))
    scope: Mapped[str] = mapped_column(String(8))
    base: Mapped[str] = mapped_column(String(8))
    tiers: Mapped[list[dict[str, Any]]] = mapped_column(JsonDoc)
    note: Mapped[str] = mapped_column(String(500), default="")
    created_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("core_user.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]


class SettledDeal(TenantScoped, Base):
    """The plugin's row per won deal: its amount, the refunds accounted so far, its current credit set.

    Written once per deal (the unique ``(tenant_id, deal_id)`` decides which
    delivery settles it); every later change of the deal's credits or refunds
    locks this row first, so they happen one at a time per deal, in an order
    the clawbacks telescope over.
    """

    __tablename__ = "settlement_deal"
    __table_args__ = (
        tenant_key(["deal_id"], "core_deal", ondelete="RESTRICT"),
        UniqueConstraint("tenant_id", "deal_id"),
        _fk("settlement_deal", ["won_period_id"], "settlement_period"),
        Index("ix_settlement_deal_won_period", "tenant_id", "won_period_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    deal_id: Mapped[int] = mapped_column(BigId)
    amount: Mapped[Decimal]
    refunded: Mapped[Decimal] = mapped_column(default=Decimal("0.00"))
    current_set: Mapped[int] = mapped_column(Integer, default=1)
    #: where its win's credits landed, when they are all in one branch (so one period): what a lock sums
    won_period_id: Mapped[int | None] = mapped_column(BigId)
    won_at: Mapped[datetime]
    created_at: Mapped[datetime]


class CreditSet(TenantScoped, Base):
    """One version of a deal's credits: 1 from the rule, each override a new version with its reason."""

    __tablename__ = "settlement_credit_set"
    __table_args__ = (
        tenant_key(["deal_id"], "core_deal", ondelete="RESTRICT"),
        UniqueConstraint("tenant_id", "deal_id", "version"),
        _fk("settlement_credit_set", ["rule_id"], "settlement_rule"),
        CheckConstraint("version > 0", name="version"),
        CheckConstraint("version = 1 OR reason <> ''", name="override_reason"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    deal_id: Mapped[int] = mapped_column(BigId)
    version: Mapped[int] = mapped_column(Integer)
    situation: Mapped[str] = mapped_column(String(16))
    rule_id: Mapped[int | None] = mapped_column(BigId)
    rule_version: Mapped[int] = mapped_column(Integer, default=0)
    method: Mapped[str] = mapped_column(String(16))
    inputs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    reason: Mapped[str] = mapped_column(String(500), default="")
    created_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("core_user.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]


class CreditLine(TenantScoped, Base):
    """A branch's (and inside it a person's) part of a deal in one credit set; ``amount`` adds up to the deal."""

    __tablename__ = "settlement_credit_line"
    __table_args__ = (
        _fk("settlement_credit_line", ["set_id"], "settlement_credit_set"),
        _fk("settlement_credit_line", ["branch_id"], "settlement_branch"),
        _fk("settlement_credit_line", ["plan_id"], "settlement_plan"),
        Index("ix_settlement_credit_line_set", "tenant_id", "set_id", "branch_id", "user_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    set_id: Mapped[int] = mapped_column(BigId)
    branch_id: Mapped[int] = mapped_column(BigId)
    user_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("core_user.id", ondelete="RESTRICT"))
    roles: Mapped[list[str]] = mapped_column(JsonDoc, default=list)
    percent: Mapped[str] = mapped_column(String(24))  # a decimal string: SQLite has no exact NUMERIC
    amount: Mapped[Decimal]
    plan_id: Mapped[int | None] = mapped_column(BigId)
    commission: Mapped[Decimal | None] = mapped_column(
        Money  # the line's commission under plan_id before refunds (refunds claw back from it)
    )


class Refunded(TenantScoped, Base):
    """A refund the ledger has clawed back: at most once (the unique key), with the deal's refunded total before it."""

    __tablename__ = "settlement_refund"
    __table_args__ = (
        tenant_key(["refund_id"], "core_refund", ondelete="RESTRICT"),
        tenant_key(["deal_id"], "core_deal", ondelete="RESTRICT"),
        UniqueConstraint("tenant_id", "refund_id"),
        _fk("settlement_refund", ["period_id"], "settlement_period"),
        Index("ix_settlement_refund_period", "tenant_id", "period_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    refund_id: Mapped[int] = mapped_column(BigId)
    deal_id: Mapped[int] = mapped_column(BigId)
    amount: Mapped[Decimal]
    before: Mapped[Decimal]
    #: where its clawbacks landed, when they are all in one branch (so one period)
    period_id: Mapped[int | None] = mapped_column(BigId)
    at: Mapped[datetime]


class Period(TenantScoped, Base):
    """A branch's period ``[starts_at, ends_at)``: open → locked → paid; locked totals never change.

    ``totals`` and ``checksum`` are written once, by the lock (a trigger
    refuses any other change of a locked period than marking it paid).
    """

    __tablename__ = "settlement_period"
    __table_args__ = (
        UniqueConstraint("tenant_id", "branch_id", "key"),
        _fk("settlement_period", ["branch_id"], "settlement_branch"),
        Index("ix_settlement_period_list", "tenant_id", "key", "branch_id"),
        CheckConstraint("state IN ('open','locked','paid')", name="state"),
        CheckConstraint("ends_at > starts_at", name="range"),
        CheckConstraint("(state = 'open') = (checksum IS NULL)", name="locked_has_checksum"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    branch_id: Mapped[int] = mapped_column(BigId)
    key: Mapped[str] = mapped_column(String(7))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(8), default="open")
    totals: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
    checksum: Mapped[str | None] = mapped_column(String(64))
    locked_at: Mapped[datetime | None]
    locked_by: Mapped[int | None] = mapped_column(BigId)
    paid_at: Mapped[datetime | None]
    paid_by: Mapped[int | None] = mapped_column(BigId)
    created_at: Mapped[datetime]


class Entry(TenantScoped, Base):
    """One line of the ledger: a credit or a commission, positive or (clawbacks, reversals) negative.

    ``key`` is the business key (``won:<deal>:<set>:<line>:credit``,
    ``refund:<refund>:…``, ``override:<set>:…``, ``true_up:<period>:…``):
    unique per tenant, so an event delivered twice writes nothing the second
    time. ``original_id`` links a clawback or reversal to the entry it takes
    back; ``adjusts_period_id`` is set when an entry lands in a later open
    period than its own (which was locked already).
    """

    __tablename__ = "settlement_entry"
    __table_args__ = (
        tenant_key(["deal_id"], "core_deal", ondelete="RESTRICT"),
        UniqueConstraint("tenant_id", "key"),
        _fk("settlement_entry", ["period_id"], "settlement_period"),
        _fk("settlement_entry", ["branch_id"], "settlement_branch"),
        _fk("settlement_entry", ["plan_id"], "settlement_plan"),
        _fk("settlement_entry", ["line_id"], "settlement_credit_line"),
        _fk("settlement_entry", ["original_id"], "settlement_entry"),
        _fk("settlement_entry", ["adjusts_period_id"], "settlement_period"),
        Index("ix_settlement_entry_period", "tenant_id", "period_id", "user_id", "kind"),
        Index("ix_settlement_entry_origin", "tenant_id", "origin", "origin_id"),
        Index("ix_settlement_entry_deal", "tenant_id", "deal_id", "id"),
        Index("ix_settlement_entry_user", "tenant_id", "user_id", "id"),
        Index("ix_settlement_entry_branch", "tenant_id", "branch_id", "id"),
        CheckConstraint("kind IN ('credit','commission')", name="kind"),
        CheckConstraint("origin IN ('won','refund','override','true_up')", name="origin"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(120))
    period_id: Mapped[int] = mapped_column(BigId)
    branch_id: Mapped[int] = mapped_column(BigId)
    user_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("core_user.id", ondelete="RESTRICT"))
    deal_id: Mapped[int | None] = mapped_column(BigId)
    kind: Mapped[str] = mapped_column(String(10))
    origin: Mapped[str] = mapped_column(String(10))
    origin_id: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[Decimal]
    base: Mapped[Decimal]
    line_id: Mapped[int | None] = mapped_column(BigId)
    plan_id: Mapped[int | None] = mapped_column(BigId)
    original_id: Mapped[int | None] = mapped_column(BigId)
    adjusts_period_id: Mapped[int | None] = mapped_column(BigId)
    #: the entry's origin (a win, a refund, an override) has entries in more than one branch, so in more
    #: than one period: only those are summed across periods when a lock reconciles (:mod:`.closing`)
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    occurred_at: Mapped[datetime]
    created_at: Mapped[datetime]
