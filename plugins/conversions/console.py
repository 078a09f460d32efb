"""Conversions' console pages (``/console/p/conversions/``): ad platform accounts (secrets never shown),
rules, the conversions sent with their status, and the channel funnel.

Built on the console's plugin page contract (docs/console.md, "Adding a
page"). Forms are read with the API's schemas (``console_form``) and written
by the functions the API views call (``make_account``, ``make_rule``); the
funnel is :func:`.funnel.report`. Roles as in the API: accounts are admins'
(their secret is write-only: the page says whether one is stored), rules,
conversions and the funnel are managers' and admins', new rules admins'.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import request
from sqlalchemy import select

from pelago.plugin import (
    CONSOLE_PAGE,
    Conflict,
    InvalidInput,
    console_blueprint,
    console_form,
    console_redirect,
    console_refused,
    console_requires,
    console_submit,
    console_text,
    current_context,
    paginate,
    render_page,
)

from . import api, funnel, sending
from . import schemas as s
from .models import MOMENTS, STATUSES, Account, Conversion, Rule

pages = console_blueprint("conversions", __name__)
PAGE = CONSOLE_PAGE
#: the moments' labels (translated in MESSAGES)
MOMENT_LABELS = {"valid_lead": "Valid lead", "first_contact": "First contact", "qualified": "Qualified lead",
                 "deal_won": "Deal won"}


def _config(text: str) -> dict[str, str] | str:
    """``key=value`` lines into the adapter's config dict; a line without ``=`` is returned as the error."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if "=" not in line:
            return console_text("One key=value per line: {line}", line=line.strip()[:50])
        key, value = line.split("=", 1)
        out[key.strip()] = value.strip()
    return out


# -- accounts (admins) -------------------------------------------------------------------------------------

@pages.get("/accounts")
@console_requires("admin")
def account_list(*, errors: dict[str, Any] | None = None, error: str | None = None, status: int = 200) -> Any:
    c = current_context()
    accounts = [api._account_out(a) for a in c.session.scalars(select(Account).order_by(Account.id))]
    form = {k: v for k, v in request.form.items() if k != "secret"}  # a refused form never echoes the token
    return render_page("conversions/accounts.html", accounts=accounts, adapters=sorted(sending.adapters(c)),
                       errors=errors or {}, error=error, form=form), status


@pages.post("/accounts")
@console_requires("admin")
def account_create() -> Any:
    c = current_context()
    config = _config(request.form.get("config", ""))
    if isinstance(config, str):
        return account_list(errors={"config": [config]}, error=console_refused()[0], status=422)
    source: dict[str, Any] = {**{k: v for k, v in request.form.items() if k != "config"}, "config": config}
    data, errors = console_form(s.ConversionsAccountIn(), source)
    if errors:
        return account_list(errors=_flat(errors), error=console_refused()[0], status=422)
    try:
        a = api.make_account(c, data)
    except (InvalidInput, Conflict) as exc:
        message, errors = console_refused(exc)
        return account_list(errors=_flat(errors), error=message, status=exc.status)
    return console_redirect(".account_list", console_text("Account {name} added.", name=a.name))


def _flat(errors: dict[str, Any]) -> dict[str, Any]:
    """The adapter's config errors (``{"config": {"key": [...]}}``) shown at the config field."""
    out = dict(errors)
    if isinstance(out.get("config"), dict):
        out["config"] = [f"{k}: {'; '.join(v) if isinstance(v, list) else v}" for k, v in out["config"].items()]
    return out


# -- rules (managers read, admins write) ---------------------------------------------------------------

@pages.get("/")
@console_requires("manager")
def rule_list(*, errors: dict[str, Any] | None = None, error: str | None = None, status: int = 200) -> Any:
    c = current_context()
    rules = [api._rule_out(r) for r in c.session.scalars(select(Rule).order_by(Rule.id))]
    names = dict(c.session.execute(select(Account.id, Account.name)).all())
    return render_page("conversions/rules.html", rules=rules, accounts=sorted(names.items()), account_names=names,
                       moments=MOMENTS, moment_labels=MOMENT_LABELS, errors=errors or {}, error=error, form=request.form), status


@pages.post("/rules")
@console_requires("admin")
def rule_create() -> Any:
    source = {**request.form, "send_value": "true" if request.form.get("send_value") else "false"}
    done = console_submit(s.ConversionsRuleIn(), lambda data: api.make_rule(current_context(), data), source)
    if done.value is None:
        return rule_list(errors=done.errors, error=done.error, status=done.status)
    return console_redirect(".rule_list", console_text("Rule {name} added.", name=done.value.name))


# -- conversions and the funnel (managers) -------------------------------------------------------------

@pages.get("/sent")
@console_requires("manager")
def conversion_list() -> Any:
    """Conversions newest first with their status and the platform's answer; the API's filters."""
    c = current_context()
    args, errors = console_form(s.ConversionsArgs(), request.args)
    items: list[dict[str, Any]] = []
    next_cursor = None
    if not errors:
        stmt = select(Conversion)
        for key in ("lead_id", "rule_id", "channel", "status"):
            if args.get(key) is not None:
                stmt = stmt.where(getattr(Conversion, key) == args[key])
        try:
            page = paginate(c.session, stmt, Conversion.id, args.get("cursor"), PAGE)
        except InvalidInput as exc:
            errors = dict(exc.errors or {"cursor": [exc.message]})
        else:
            items, next_cursor = [api._conversion_out(x) for x in page.items], page.next_cursor
    rules = dict(c.session.execute(select(Rule.id, Rule.name)).all())
    filters = {k: request.args.get(k, "") for k in ("lead_id", "rule_id", "channel", "status")}
    return render_page("conversions/sent.html", items=items, next_cursor=next_cursor, errors=errors,
                       statuses=STATUSES, moment_labels=MOMENT_LABELS, rules=sorted(rules.items()), rule_names=rules, filters=filters)


@pages.get("/funnel")
@console_requires("manager")
def funnel_page() -> Any:
    """The funnel of the leads created in a period (default the last 30 days), by channel or other touch fields."""
    c = current_context()
    today = c.now().astimezone(c.tenant.tz).date()
    given = {"start": request.args.get("start") or (today - timedelta(days=29)).isoformat(),
             "end": request.args.get("end") or today.isoformat(),
             "group_by": request.args.get("group_by") or "channel"}
    args, errors = console_form(s.ConversionsFunnelArgs(), given)
    report = None if errors else funnel.report(c, args["start"], args["end"], args["group_by"])
    return render_page("conversions/funnel.html", report=report, errors=errors, given=given,
                       dimensions=s.DIMENSIONS)


MESSAGES = {"zh-CN": {
    "conversion": "回传",
    "Conversion queued ({rule})": "回传排队中（{rule}）",
    "Conversion being sent ({rule})": "回传发送中（{rule}）",
    "Conversion sent ({rule})": "回传已发送（{rule}）",
    "Conversion accepted ({rule})": "回传已被平台接受（{rule}）",
    "Conversion rejected ({rule})": "回传被平台拒绝（{rule}）",
    "Conversion expired ({rule})": "回传已过期（{rule}）",
    "Conversion in doubt ({rule})": "回传状态未知（{rule}）",
    "Conversion failed ({rule})": "回传失败（{rule}）",
    "Conversions back to ad platforms (数据回传)": "数据回传",
    "Lifecycle moments reported once per lead and rule to ad platforms; each channel's funnel.": "按线索和规则向广告平台回传一次生命周期节点；各渠道的转化漏斗。",
    "batch": "每批数量",
    "conversions a worker claims per transaction": "每个事务中工作进程领取的回传条数",
    "lease seconds": "租约秒数",
    "how long a claimed conversion is a worker's; past it the worker counts as dead": "领取的回传归工作进程所有的时长；超过后视为该进程已失效",
    "max attempts": "最多尝试次数",
    "sends tried on transient errors (network, 5xx, 429) before a conversion fails": "遇到临时错误（网络、5xx、429）时在判定失败前的重试次数",
    "timeout seconds": "超时秒数",
    "seconds to wait for a platform's answer": "等待平台响应的秒数",
    "Conversions": "数据回传",
    "Conversion rules": "回传规则",
    "Ad accounts": "广告账户",
    "Conversions sent": "回传记录",
    "Channel funnel": "渠道漏斗",
    "Adapter": "适配器",
    "Endpoint URL": "接口地址",
    "Config (key=value per line)": "配置（每行 key=value）",
    "Access token": "访问令牌",
    "stored": "已保存",
    "not set": "未设置",
    "Leave empty to store none; it is never shown again.": "留空则不保存；保存后不再显示。",
    "In doubt": "状态未知时",
    "hold": "暂停待处理",
    "resend": "重发",
    "Add account": "添加账户",
    "Account {name} added.": "已添加账户 {name}。",
    "One key=value per line: {line}": "每行一个 key=value：{line}",
    "Account": "账户",
    "Match": "匹配",
    "channel": "渠道",
    "source": "来源",
    "Channel": "渠道",
    "Moment": "时机",
    "Valid lead": "有效线索",
    "First contact": "首次联系",
    "Qualified lead": "合格线索",
    "Deal won": "成交",
    "Rule name": "规则名称",
    "Account name": "账户名称",
    "Event type": "事件类型",
    "Window (days)": "归因窗口（天）",
    "Click key": "点击标识字段",
    "Send the deal's value": "回传成交金额",
    "Active": "启用",
    "Add rule": "添加规则",
    "Rule {name} added.": "已添加规则 {name}。",
    "Rule": "规则",
    "Status": "状态",
    "Attempts": "尝试次数",
    "Platform's answer": "平台回复",
    "Lead": "线索",
    "Filter": "筛选",
    "any": "全部",
    "queued": "排队中",
    "sending": "发送中",
    "sent": "已发送",
    "accepted": "已接受",
    "rejected": "被拒绝",
    "expired": "已过期",
    "in_doubt": "状态未知",
    "failed": "失败",
    "From": "开始日期",
    "To": "结束日期",
    "Group by": "分组",
    "Show": "查看",
    "Leads": "线索",
    "Duplicates": "重复",
    "Contacted": "已联系",
    "Qualified": "合格",
    "Won": "成交",
    "Revenue": "收入",
    "Reported": "已回传",
    "Accepted": "已接受",
    "Spend": "花费",
    "Cost per lead": "单条线索成本",
    "Total": "合计",
    "Median first contact (min)": "首次联系中位时间（分钟）",
    "Create": "创建",
    "No conversions.": "没有回传记录。",
}}
