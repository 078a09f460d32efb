"""``/api/v1/settlement/branches``: the tenant's branches and which teams belong to them.

Admins write; managers and reps read their own branch (the one their team
belongs to), admins every branch. A branch still named by a policy or an
allocation cannot be deleted (409, the foreign keys decide): deactivate it
instead. Deleting an unused branch frees its teams.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select

from pelago.plugin import (
    HookContext,
    NotFound,
    Team,
    commit,
    current_context,
    flush_or_conflict,
    paginate,
    requires,
)

from .. import schemas as s
from ..models import Branch, BranchTeam
from . import blp


def visible_branch_ids(c: HookContext) -> set[int] | None:
    """The branches the caller may read: ``None`` for all (admins and the system)."""
    if c.actor is None or c.actor.at_least("admin"):
        return None
    if c.actor.team_id is None:
        return set()
    found = c.session.scalar(select(BranchTeam.branch_id).where(BranchTeam.team_id == c.actor.team_id))
    return {found} if found is not None else set()


def get_branch(c: HookContext, branch_id: int, *, lock: bool = False) -> Branch:
    """The tenant's branch, if the caller may read it; otherwise 404 (another tenant's too)."""
    allowed = visible_branch_ids(c)
    stmt = select(Branch).where(Branch.id == branch_id)
    if lock:
        stmt = stmt.with_for_update()
    branch = c.session.scalar(stmt) if allowed is None or branch_id in allowed else None
    if branch is None:
        raise NotFound(f"branch {branch_id} not found")
    return branch


def _teams(c: HookContext, branch_ids: list[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {b: [] for b in branch_ids}
    if branch_ids:
        for branch_id, team_id in c.session.execute(
            select(BranchTeam.branch_id, BranchTeam.team_id)
            .where(BranchTeam.branch_id.in_(branch_ids)).order_by(BranchTeam.team_id)
        ):
            out[branch_id].append(team_id)
    return out


def _out(branch: Branch, team_ids: list[int]) -> dict[str, Any]:
    return {
        "id": branch.id, "name": branch.name, "timezone": branch.timezone, "currency": branch.currency,
        "active": branch.active, "team_ids": team_ids, "created_at": branch.created_at,
        "updated_at": branch.updated_at,
    }


def _one(c: HookContext, branch: Branch) -> dict[str, Any]:
    return _out(branch, _teams(c, [branch.id])[branch.id])


@blp.route("/branches", methods=["GET"])
@blp.arguments(s.BranchListArgs, location="query")
@blp.response(200, s.BranchPage)
def list_branches(args: dict[str, Any]) -> Any:
    """List branches

    The branches the caller may read, newest first: admins every branch, managers and reps the
    branch of their team. `?active=` filters; `?cursor=` pages.
    """
    c = current_context()
    stmt = select(Branch)
    allowed = visible_branch_ids(c)
    if allowed is not None:
        stmt = stmt.where(Branch.id.in_(sorted(allowed)))
    if args.get("active") is not None:
        stmt = stmt.where(Branch.active.is_(args["active"]))
    page = paginate(c.session, stmt, Branch.id, args.get("cursor"), args["limit"])
    teams = _teams(c, [b.id for b in page.items])
    return {"items": [_out(b, teams[b.id]) for b in page.items], "next_cursor": page.next_cursor}


@blp.route("/branches", methods=["POST"])
@blp.arguments(s.BranchCreate)
@blp.response(201, s.Branch)
@requires("admin")
def create_branch(data: dict[str, Any]) -> Any:
    """Create a branch

    A new branch with its IANA timezone (its daily caps and periods count days in it) and currency
    (CNY when not given). Its name is unique in the tenant (409 otherwise). Admins only.
    """
    c = current_context()
    out = _one(c, make_branch(c, data))
    commit()
    return out


def make_branch(c: HookContext, data: dict[str, Any]) -> Branch:
    """Write a branch from ``s.BranchCreate``-loaded data (409 for a name taken); the caller commits."""
    now = c.now()
    branch = Branch(tenant_id=c.tenant.id, created_at=now, updated_at=now, **data)
    c.session.add(branch)
    flush_or_conflict(c.session, f"a branch named {data['name']!r} exists", {"name": ["already taken"]})
    return branch


@blp.route("/branches/<int:branch_id>", methods=["GET"])
@blp.response(200, s.Branch)
def show_branch(branch_id: int) -> Any:
    """Show a branch

    One branch with the ids of its teams. Another tenant's branch, or one the caller may not read,
    is a 404.
    """
    c = current_context()
    return _one(c, get_branch(c, branch_id))


@blp.route("/branches/<int:branch_id>", methods=["PATCH"])
@blp.arguments(s.BranchPatch)
@blp.response(200, s.Branch)
@requires("admin")
def patch_branch(data: dict[str, Any], branch_id: int) -> Any:
    """Change a branch

    Rename it, move it to another timezone or currency, or (de)activate it; only the fields given
    change. Admins only.
    """
    c = current_context()
    branch = get_branch(c, branch_id, lock=True)
    for name, value in data.items():
        setattr(branch, name, value)
    branch.updated_at = c.now()
    flush_or_conflict(c.session, f"a branch named {data.get('name')!r} exists", {"name": ["already taken"]})
    out = _one(c, branch)
    commit()
    return out


@blp.route("/branches/<int:branch_id>/deactivate", methods=["POST"])
@blp.response(200, s.Branch)
@requires("admin")
def deactivate_branch(branch_id: int) -> Any:
    """Deactivate a branch

    Stop dividing leads to the branch: policies skip it from the next lead on. Its teams, policies
    and allocations stay. Admins only.
    """
    c = current_context()
    branch = get_branch(c, branch_id, lock=True)
    if branch.active:
        branch.active = False
        branch.updated_at = c.now()
    out = _one(c, branch)
    commit()
    return out


@blp.route("/branches/<int:branch_id>", methods=["DELETE"])
@blp.response(204)
@requires("admin")
def delete_branch(branch_id: int) -> None:
    """Delete an unused branch

    Delete a branch that no policy entry or allocation names, freeing its teams; otherwise 409 (the
    foreign keys decide), and the branch stays: deactivate it instead. Admins only.
    """
    c = current_context()
    branch = get_branch(c, branch_id, lock=True)
    c.session.delete(branch)
    flush_or_conflict(
        c.session, f"branch {branch_id} is in use (policies or allocations name it); deactivate it instead",
    )
    commit()


@blp.route("/branches/<int:branch_id>/teams", methods=["GET"])
@blp.response(200, s.BranchTeamList)
def branch_teams(branch_id: int) -> Any:
    """List a branch's teams

    The teams that belong to the branch, by team id, with their names.
    """
    c = current_context()
    get_branch(c, branch_id)
    rows = c.session.execute(
        select(BranchTeam, Team.name).join(Team, Team.id == BranchTeam.team_id)
        .where(BranchTeam.branch_id == branch_id).order_by(BranchTeam.team_id)
    ).all()
    return {"items": [_team_out(bt, name) for bt, name in rows]}


def _team_out(bt: BranchTeam, name: str) -> dict[str, Any]:
    return {"team_id": bt.team_id, "team_name": name, "branch_id": bt.branch_id, "created_at": bt.created_at}


@blp.route("/branches/<int:branch_id>/teams/<int:team_id>", methods=["PUT"])
@blp.response(200, s.BranchTeam)
@requires("admin")
def put_team(branch_id: int, team_id: int) -> Any:
    """Put a team into a branch

    A team belongs to at most one branch: putting it into this one moves it from another. The team
    must be the tenant's (404 otherwise). Admins only.
    """
    c = current_context()
    row, name = place_team(c, branch_id, team_id)
    out = _team_out(row, name)
    commit()
    return out


def place_team(c: HookContext, branch_id: int, team_id: int) -> tuple[BranchTeam, str]:
    """Put the tenant's team into the branch (moving it from another); the caller commits."""
    get_branch(c, branch_id)
    team = c.session.scalar(select(Team).where(Team.id == team_id))
    if team is None:
        raise NotFound(f"team {team_id} not found")
    row = c.session.scalar(select(BranchTeam).where(BranchTeam.team_id == team_id).with_for_update())
    if row is None:
        row = BranchTeam(tenant_id=c.tenant.id, team_id=team_id, branch_id=branch_id, created_at=c.now())
        c.session.add(row)
    elif row.branch_id != branch_id:
        row.branch_id, row.created_at = branch_id, c.now()
    flush_or_conflict(c.session, f"team {team_id} was put into a branch meanwhile; retry")
    return row, team.name


@blp.route("/branches/<int:branch_id>/teams/<int:team_id>", methods=["DELETE"])
@blp.response(204)
@requires("admin")
def remove_team(branch_id: int, team_id: int) -> None:
    """Take a team out of a branch

    The team no longer belongs to any branch; 404 if it is not in this one. Admins only.
    """
    c = current_context()
    get_branch(c, branch_id)
    gone = c.session.execute(
        delete(BranchTeam).where(BranchTeam.team_id == team_id, BranchTeam.branch_id == branch_id)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not gone:
        raise NotFound(f"team {team_id} is not in branch {branch_id}")
    commit()


