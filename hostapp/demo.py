"""The demo tenant ``make run`` serves: people, teams, leads, a deal, routing and plugins on."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select

from pelago.core.context import Actor, HookContext
from pelago.core.models import Lead, Team, Tenant, User
from pelago.core.runtime import Runtime
from pelago.core.services import admin, deals, leads, routing
from pelago.core.services.plugins import configure

SLUG = "demo"
#: every demo user's console password (printed by `make run`)
PASSWORD = "pelago-demo"
PEOPLE = [
    ("admin@demo.pelago.dev", "Ada Admin", "admin"),
    ("manager@demo.pelago.dev", "Mei Manager", "manager"),
    ("li@demo.pelago.dev", "Li Rep", "rep"),
    ("wang@demo.pelago.dev", "Wang Rep", "rep"),
]
LEADS = [
    ("张伟", "138 0013 8000", "baidu"), ("王芳", "139-0013-9001", "douyin"),
    ("李娜", "+86 137 0013 7002", "wechat"), ("刘洋", "136 0013 6003", "baidu"),
    ("陈静", "135 0013 5004", "site"), ("杨磊", "134 0013 4005", "douyin"),
    ("赵敏", "150 0015 0006", "site"), ("黄勇", "151 0015 1007", "baidu"),
]


@dataclass
class DemoInfo:
    tenant: str
    admin_key: str
    rep_key: str

    def banner(self, base: str) -> str:
        return "\n".join([
            "",
            "Pelago demo is ready.",
            f"  console:    {base}/console   (sign in as admin@demo.pelago.dev, manager@demo.pelago.dev,",
            f"              li@demo.pelago.dev or wang@demo.pelago.dev; password: {PASSWORD})",
            f"  API docs:   {base}/api/docs   (OpenAPI: {base}/api/openapi.json)",
            f"  tenant:     {self.tenant}",
            f"  admin key:  {self.admin_key}",
            f"  rep key:    {self.rep_key}   (li@demo.pelago.dev, sees only her leads)",
            "",
            "Try:",
            f"  curl -s {base}/api/v1/leads -H 'Authorization: Bearer {self.admin_key}'",
            f"  curl -s -X POST {base}/api/v1/leads -H 'Authorization: Bearer {self.admin_key}' \\",
            "       -H 'Content-Type: application/json' -d '{\"name\": \"周杰\", \"phone\": \"13912345678\"}'",
            "",
        ])


def seed(rt: Runtime) -> DemoInfo:
    """Create the demo tenant once; on later runs only mint fresh keys."""
    now = rt.clock()
    with rt.sessions() as session:
        tenant = session.scalars(select(Tenant).where(Tenant.slug == SLUG)).first()
        if tenant is None:
            tenant = admin.create_tenant(session, slug=SLUG, name="Demo Education Co.", now=now)
            team = Team(tenant_id=tenant.id, name="Telesales", description="first purchases", active=True,
                        created_at=now)
            session.add(team)
            session.flush()
            for email, name, role in PEOPLE:
                admin.create_user(session, tenant_id=tenant.id, email=email, name=name, role=role,
                                  team_id=team.id, password=PASSWORD, now=now)
            session.commit()
            _populate(rt, tenant.id)
        users = {u.email: u for u in session.scalars(select(User).where(User.tenant_id == tenant.id))}
        _, admin_key = admin.create_api_key(session, users[PEOPLE[0][0]], name="demo", now=now)
        _, rep_key = admin.create_api_key(session, users[PEOPLE[2][0]], name="demo", now=now)
        session.commit()
        return DemoInfo(SLUG, admin_key, rep_key)


def _populate(rt: Runtime, tenant_id: int) -> None:
    with rt.sessions() as session:
        people = {u.role + (u.email[:2] if u.role == "rep" else ""): u
                  for u in session.scalars(select(User).where(User.tenant_id == tenant_id))}
    manager = people["manager"]
    reps = [people["repli"], people["repwa"]]
    with rt.tenant_context(tenant_id, Actor(manager.id, "manager", tenant_id, manager.team_id)) as ctx:
        for name in _requirements_first(ctx):
            ctx = configure(ctx, name, enabled=True)
        for i, (name, phone, source) in enumerate(LEADS):
            owner = reps[i % 2].id if i < 6 else None
            result = leads.create_lead(ctx, {"name": name, "phone": phone, "source": source, "owner_id": owner},
                                       touch={"channel": "demo", "utm_source": source})
            lead = result.lead
            if i % 3 == 0:
                leads.log_activity(ctx, lead, "call", "首次电话，约了试听", ctx.now() - timedelta(hours=2))
            if i == 0:
                leads.change_stage(ctx, lead, "qualified")
                deals.record_deal(ctx, lead, amount="4980.00", product="K12 数学 48 课时")
            if i == 5:
                leads.change_stage(ctx, lead, "lost", "预算不足")
        ctx.session.flush()
        assert ctx.session.scalar(select(Lead.id).limit(1)) is not None
        _routing(ctx)
        _sms(ctx)
        if "scheduling" in ctx.host.specs:
            _scheduling(ctx, people["repwa"].id)
        if "settlement" in ctx.host.specs:
            admin_ = people["admin"]
            _settlement(replace(ctx, actor=Actor(admin_.id, "admin", tenant_id, admin_.team_id)))
        if "conversions" in ctx.host.specs:
            _conversions(ctx)


def _routing(ctx: HookContext) -> None:
    """Auto-routing on: douyin leads by rule, the rest to Telesales; customers hand off to care."""
    telesales = ctx.session.scalars(select(Team).where(Team.name == "Telesales")).one()
    care = admin.create_team(ctx, {"name": "Customer care", "description": "repurchases"})
    admin.create_user(ctx.session, tenant_id=ctx.tenant.id, email="zhao@demo.pelago.dev", name="Zhao Care",
                      role="rep", team_id=care.id, password=PASSWORD, now=ctx.now())
    routing.save_rule(ctx, {"name": "douyin ads", "priority": 10, "team_id": telesales.id,
                            "match": {"source": ["douyin"]}})
    routing.update_settings(ctx, {"auto_routing": True, "default_team_id": telesales.id,
                                  "handoff_enabled": True, "repurchase_team_id": care.id})


def _requirements_first(ctx: HookContext) -> list[str]:
    """The deployed plugins, each after the plugins it requires (they must be on first)."""
    specs, done = ctx.host.specs, []  # type: ignore[var-annotated]
    while len(done) < len(specs):
        ready = [n for n, s in specs.items() if n not in done and all(r in done for r in s.requires)]
        if not ready:  # pragma: no cover - the host refuses cycles at load
            break
        done.extend(ready)
    return done


def _sms(ctx: HookContext) -> None:
    """One nurturing sequence on the ``log`` provider; the lost lead is in it, with consent on record."""
    if "sms_nurture" not in ctx.host.specs:
        return
    from pelago.plugins.sms_nurture import enrolling, phones, sequences

    ctx = configure(ctx, "sms_nurture", settings={"provider": "log", "signature": "示例教育"})
    tpl = sequences.create_template(ctx, {"name": "试听邀约", "body": "{name}您好，{owner_name}老师为您预留了本周六的免费试听，回复1确认，回T退订"})
    seq = sequences.create_sequence(ctx, {"name": "预算不足的线索", "trigger": "lost", "trigger_reasons": ["预算不足"],
                                          "steps": [{"template_id": tpl.id, "delay_minutes": 60}]})
    lost = ctx.session.scalars(select(Lead).where(Lead.stage == "lost")).all()
    for lead in lost:
        if lead.phone:
            phones.consent(ctx, lead.phone, "demo", "报名表勾选：同意接收课程通知短信")
    enrolling.enrol(ctx, seq, [lead.id for lead in lost], "demo", "manual")


def _scheduling(ctx: HookContext, teacher_id: int) -> None:
    """Scheduling: a campus, a class with a weekly series, two students with accounts, a trial from a lead."""
    from datetime import datetime

    from pelago.plugins.scheduling import schedule, trials
    from pelago.plugins.scheduling.models import Campus, Course, Package, Room
    from pelago.plugins.scheduling.sales import sell

    campus = Campus(name="徐汇校区", timezone="Asia/Shanghai", created_at=ctx.now())
    course = Course(name="小学数学", subject=True)
    ctx.session.add_all([campus, course])
    ctx.session.flush()
    room = Room(campus_id=campus.id, name="A101", capacity=8)
    package = Package(course_id=course.id, name="数学 20 课时", hours=Decimal("20"), gift_hours=Decimal("2"),
                      price=Decimal("3600.00"), validity_days=90)
    ctx.session.add_all([room, package])
    ctx.session.flush()
    schedule.add_teacher(ctx, {"user_id": teacher_id, "subjects": "数学", "active": True})
    klass = schedule.create_class(ctx, {
        "name": "五年级数学 A", "kind": "small_group", "campus_id": campus.id, "course_id": course.id,
        "teacher_id": teacher_id, "room_id": room.id, "capacity": 6, "online": False, "hours_per_lesson": "1.5",
        "trial": False,
    })
    students = [ctx.session.scalars(select(Lead.id).where(Lead.name == n)).one() for n in ("李娜", "刘洋")]
    for lead_id in students:
        _, account_id = sell(ctx, lead_id, package.id)
        schedule.enrol(ctx, klass.id, lead_id, account_id)
    local = ctx.now().astimezone(ctx.tenant.tz)
    saturday = local.date() + timedelta(days=(5 - local.weekday()) % 7 or 7)
    schedule.create_series(ctx, {
        "class_id": klass.id, "rrule": "FREQ=WEEKLY;BYDAY=SA;COUNT=10",
        "start": datetime.combine(saturday, datetime.min.time()).replace(hour=9).strftime("%Y-%m-%dT%H:%M"),
        "duration_minutes": 90, "holidays": "skip", "makeup_workdays": "skip", "unknown_days": "skip",
        "skip_dates": [],
    })
    first = min(ctx.session.scalars(schedule.list_lessons(ctx, {"class_id": klass.id})), key=lambda x: x.starts_at)
    trial_lead = ctx.session.scalars(select(Lead.id).where(Lead.name == "陈静")).one()
    trials.book(ctx, {"lead_id": trial_lead, "lesson_id": first.id})


def _settlement(ctx: HookContext) -> None:
    """Settlement: branches 上海 (Telesales, Customer care) and 武汉 (a small team 武汉电销 with one rep),
    ``baidu`` leads divided 60/40 between them, and a rep commission plan in each branch.

    Only ``baidu`` is divided, so the tenant's rule still sends ``douyin`` leads to Telesales and
    the other sources still go to the default team. Deals need no attribution rule: without one the
    plugin credits the owner at win. Written the way the plugin's routes write (their schemas and
    functions), as the admin (``ctx``'s actor).
    """
    from pelago.plugins.settlement import schemas as s
    from pelago.plugins.settlement.api.branches import make_branch, place_team
    from pelago.plugins.settlement.api.policies import make_policy
    from pelago.plugins.settlement.api.rules import make_plan

    teams = {t.name: t.id for t in ctx.session.scalars(select(Team))}
    wuhan_team = admin.create_team(ctx, {"name": "武汉电销", "description": "Wuhan branch intake"})
    admin.create_user(ctx.session, tenant_id=ctx.tenant.id, email="chen@demo.pelago.dev", name="Chen Rep",
                      role="rep", team_id=wuhan_team.id, password=PASSWORD, now=ctx.now())
    shanghai = make_branch(ctx, s.BranchCreate().load({"name": "上海", "timezone": "Asia/Shanghai"}))
    wuhan = make_branch(ctx, s.BranchCreate().load({"name": "武汉", "timezone": "Asia/Shanghai"}))
    place_team(ctx, shanghai.id, teams["Telesales"])
    place_team(ctx, shanghai.id, teams["Customer care"])
    place_team(ctx, wuhan.id, wuhan_team.id)
    make_policy(ctx, s.PolicyCreate().load({"source": "baidu", "note": "demo: baidu leads 60/40", "entries": [
        {"branch_id": shanghai.id, "team_id": teams["Telesales"], "weight": 60},
        {"branch_id": wuhan.id, "team_id": wuhan_team.id, "weight": 40},
    ]}))
    local = ctx.now().astimezone(ctx.tenant.tz)  # from the start of this month, so the seeded deals count
    month = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0).isoformat()
    for branch in (shanghai, wuhan):
        make_plan(ctx, s.PlanCreate().load({
            "branch_id": branch.id, "role": "rep", "mode": "marginal", "scope": "period", "effective_from": month,
            "tiers": [{"up_to": "50000.00", "rate": "0.05"}, {"up_to": None, "rate": "0.08"}],
        }))


#: The demo's ad channel and where its conversions go (the generic adapter: any JSON endpoint).
CONVERSIONS_CHANNEL = "douyin-ads"
CONVERSIONS_URL = "https://hooks.example.com/pelago/conversions"


def _conversions(ctx: HookContext) -> None:
    """A channel whose payloads carry the click (``clickid``), and its deals reported on the generic adapter.

    Nothing is sent at seed time: the demo's leads came in through another
    channel. A lead posted to ``douyin-ads`` with a ``clickid`` and then won
    queues one conversion for the account's endpoint (which the demo does
    not own: it ends ``failed`` after its retries, visible per lead).
    """
    from pelago.core.services import channels
    from pelago.plugins.conversions.models import Account, Rule

    channels.create_channel(ctx, {"name": CONVERSIONS_CHANNEL, "source": "douyin", "mapping": {
        "name": "name", "phone": "phone", "external_id": "clue_id", "click_id": "clickid",
        "utm_campaign": "campaign"}})
    account = Account(name="our receiver", adapter="generic", url=CONVERSIONS_URL, config={}, secret="",
                      in_doubt="hold", created_at=ctx.now())
    ctx.session.add(account)
    ctx.session.flush()
    ctx.session.add(Rule(name="douyin-ads deal won", account_id=account.id, match="channel",
                         channel=CONVERSIONS_CHANNEL, moment="deal_won", event_type="active_pay", window_days=30,
                         click_key="click_id", touch="last", send_value=True, active=True, created_at=ctx.now()))
    ctx.session.flush()
