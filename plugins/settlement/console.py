"""Settlement's console pages (``/console/p/settlement/``): branches and their teams, the distribution
policy's versions, branch statements with the period lock, a deal's credits.

Built on the console's plugin page contract (docs/console.md, "Adding a
page"). Forms are read with the API's own schemas (``console_form``) and
acted on through the same functions the API views call (``make_branch``,
``place_team``, ``make_policy``, ``closing.lock`` …), so a page accepts,
refuses and shows exactly what the API would, to the same roles: everyone
reads the branches they may see (admins all, others their team's), managers
read policies and statements, admins write.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import redirect, request, url_for
from marshmallow import ValidationError
from sqlalchemy import delete, select

from pelago.plugin import (
    CONSOLE_PAGE,
    Conflict,
    DashboardPanel,
    HookContext,
    InvalidInput,
    NotFound,
    Team,
    User,
    console_bars,
    console_blueprint,
    console_form,
    console_redirect,
    console_refused,
    console_requires,
    console_submit,
    console_text,
    current_context,
    flush_or_conflict,
    render_page,
)

from . import closing, statements
from . import schemas as s
from .api import branches as branch_api
from .api import credits as credit_api
from .api import ledger as ledger_api
from .api import policies as policy_api
from .models import Branch, BranchDay, BranchTeam, Period, Policy

pages = console_blueprint("settlement", __name__)

PAGE = CONSOLE_PAGE


def _visible_branches() -> list[Branch]:
    c = current_context()
    stmt = select(Branch).order_by(Branch.id)
    allowed = branch_api.visible_branch_ids(c)
    if allowed is not None:
        stmt = stmt.where(Branch.id.in_(sorted(allowed)))
    return list(c.session.scalars(stmt))


def _people() -> dict[int, str]:
    return {i: name or email for i, name, email in
            current_context().session.execute(select(User.id, User.name, User.email))}


# -- branches -------------------------------------------------------------------------------------------

@pages.get("/")
def branch_list(*, errors: dict[str, Any] | None = None, error: str | None = None, status: int = 200) -> Any:
    """The branches the user may read with their teams; admins get the form for a new one."""
    c = current_context()
    found = _visible_branches()
    teams = branch_api._teams(c, [b.id for b in found])
    names = dict(c.session.execute(select(Team.id, Team.name)).all())
    return render_page("settlement/branches.html", branches=found, teams=teams, team_names=names,
                       errors=errors or {}, error=error, form=request.form), status


@pages.post("/branches")
@console_requires("admin")
def branch_create() -> Any:
    done = console_submit(s.BranchCreate(), lambda data: branch_api.make_branch(current_context(), data))
    if done.value is None:
        return branch_list(errors=done.errors, error=done.error, status=done.status)
    return console_redirect(".branch_page", console_text("Branch {name} created.", name=done.value.name),
                            branch_id=done.value.id)


@pages.get("/branches/<int:branch_id>")
def branch_page(branch_id: int, *, errors: dict[str, Any] | None = None, error: str | None = None,
                status: int = 200) -> Any:
    """A branch, its teams (admins: edit it, put a team in, take one out)."""
    c = current_context()
    branch = branch_api.get_branch(c, branch_id)
    rows = c.session.execute(
        select(BranchTeam.team_id, Team.name).join(Team, Team.id == BranchTeam.team_id)
        .where(BranchTeam.branch_id == branch_id).order_by(BranchTeam.team_id)
    ).all()
    others = c.session.execute(select(Team.id, Team.name).where(Team.active.is_(True)).order_by(Team.name)).all()
    return render_page("settlement/branch.html", branch=branch, teams=rows, others=others, errors=errors or {},
                       error=error, form=request.form if errors or error else None), status


@pages.post("/branches/<int:branch_id>")
@console_requires("admin")
def branch_edit(branch_id: int) -> Any:
    c = current_context()
    source = {**request.form, "active": "true" if request.form.get("active") else "false"}
    data, errors = console_form(s.BranchPatch(), source)
    if errors:
        return branch_page(branch_id, errors=errors, error=console_refused()[0],
                           status=422)
    branch = branch_api.get_branch(c, branch_id, lock=True)
    for name, value in data.items():
        setattr(branch, name, value)
    branch.updated_at = c.now()
    try:
        flush_or_conflict(c.session, console_text("A branch with this name exists."),
                          {"name": [console_text("already taken")]})
    except Conflict as exc:
        message, errors = console_refused(exc)
        return branch_page(branch_id, errors=errors, error=message, status=exc.status)
    return console_redirect(".branch_page", console_text("Saved."), branch_id=branch_id)


@pages.post("/branches/<int:branch_id>/teams")
@console_requires("admin")
def team_put(branch_id: int) -> Any:
    c = current_context()
    team_id = request.form.get("team_id", "")
    if not team_id.isdigit():
        return branch_page(branch_id, errors={"team_id": [console_text("Choose a team.")]},
                           error=console_refused()[0], status=422)
    try:
        branch_api.place_team(c, branch_id, int(team_id))
    except NotFound as exc:
        return branch_page(branch_id, errors={"team_id": [exc.message]}, error=exc.message, status=422)
    return console_redirect(".branch_page", console_text("Team added."), branch_id=branch_id)


@pages.post("/branches/<int:branch_id>/teams/<int:team_id>/remove")
@console_requires("admin")
def team_remove(branch_id: int, team_id: int) -> Any:
    c = current_context()
    branch_api.get_branch(c, branch_id)
    gone = c.session.execute(
        delete(BranchTeam).where(BranchTeam.team_id == team_id, BranchTeam.branch_id == branch_id)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not gone:
        raise NotFound(f"team {team_id} is not in branch {branch_id}")
    return console_redirect(".branch_page", console_text("Team removed."), branch_id=branch_id)


# -- distribution policy -----------------------------------------------------------------------------

@pages.get("/policies")
@console_requires("manager")
def policy_list(*, errors: dict[str, Any] | None = None, error: str | None = None, status: int = 200) -> Any:
    """Every version of every source's policy, newest first; admins make the next version."""
    c = current_context()
    found = list(c.session.scalars(select(Policy).order_by(Policy.id.desc()).limit(PAGE)))
    branches = [b for b in _visible_branches() if b.active]
    teams: dict[int, list[tuple[int, str]]] = {b.id: [] for b in branches}
    for branch_id, team_id, name in c.session.execute(
        select(BranchTeam.branch_id, BranchTeam.team_id, Team.name).join(Team, Team.id == BranchTeam.team_id)
        .order_by(Team.name)
    ):
        if branch_id in teams:
            teams[branch_id].append((team_id, name))
    return render_page("settlement/policies.html", policies=policy_api._out(c, found), branches=branches,
                       teams=teams, errors=errors or {}, error=error,
                       form=request.form if errors or error else None), status


def _policy_body() -> tuple[dict[str, Any], dict[str, Any]]:
    """The posted form as ``PolicyCreate`` input: one entry per branch given a weight."""
    f = request.form
    entries: list[dict[str, Any]] = []
    rows: list[int] = []  # entry index -> branch id, to put errors at the branch's fields
    for key in f:
        if key.startswith("weight-") and f[key].strip():
            branch_id = key.removeprefix("weight-")
            entry: dict[str, Any] = {"branch_id": _int(branch_id), "weight": _int(f[key]),
                                     "team_id": _int(f.get(f"team-{branch_id}", ""))}
            cap = f.get(f"cap-{branch_id}", "").strip()
            entry["daily_cap"] = _int(cap) if cap else None
            entries.append(entry)
            rows.append(entry["branch_id"] if isinstance(entry["branch_id"], int) else 0)
    body = {"source": f.get("source", "").strip() or None, "note": f.get("note", "").strip(), "entries": entries}
    try:
        return s.PolicyCreate().load(body), {}
    except ValidationError as exc:
        return {}, _by_branch(exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}, rows)


def _int(text: str) -> Any:
    text = text.strip()
    return int(text) if text.isdigit() else text  # a non-number goes to the schema, which names the field


def _by_branch(errors: dict[str, Any], rows: list[int]) -> dict[str, Any]:
    """``{"entries": {"0": {"weight": [...]}}}`` → ``{"weight-<branch>": [...]}``, for the form's fields."""
    out = {k: v for k, v in errors.items() if k != "entries"}
    entries = errors.get("entries")
    if isinstance(entries, dict):
        for index, fields in entries.items():
            if str(index).isdigit() and isinstance(fields, dict) and int(index) < len(rows):
                field_of = {"weight": "weight", "team_id": "team", "daily_cap": "cap", "branch_id": "weight"}
                for name, messages in fields.items():
                    out[f"{field_of.get(name, 'weight')}-{rows[int(index)]}"] = messages
            else:
                out.setdefault("entries", []).append(str(fields))
    elif entries:
        out["entries"] = entries
    return out


@pages.post("/policies")
@console_requires("admin")
def policy_create() -> Any:
    c = current_context()
    data, errors = _policy_body()
    if errors:
        return policy_list(errors=errors, error=console_refused()[0], status=422)
    try:
        policy = policy_api.make_policy(c, data)
    except (InvalidInput, Conflict) as exc:
        message, raw = console_refused(exc)
        rows = [e["branch_id"] for e in data["entries"]]
        return policy_list(errors=_by_branch(raw, rows), error=message, status=exc.status)
    return console_redirect(".policy_list", console_text("Version {version} saved.", version=policy.version))


# -- statements and periods -------------------------------------------------------------------------

@pages.get("/statements")
@console_requires("manager")
def statement(*, error: str | None = None, errors: dict[str, Any] | None = None, status: int = 200) -> Any:
    """A branch's statement for a period (default: the current one); admins lock a period."""
    c = current_context()
    branches = _visible_branches()
    args, arg_errors = console_form(s.StatementArgs(), request.args)
    chosen = request.args.get("branch_id", "")
    branch_id = int(chosen) if chosen.isdigit() else (branches[0].id if branches else None)
    if branch_id is not None and branch_id not in {b.id for b in branches}:
        raise NotFound(f"branch {branch_id} not found")  # another tenant's, or not the manager's branch
    out = None
    if branch_id is not None and not arg_errors:
        try:
            period = ledger_api._branch_period(c, branch_id, args.get("period"))
            out = statements.branch_statement(c, period)
        except InvalidInput as exc:
            arg_errors = dict(exc.errors or {})
    names = _people()
    periods = list(c.session.scalars(select(Period).where(Period.branch_id == branch_id)
                                     .order_by(Period.key.desc()).limit(24))) if branch_id else []
    return render_page("settlement/statement.html", branches=branches, branch_id=branch_id, out=out,
                       periods=periods, names=names, period_key=request.args.get("period", ""),
                       errors={**arg_errors, **(errors or {})}, error=error), status


@pages.post("/periods/lock")
@console_requires("admin")
def period_lock() -> Any:
    c = current_context()
    data, errors = console_form(s.LockArgs())
    if errors:
        return statement(errors=errors, error=console_refused()[0], status=422)
    try:
        if data.get("branch_id") is not None:
            branch_api.get_branch(c, data["branch_id"])
        locked = [closing.lock(c, p, c.actor.user_id if c.actor else None)
                  for p in ledger_api.periods_to_lock(c, data["period"], data.get("branch_id"))]
    except (InvalidInput, Conflict) as exc:
        message, raw = console_refused(exc)
        if isinstance(exc, Conflict) and raw:
            message = f"{message}: {raw}"
        return statement(errors={"period": raw.get("period", [message])}, error=message, status=exc.status)
    return console_redirect(".statement", console_text("Locked {n} period(s).", n=len(locked)),
                            branch_id=data.get("branch_id") or "", period=data["period"])


@pages.get("/deals/<int:deal_id>/credits")
@console_requires("manager")
def deal_credits(deal_id: int) -> Any:
    """Every version of a deal's credits, newest first (managers: deals credited to their branch)."""
    c = current_context()
    out = credit_api._credits(c, deal_id)
    names = _people()
    branch_names = dict(c.session.execute(select(Branch.id, Branch.name)).all())
    return render_page("settlement/credits.html", out=out, names=names, branch_names=branch_names)


@pages.get("/deals")
@console_requires("manager")
def deal_lookup() -> Any:
    """The statement page's "deal credits" box: go to the deal's credits."""
    deal = request.args.get("deal_id", "").strip()
    if not deal.isdigit():
        return statement(errors={"deal_id": [console_text("A deal number.")]},
                         error=console_refused()[0], status=422)
    return redirect(url_for(".deal_credits", deal_id=int(deal)))


def divided_today(ctx: HookContext) -> Mapping[str, Any] | None:
    """The dashboard panel's figures: leads divided today to each branch the user may see (none: no panel).

    Read from the daily counters the division keeps for the caps (one row per
    branch and day of the branch's own calendar), in one query.
    """
    branches = _visible_branches()
    if not branches:
        return None
    now = ctx.now()
    today = {b.id: now.astimezone(ZoneInfo(b.timezone)).date() for b in branches}
    days = {d + timedelta(days=k) for d in today.values() for k in (-1, 0, 1)}
    counts = {(branch, day): n for branch, day, n in ctx.session.execute(
        select(BranchDay.branch_id, BranchDay.day, BranchDay.allocated)
        .where(BranchDay.branch_id.in_(list(today)), BranchDay.day.in_(sorted(days))))}
    rows = [(b.name, counts.get((b.id, today[b.id]), 0)) for b in branches]
    return {"chart": console_bars(rows), "total": sum(n for _name, n in rows)}


PANELS = (DashboardPanel("today", "Leads divided today by branch", "settlement/_today_panel.html", divided_today,
                         "manager"),)

MESSAGES = {"zh-CN": {
    "first_purchase": "首次购买",
    "repurchase": "复购",
    "referral": "转介绍",
    "walk_in": "自然到访",
    "owner_at_win": "成交时的负责人",
    "first_owner": "首个负责人",
    "split": "分成",
    "Branches and settlement": "分公司与结算",
    "Branches, fair division of leads, attribution and commission.": "分公司、线索公平分配、业绩归属与提成。",
    "division": "线索分配",
    "divide new leads between branches by the distribution policies (choose_team); off: branches and policies are kept, routing ignores them": "按分配策略把新线索分给各分公司（choose_team）；关闭时保留分公司与策略，分配规则不再使用它们",
    "period months": "结算周期月数",
    "months per settlement period (1 monthly, 3 quarterly …), starting in January; choose before the first deal is settled": "每个结算周期的月数（1 为月结，3 为季结……），从一月开始；请在第一笔成交结算前选定",
    "referral sources": "转介绍来源",
    "a lead with one of these sources makes its deals 'referral' deals (attribution)": "来源为其中之一的线索，其成交算作“转介绍”成交（业绩归属）",
    "Leads divided today by branch": "今日各分部分配的线索",
    "Branches": "分公司",
    "Branch": "分公司",
    "Distribution policy": "分配策略",
    "Statements": "结算单",
    "New branch": "新建分公司",
    "Timezone": "时区",
    "Currency": "币种",
    "Active": "启用",
    "Inactive": "停用",
    "Teams": "团队",
    "Team": "团队",
    "Add team": "加入团队",
    "Remove from branch": "移出分公司",
    "Branch name": "分公司名称",
    "Edit branch": "编辑分公司",
    "Save": "保存",
    "Saved.": "已保存。",
    "Create": "创建",
    "Branch {name} created.": "已创建分公司 {name}。",
    "Team added.": "已加入团队。",
    "Team removed.": "已移出团队。",
    "Choose a team.": "请选择团队。",
    "already taken": "已被占用",
    "A branch with this name exists.": "已有同名分公司。",
    "Source": "来源",
    "the default policy": "默认策略",
    "Version": "版本",
    "Effective": "生效时间",
    "until": "至",
    "now": "当前",
    "Weight": "权重",
    "Daily cap": "每日上限",
    "Allocated": "已分配",
    "Note": "备注",
    "New version": "新版本",
    "Leave the weight empty to leave a branch out. Blank source: the default policy.":
        "权重留空即不参与分配。来源留空：默认策略。",
    "Version {version} saved.": "已保存版本 {version}。",
    "Period": "周期",
    "State": "状态",
    "open": "未结",
    "locked": "已锁定",
    "paid": "已付款",
    "Show": "查看",
    "Person": "人员",
    "Credited": "计入业绩",
    "Won": "成交",
    "Refunded": "退款",
    "Commission": "提成",
    "Clawed back": "追回",
    "Total": "合计",
    "Lock period": "锁定周期",
    "All branches": "全部分公司",
    "Locked {n} period(s).": "已锁定 {n} 个周期。",
    "Checksum": "校验和",
    "Deal credits": "成交业绩归属",
    "Deal": "成交",
    "A deal number.": "请输入成交编号。",
    "Amount": "金额",
    "current": "当前",
    "Situation": "情形",
    "Method": "方式",
    "Reason": "原因",
    "Percent": "比例",
    "Roles": "角色",
    "No branches.": "没有分公司。",
    "No policy yet.": "尚无分配策略。",
    "Periods": "周期",
}}
