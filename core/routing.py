"""Who gets new leads: the decision hooks, asked per batch, with an explanation per lead.

The steps are hooks (``choose_team``, ``exclude_candidates``, ``choose_owner``,
``check_assign``) so any plugin can take one over; the core's own answers (rules,
strategies, capacity, working hours) live in the built-in plugin ``core``
(``trylast``, :mod:`pelago.core.default_plugin`). :func:`route` decides for a
batch of leads and writes nothing but the team's round-robin pointer, which is
what lets a preview run it inside a rolled-back savepoint.

Hooks are asked per batch, not per lead: an import of 100,000 leads asks each
plugin a few hundred times, not a few hundred thousand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, event, select, update
from sqlalchemy.orm import Session, SessionTransaction

from .asking import first_answers
from .context import HookContext
from .db import TenantSession
from .models import Team
from .routing_config import routing_config
from .snapshots import LeadInfo, TeamInfo, UserInfo


@dataclass(frozen=True)
class TeamChoice:
    """A ``choose_team`` answer: the team, and why."""

    team_id: int
    reason: str
    rule: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OwnerChoice:
    """A ``choose_owner`` answer. ``user_id=None`` leaves the lead unowned on purpose."""

    user_id: int | None
    reason: str
    rule: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Assignment:
    """A proposed ownership change, as ``check_assign`` sees it (``user=None`` releases)."""

    lead: LeadInfo
    user: UserInfo | None
    reason: str


@dataclass
class Decision:
    """The outcome of routing one lead, with everything needed to explain it."""

    team_id: int | None
    owner_id: int | None  # None: the lead stays unowned (the explanation says why)
    rule: str | None
    explanation: dict[str, Any]


def candidates_of(ctx: HookContext, team_id: int) -> list[UserInfo]:
    """Active reps and managers of the team, on leave or not (exclusion explains leave).

    From the tenant's cached routing configuration (:mod:`pelago.core.routing_config`).
    """
    return routing_config(ctx.session, ctx.tenant.id).candidates(team_id)


#: ``session.info`` key: round-robin pointers decided but not yet written, ``{team_id: (tenant_id, pointer)}``
POINTERS = "pelago_rr_pointers"
#: ``session.info`` key: the pending pointers as each open savepoint found them, ``{SessionTransaction: pending}``
SAVED = "pelago_rr_pointers_saved"


def set_pointer(ctx: HookContext, team_id: int, pointer: int) -> None:
    """Move the team's round-robin pointer (its row is locked by :func:`route`).

    On PostgreSQL, outside a savepoint, the write waits for the line's last
    statement (:func:`take_pointers`, folded into it), one round trip fewer
    while the team's row is locked; anything left is written before the
    commit, and before the next :func:`route` of the transaction locks the
    teams again. Elsewhere (SQLite, a savepoint) it is written now; in a
    savepoint a pointer still pending for the team is moved too, or the
    commit would write the older one over it (a rollback of the savepoint
    puts the pending pointers back as the savepoint found them).
    """
    session = ctx.session
    if session.get_bind().dialect.name == "postgresql":
        pending = session.info.get(POINTERS)
        if not session.in_nested_transaction():
            session.info.setdefault(POINTERS, {})[team_id] = (ctx.tenant.id, pointer)
            return
        if pending and team_id in pending:
            pending[team_id] = (ctx.tenant.id, pointer)
    session.execute(update(Team).where(Team.id == team_id).values(rr_pointer=pointer)
                    .execution_options(synchronize_session=False))


def take_pointers(session: Session) -> list[tuple[int, int, int]]:
    """The pointers waiting to be written, as ``(tenant_id, team_id, pointer)``; the caller writes them."""
    pending = session.info.pop(POINTERS, None) or {}
    return [(tenant, team, pointer) for team, (tenant, pointer) in sorted(pending.items())]


def write_pointers(session: Session) -> None:
    """Write the pointers still waiting (one UPDATE each); none is waiting afterwards.

    Inside a savepoint too: a rollback of the savepoint undoes the write and
    puts the pending pointers back as the savepoint found them
    (:func:`_restore_pointers`), so the outer transaction's decision stands.
    """
    for tenant_id, team_id, pointer in take_pointers(session):
        session.execute(
            update(Team).where(Team.tenant_id == tenant_id, Team.id == team_id).values(rr_pointer=pointer)
            .execution_options(synchronize_session=False, all_tenants=True)
        )


@event.listens_for(TenantSession, "before_commit")
def _write_pointers(session: Session) -> None:
    if session.info.get(POINTERS) and not session.in_nested_transaction():
        write_pointers(session)


@event.listens_for(TenantSession, "after_transaction_create")
def _save_pointers(session: Session, transaction: SessionTransaction) -> None:
    """A savepoint keeps the pending pointers it starts with, for its rollback (no SQL here)."""
    if transaction.nested and session.info.get(POINTERS):
        session.info.setdefault(SAVED, {})[transaction] = dict(session.info[POINTERS])


@event.listens_for(TenantSession, "after_rollback")
def _restore_pointers(session: Session) -> None:
    """The rolled-back savepoint's pointers as it found them; none after the transaction's rollback.

    Runs before the rolled-back transaction is closed: the innermost open
    savepoint is the one rolled back.
    """
    savepoint = session.get_nested_transaction()
    if savepoint is None:
        session.info.pop(POINTERS, None)
        return
    saved = (session.info.get(SAVED) or {}).get(savepoint)
    if saved:
        session.info[POINTERS] = dict(saved)
    else:
        session.info.pop(POINTERS, None)


@event.listens_for(TenantSession, "after_transaction_end")
def _drop_pointers(session: Session, transaction: SessionTransaction) -> None:
    """Nothing outlives the transaction, however it ends (``Session.close()`` rolls back without the event)."""
    saved = session.info.get(SAVED)
    if saved:
        saved.pop(transaction, None)
    if transaction.parent is None:
        session.info.pop(POINTERS, None)
        session.info.pop(SAVED, None)


def route(ctx: HookContext, leads: Sequence[LeadInfo], *, reason: str = "routing") -> list[Decision]:
    """Decide team and owner for each of ``leads`` (in order), asking each hook once per batch.

    A lead with ``team_id`` set keeps that team. Teams are locked (``FOR
    UPDATE``) in id order while their owners are chosen, so concurrent batches
    for one team take turns and the strategy's counts stay exact.
    """
    if ctx.session.info.get(POINTERS):
        write_pointers(ctx.session)  # the teams' rows must hold this transaction's pointers before they are read
    decisions = [Decision(None, None, None, {}) for _ in leads]
    teams: dict[int, TeamInfo] = {}
    undecided: list[int] = []
    for i, lead in enumerate(leads):
        if lead.team_id is not None:
            decisions[i].team_id = lead.team_id
            decisions[i].explanation["team"] = {"team_id": lead.team_id, "reason": "given by the caller"}
        else:
            undecided.append(i)
    for i, choice in first_answers(ctx, "choose_team", undecided, lambda idx: {"leads": [leads[j] for j in idx]}):
        decisions[i].team_id = choice.team_id
        decisions[i].explanation["team"] = {
            "team_id": choice.team_id, "reason": choice.reason, "rule": choice.rule, **dict(choice.detail),
        }
    wanted = sorted({d.team_id for d in decisions if d.team_id is not None})
    if wanted:
        teams = {t.id: t for t in _lock_teams(ctx, wanted)}

    by_team: dict[int, list[int]] = {}
    for i, d in enumerate(decisions):
        if d.team_id is None:
            d.explanation.setdefault("team", {"team_id": None, "reason": "no team chosen"})
            continue
        team = teams.get(d.team_id)
        if team is None or not team.active:
            why = "does not exist in this tenant" if team is None else "is inactive"
            rule = d.explanation["team"].get("rule") or "a plugin"
            d.explanation["team"] = {"team_id": None, "reason": f"{rule} chose team {d.team_id}, which {why}"}
            d.team_id = None
            continue
        by_team.setdefault(team.id, []).append(i)

    candidates: dict[int, UserInfo] = {}
    for team_id, members in by_team.items():
        candidates.update((u.id, u) for u in _choose_owners(
            ctx, teams[team_id], [leads[i] for i in members], [decisions[i] for i in members]))
    _apply_vetoes(ctx, leads, decisions, reason, candidates)
    return decisions


_LOCK_TEAMS = ("SELECT id, name, strategy, active, rr_pointer FROM core_team WHERE tenant_id = %(tenant)s "
               "AND id = ANY(%(ids)s) ORDER BY id FOR UPDATE")
_LOCK_TEAMS_CORE = (select(Team.id, Team.name, Team.strategy, Team.active, Team.rr_pointer)
                    .where(Team.id.in_(bindparam("ids", expanding=True))).order_by(Team.id).with_for_update())


def _lock_teams(ctx: HookContext, ids: list[int]) -> list[TeamInfo]:
    """The tenant's teams of ``ids``, locked (``FOR UPDATE``) in id order, as read under the lock.

    Their columns only, no ORM object to load (a Team already in the session
    is left as it is: the pointer's new value is set on it when one moves).
    On PostgreSQL the driver's SQL as it is (``exec_driver_sql``: no compiling per call), prepared by
    psycopg once it has run a few times on the connection: the request's hot path.
    """
    session = ctx.session
    if session.get_bind().dialect.name == "postgresql":
        session.flush()  # a pending change to a team counts under the lock, as with an ORM query's autoflush
        rows = session.connection().exec_driver_sql(_LOCK_TEAMS, {"tenant": ctx.tenant.id, "ids": ids}).all()
    else:
        rows = list(session.execute(_LOCK_TEAMS_CORE, {"ids": ids}))
    return [TeamInfo(id=r[0], name=r[1], strategy=r[2], active=r[3], rr_pointer=r[4]) for r in rows]


def _choose_owners(
    ctx: HookContext, info: TeamInfo, leads: list[LeadInfo], decisions: list[Decision]
) -> list[UserInfo]:
    """Decide the owners of ``info``'s leads; returns the team's candidates (the owners are among them)."""
    candidates = candidates_of(ctx, info.id)
    excluded: dict[int, str] = {}
    for result in ctx.hooks.exclude_candidates(ctx=ctx, team=info, candidates=candidates, leads=leads):
        for user_id, why in (result or {}).items():
            excluded.setdefault(int(user_id), str(why))
    eligible = [u for u in candidates if u.id not in excluded]
    shared = {
        "strategy": info.strategy,
        "candidates": [u.id for u in candidates],
        "excluded": {str(k): v for k, v in excluded.items()},
    }
    for d in decisions:
        d.explanation.update(shared)
    if not eligible:
        for d in decisions:
            d.explanation["owner"] = {"user_id": None, "reason": "no eligible candidate in the team"}
        return candidates
    allowed = {u.id for u in eligible}
    answered = first_answers(
        ctx, "choose_owner", list(range(len(leads))),
        lambda idx: {"team": info, "candidates": eligible, "leads": [leads[j] for j in idx]},
    )
    decided: set[int] = set()
    for j, owner in answered:
        if owner.user_id is not None and owner.user_id not in allowed:
            raise ValueError(f"choose_owner returned user {owner.user_id}, who is not an eligible candidate")
        decided.add(j)
        d = decisions[j]
        d.owner_id, d.rule = owner.user_id, owner.rule
        d.explanation["owner"] = {"user_id": owner.user_id, "reason": owner.reason, "rule": owner.rule,
                                  **dict(owner.detail)}
    for j, d in enumerate(decisions):
        if j not in decided:
            d.explanation["owner"] = {"user_id": None, "reason": "no plugin chose an owner"}
    return candidates


def _apply_vetoes(
    ctx: HookContext, leads: Sequence[LeadInfo], decisions: list[Decision], reason: str, users: Mapping[int, UserInfo]
) -> None:
    """Routing must not fail intake: a vetoed choice leaves the lead unowned, with the reason.

    ``users``: the candidates already loaded; every chosen owner is one of them.
    """
    proposed = [i for i, d in enumerate(decisions) if d.owner_id is not None]
    if not proposed:
        return
    assignments = [Assignment(leads[i], users[decisions[i].owner_id], reason) for i in proposed]  # type: ignore[index]
    from .vetoes import vetoes

    for k, (plugin, message) in vetoes(ctx, assignments).items():
        d = decisions[proposed[k]]
        d.explanation["owner"] = {
            "user_id": None, "reason": f"{message} (vetoed by {plugin})",
            "vetoed_user_id": d.owner_id, "plugin": plugin,
        }
        d.owner_id, d.rule = None, None


def default_intake_team(ctx: HookContext) -> int | None:
    """The tenant's default intake team (``PATCH /api/v1/routing/settings``), or ``None``.

    The team the core's own ``choose_team`` falls back to; a plugin that
    places leads itself (the settlement plugin's division, when every branch
    is full) uses it for its own fallback. From the tenant's routing
    configuration as the caller's transaction sees it (cached per routing
    version; an edit in this transaction is seen).
    """
    return routing_config(ctx.session, ctx.tenant.id).default_team_id


def day_start(ctx: HookContext, at: datetime | None = None) -> datetime:
    """Midnight of ``at`` (default now) in the tenant's timezone: "today" for daily counts."""
    local = (at or ctx.now()).astimezone(ctx.tenant.tz)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)
