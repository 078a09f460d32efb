"""The demo tenant ``make run`` serves: people, teams, leads, a deal, routing and plugins on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from pelago.core.context import Actor, HookContext
from pelago.core.models import Lead, Team, Tenant, User
from pelago.core.runtime import Runtime
from pelago.core.services import admin, deals, leads, routing
from pelago.core.services.plugins import configure

SLUG = "demo"
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
                                  team_id=team.id, password="pelago-demo", now=now)
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
        for name in ctx.host.specs:
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
        if "conversions" in ctx.host.specs:
            _conversions(ctx)


def _routing(ctx: HookContext) -> None:
    """Auto-routing on: douyin leads by rule, the rest to Telesales; customers hand off to care."""
    telesales = ctx.session.scalars(select(Team).where(Team.name == "Telesales")).one()
    care = admin.create_team(ctx, {"name": "Customer care", "description": "repurchases"})
    admin.create_user(ctx.session, tenant_id=ctx.tenant.id, email="zhao@demo.pelago.dev", name="Zhao Care",
                      role="rep", team_id=care.id, password="pelago-demo", now=ctx.now())
    routing.save_rule(ctx, {"name": "douyin ads", "priority": 10, "team_id": telesales.id,
                            "match": {"source": ["douyin"]}})
    routing.update_settings(ctx, {"auto_routing": True, "default_team_id": telesales.id,
                                  "handoff_enabled": True, "repurchase_team_id": care.id})


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
