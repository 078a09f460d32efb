"""SMS nurturing's console pages (``/console/p/sms_nurture/``): sequences and their steps, templates with
the preview, messages with their status and drop reasons.

Built on the console's plugin page contract (docs/console.md, "Adding a
page"). Forms are read with the API's schemas (``console_form``), so an
unknown variable in a template body is refused at the body field exactly as
the API refuses it, and acted on through :mod:`.sequences`, the functions
the API views call. Everyone reads; managers write, as in the API.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from flask import request
from sqlalchemy import func, select

from pelago.plugin import (
    CONSOLE_PAGE,
    Conflict,
    DashboardPanel,
    HookContext,
    InvalidInput,
    NotFound,
    console_bars,
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

from . import schemas as s
from . import sequences, text
from .models import Evidence, Message, SmsSequence, Template

pages = console_blueprint("sms_nurture", __name__)
PAGE = CONSOLE_PAGE
STATUSES = ("queued", "sending", "sent", "delivered", "failed", "skipped", "dropped")


def _templates() -> list[tuple[int, str]]:
    return [(t.id, t.name) for t in current_context().session.scalars(select(Template).order_by(Template.name))]


# -- sequences ------------------------------------------------------------------------------------------

@pages.get("/")
def sequence_list(*, errors: dict[str, Any] | None = None, error: str | None = None, status: int = 200) -> Any:
    """Every sequence with its trigger, status and number of steps; managers make a new one."""
    c = current_context()
    page = paginate(c.session, select(SmsSequence), SmsSequence.id, request.args.get("cursor"), PAGE)
    return render_page("sms_nurture/sequences.html", items=[sequences.sequence_out(c, q) for q in page.items],
                       next_cursor=page.next_cursor, triggers=s.TRIGGERS, errors=errors or {}, error=error,
                       form=request.form), status


@pages.post("/sequences")
@console_requires("manager")
def sequence_create() -> Any:
    done = console_submit(s.SmsSequenceIn(), lambda data: sequences.create_sequence(current_context(), data))
    if done.value is None:
        return sequence_list(errors=done.errors, error=done.error, status=done.status)
    return console_redirect(".sequence_page", console_text("Sequence {name} created.", name=done.value.name),
                            sequence_id=done.value.id)


@pages.get("/sequences/<int:sequence_id>")
def sequence_page(sequence_id: int, *, errors: dict[str, Any] | None = None, error: str | None = None,
                  status: int = 200) -> Any:
    """A sequence: its steps, its numbers; managers pause or resume it and add steps."""
    c = current_context()
    seq = sequences.get_sequence(c, sequence_id)
    templates = _templates()
    return render_page("sms_nurture/sequence.html", seq=sequences.sequence_out(c, seq),
                       stats=sequences.stats(c, seq), templates=templates, template_names=dict(templates),
                       errors=errors or {}, error=error, form=request.form), status


@pages.post("/sequences/<int:sequence_id>/status")
@console_requires("manager")
def sequence_status(sequence_id: int) -> Any:
    """Pause (nothing is planned or sent) or resume, through the API's own update."""
    c = current_context()
    data, errors = console_form(s.SmsSequencePatch(), {"status": request.form.get("status", "")}, keep=("status",))
    if errors:
        return sequence_page(sequence_id, errors=errors, error=console_refused()[0], status=422)
    sequences.update_sequence(c, sequences.get_sequence(c, sequence_id), data)
    word = console_text("Paused.") if data["status"] == "paused" else console_text("Resumed.")
    return console_redirect(".sequence_page", word, sequence_id=sequence_id)


@pages.post("/sequences/<int:sequence_id>/steps")
@console_requires("manager")
def step_add(sequence_id: int) -> Any:
    c = current_context()
    seq = sequences.get_sequence(c, sequence_id)
    done = console_submit(s.SmsStepIn(), lambda data: sequences.add_step(c, seq, data))
    if done.error is not None:
        return sequence_page(sequence_id, errors=done.errors, error=done.error, status=done.status)
    return console_redirect(".sequence_page", console_text("Step added."), sequence_id=sequence_id)


# -- templates ------------------------------------------------------------------------------------------

def _preview(body: str, lead_id: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The API's preview of ``body`` (for ``lead_id`` when given), or the field errors that prevent it."""
    _, errors = console_form(s.SmsTemplateIn(), {"name": "-", "body": body})  # the API's check of a body
    if errors.get("body"):
        return None, {"body": errors["body"]}
    args, errors = console_form(s.SmsPreviewArgs(), {"body": body, "lead_id": lead_id})
    if errors:
        return None, errors
    try:
        return sequences.preview(current_context(), args["body"] or "", args.get("lead_id")), {}
    except NotFound as exc:
        return None, {"lead_id": [exc.message]}


@pages.get("/templates")
def template_list() -> Any:
    c = current_context()
    page = paginate(c.session, select(Template), Template.id, request.args.get("cursor"), PAGE)
    return render_page("sms_nurture/templates.html", items=[sequences.template_out(t) for t in page.items],
                       next_cursor=page.next_cursor, variables=text.VARIABLES)


@pages.get("/templates/new")
@console_requires("manager")
def template_new() -> Any:
    return _template_form(None, {"name": "", "body": "", "provider_template_id": ""}, {}, None, None)


@pages.get("/templates/<int:template_id>")
def template_page(template_id: int) -> Any:
    """A template with its preview (the variables' names, or a lead's values with ``?lead_id=``)."""
    t = sequences.get_template(current_context(), template_id)
    shown, errors = _preview(t.body, request.args.get("lead_id", ""))
    values = {"name": t.name, "body": t.body, "provider_template_id": t.provider_template_id or "",
              "lead_id": request.args.get("lead_id", "")}
    return _template_form(t.id, values, errors, None, shown)


def _template_form(template_id: int | None, values: dict[str, Any], errors: dict[str, Any], error: str | None,
                   shown: dict[str, Any] | None, status: int = 200) -> Any:
    return render_page("sms_nurture/template.html", template_id=template_id, values=values, errors=errors,
                       error=error, shown=shown, variables=text.VARIABLES), status


@pages.post("/templates")
@pages.post("/templates/<int:template_id>")
@console_requires("manager")
def template_save(template_id: int | None = None) -> Any:
    """Save a new or changed template, or (``action=preview``) only show its preview; nothing is written then."""
    c = current_context()
    existing = sequences.get_template(c, template_id) if template_id is not None else None
    values = {k: request.form.get(k, "") for k in ("name", "body", "provider_template_id", "lead_id")}
    if request.form.get("action") == "preview":
        shown, errors = _preview(values["body"].strip(), values["lead_id"])
        return _template_form(template_id, values, errors, console_refused()[0] if errors else None, shown,
                              422 if errors else 200)
    data, errors = console_form(s.SmsTemplateIn() if existing is None else s.SmsTemplatePatch(), request.form)
    if errors:
        return _template_form(template_id, values, errors, console_refused()[0], None, 422)
    try:
        t = sequences.create_template(c, data) if existing is None else sequences.update_template(c, existing, data)
    except (InvalidInput, Conflict) as exc:
        message, errors = console_refused(exc)
        return _template_form(template_id, values, errors, message, None, exc.status)
    return console_redirect(".template_page", console_text("Template {name} saved.", name=t.name),
                            template_id=t.id)


# -- messages ---------------------------------------------------------------------------------------------

@pages.get("/messages")
def message_list() -> Any:
    """The outbox, newest first, with each message's status and the reason of a skip or drop; filters as the API's."""
    c = current_context()
    args, errors = console_form(s.SmsMessageArgs(), request.args)
    items: list[Message] = []
    next_cursor = None
    if not errors:
        q = select(Message)
        for key in ("lead_id", "sequence_id", "status"):
            if args.get(key):
                q = q.where(getattr(Message, key) == args[key])
        try:
            page = paginate(c.session, q, Message.id, args["cursor"], PAGE)
        except InvalidInput as exc:
            errors = dict(exc.errors or {"cursor": [exc.message]})
        else:
            items, next_cursor = list(page.items), page.next_cursor
    names = dict(c.session.execute(select(SmsSequence.id, SmsSequence.name)).all())
    filters = {k: request.args.get(k, "") for k in ("lead_id", "sequence_id", "status")}
    return render_page("sms_nurture/messages.html", items=items, next_cursor=next_cursor, errors=errors,
                       statuses=STATUSES, sequences=sorted(names.items()), sequence_names=names, filters=filters)


def week(ctx: HookContext, days: int = 7) -> Mapping[str, Any]:
    """The dashboard panel's figures: the messages planned in the last 7 days by status, and the opt-outs.

    Two grouped counts over the tenant's rows; for managers and admins.
    """
    since = ctx.now() - timedelta(days=days)
    by_status = dict(ctx.session.execute(
        select(Message.status, func.count()).where(Message.planned_at >= since).group_by(Message.status)).all())
    opt_outs = ctx.session.scalar(select(func.count()).select_from(Evidence).where(
        Evidence.kind == "suppress", Evidence.at >= since)) or 0
    return {"chart": console_bars([(st, by_status.get(st, 0)) for st in STATUSES]), "opt_outs": opt_outs,
            "total": sum(by_status.values())}


PANELS = (DashboardPanel("week", "SMS messages, last 7 days", "sms_nurture/_week_panel.html", week, "manager"),)

MESSAGES = {"zh-CN": {
    "SMS nurturing": "短信培育",
    "Automatic SMS sequences for unconverted leads, with quiet hours and opt-out.": "为未转化线索自动发送短信序列，支持免打扰时段与退订。",
    "provider": "短信服务商",
    "the provider that sends: log (default), http, or a provider plugin's name": "发送短信的服务商：log（默认）、http 或服务商插件的名称",
    "signature": "短信签名",
    "the tenant's signature, sent as 【signature】 before every text": "本组织的短信签名，以【签名】形式加在每条短信前",
    "window start": "发送时段开始",
    "no message is sent before this local time": "当地时间早于此时不发送短信",
    "window end": "发送时段结束",
    "nor after this one (may be earlier than start: the window crosses midnight)": "晚于此时也不发送（可早于开始时间：时段跨越午夜）",
    "validity minutes": "有效分钟数",
    "a message not sent this long after its planned time is dropped": "超过计划时间这么久仍未发送的短信将被丢弃",
    "daily cap": "每日上限",
    "most messages to one phone per local day, all sequences": "每个号码每个当地自然日最多收到的短信数（所有序列合计）",
    "weekly cap": "每周上限",
    "most messages to one phone in the last 7 local days": "每个号码最近 7 个当地自然日最多收到的短信数",
    "require consent": "需要同意",
    "send only to phones with consent on record": "只发送给有同意记录的号码",
    "region timezones": "地区时区",
    "a lead's region → its IANA timezone, for its quiet hours": "线索地区 → 其 IANA 时区，用于免打扰时段",
    "messages claimed per transaction": "每个事务领取的短信数",
    "how long a claim holds its messages; a crashed sender's are reconciled after it": "领取的短信被占用的时长；发送进程崩溃后，其短信在此之后对账",
    "http send url": "HTTP 发送地址",
    "http status url": "HTTP 状态查询地址",
    "http secret": "HTTP 密钥",
    "SMS messages, last 7 days": "近 7 天短信",
    "Opt-outs": "退订",
    "sms": "短信",
    "SMS planned ({sequence})": "短信待发送（{sequence}）",
    "SMS being sent ({sequence})": "短信发送中（{sequence}）",
    "SMS sent ({sequence})": "短信已发送（{sequence}）",
    "SMS delivered ({sequence})": "短信已送达（{sequence}）",
    "SMS failed ({sequence})": "短信发送失败（{sequence}）",
    "SMS not sent ({sequence})": "短信未发送（{sequence}）",
    "Opted out of SMS": "已退订短信",
    "SMS opt-out removed": "已取消短信退订",
    "SMS consent recorded": "已记录短信同意",
    "SMS reply": "短信回复",
    "SMS reply (opt-out)": "短信回复（退订）",
    "SMS sequences": "短信培育序列",
    "SMS templates": "短信模板",
    "SMS messages": "短信记录",
    "Sequence": "序列",
    "Sequence name": "序列名称",
    "Template name": "模板名称",
    "Sequences": "序列",
    "New sequence": "新建序列",
    "Trigger": "触发条件",
    "Hours without contact": "未联系小时数",
    "manual": "手动",
    "not_contacted": "未联系",
    "pool_released": "释放到公海",
    "pool_recycle_due": "即将回收",
    "Steps": "步骤",
    "Step": "步骤",
    "Add step": "添加步骤",
    "Template": "模板",
    "Templates": "模板",
    "Delay (minutes)": "延迟（分钟）",
    "Delay from": "延迟起点",
    "previous": "上一步",
    "enrolment": "加入序列",
    "Send window start": "发送时段开始",
    "Send window end": "发送时段结束",
    "Pause": "暂停",
    "Resume": "恢复",
    "Paused.": "已暂停。",
    "Resumed.": "已恢复。",
    "Step added.": "已添加步骤。",
    "Sequence {name} created.": "已创建序列 {name}。",
    "Template {name} saved.": "已保存模板 {name}。",
    "paused": "已暂停",
    "Enrolled": "已加入",
    "Sent": "已发送",
    "Delivered": "已送达",
    "Failed": "失败",
    "Skipped": "已跳过",
    "Dropped": "已丢弃",
    "Replied": "已回复",
    "Opted out": "已退订",
    "Converted": "已转化",
    "New template": "新建模板",
    "Body": "正文",
    "Variables": "变量",
    "Provider template id": "服务商模板编号",
    "Preview": "预览",
    "Preview for lead": "按线索预览",
    "Characters": "字符数",
    "Segments": "条数",
    "Encoding": "编码",
    "Known variables": "可用变量",
    "Save": "保存",
    "Create": "创建",
    "Status": "状态",
    "Reason": "原因",
    "Lead": "线索",
    "Text": "内容",
    "Filter": "筛选",
    "any": "全部",
    "queued": "排队中",
    "sending": "发送中",
    "sent": "已发送",
    "delivered": "已送达",
    "failed": "失败",
    "skipped": "已跳过",
    "dropped": "已丢弃",
    "No messages.": "没有短信。",
}}
