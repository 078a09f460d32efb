"""The pool's console pages (``/console/p/pool/``): pools, their leads, claim and release, days left, sweep preview.

The first user of the console's plugin page contract (docs/console.md,
"Adding a page"): every action goes through the same service functions as
the pool's API, so limits, cooldowns, hold caps and masked contacts are the
API's; a refused claim or release shows each lead's reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import request
from sqlalchemy import select

from pelago.plugin import (
    CONSOLE_PAGE,
    Conflict,
    DashboardPanel,
    HookContext,
    InvalidInput,
    NotFound,
    console_blueprint,
    console_notice,
    console_redirect,
    console_requires,
    console_text,
    current_context,
    ownerless_flows,
    render_page,
)

from . import pools, service
from . import sweep as sweeping
from .models import Pool

pages = console_blueprint("pool", __name__)
PAGE = CONSOLE_PAGE


def _ids(values: list[str]) -> list[int]:
    out = [int(v) for v in values if v.isdigit()]
    if not out:
        raise InvalidInput("choose at least one lead", {"lead_ids": ["choose at least one lead"]})
    return out


@pages.get("/")
def pool_list() -> Any:
    """The pools the user may use, and her held leads with the days left before each is recycled."""
    c = current_context()
    infos = pools.load(c, c.actor.user_id if c.actor else None)
    c.session.commit()  # the default pool may just have been created
    usable = sorted((i for i in infos.values() if pools.can_use(i, c.actor)), key=lambda i: i.id)
    names = dict(c.session.execute(select(Pool.id, Pool.name).where(Pool.id.in_([i.id for i in usable]))).all())
    me = c.actor.user_id if c.actor else None
    held = service.holdings(c, me, request.args.get("cursor"), PAGE)
    return render_page("pool/pools.html", pools=[(i, names.get(i.id, "")) for i in usable], held=held.items,
                       next_cursor=held.next_cursor)


@pages.get("/<int:pool_id>")
def pool_leads(pool_id: int) -> Any:
    c = current_context()
    info, _ = pools.visible(c, pool_id)
    pool = c.session.get(Pool, pool_id)
    if pool is None:  # pragma: no cover - visible() found it
        raise NotFound(f"pool {pool_id} not found")
    page = service.list_leads(c, pool_id, {}, request.args.get("cursor"), PAGE)
    c.session.commit()  # the caller's view count
    return render_page("pool/pool.html", pool=pool, leads=page.items, next_cursor=page.next_cursor,
                       can_admin=pools.can_admin(info, c.actor))


def _outcome_page(pool_id: int | None, message: str, refused: list[dict[str, Any]], status: int) -> Any:
    c = current_context()
    c.session.rollback()
    return render_page("pool/refused.html", pool_id=pool_id, error=message, refused=refused), status


@pages.post("/claim")
def claim() -> Any:
    """Claim the chosen leads; the refused ones are listed with the reason (all refused: the 409 page)."""
    c = current_context()
    pool_id = int(request.form["pool_id"]) if request.form.get("pool_id", "").isdigit() else None
    try:
        out = service.claim(c, _ids(request.form.getlist("lead_ids")), pool_id)
    except (Conflict, InvalidInput) as exc:
        refused = list((exc.errors or {}).get("refused", []))
        return _outcome_page(pool_id, exc.message, refused, exc.status)
    if out.refused:
        console_notice(console_text("Claimed {done}; refused: {refused}", done=len(out.done), refused="; ".join(
            f"{k}: {v}" for k, v in sorted(out.refused.items()))))
        return console_redirect(".pool_list")
    return console_redirect(".pool_list", console_text("Claimed {done}.", done=len(out.done)))


@pages.post("/release")
def release() -> Any:
    """Give held leads back, with a reason, into the chosen pool (or the lead's team's)."""
    c = current_context()
    pool_id = int(request.form["pool_id"]) if request.form.get("pool_id", "").isdigit() else None
    reason = (request.form.get("reason") or "").strip()
    try:
        if not reason or len(reason) > 500:
            raise InvalidInput("a reason is required", {"reason": ["1 to 500 characters"]})
        out = service.release(c, _ids(request.form.getlist("lead_ids")), reason, pool_id)
    except (Conflict, InvalidInput) as exc:
        refused = list((exc.errors or {}).get("refused", []))
        return _outcome_page(pool_id, exc.message, refused, exc.status)
    return console_redirect(".pool_list", console_text("Released {done}.", done=len(out.done)))


@pages.get("/sweep")
@console_requires("manager")
def sweep_preview() -> Any:
    """What the sweep would recycle now, under which rule (nothing is written)."""
    c = current_context()
    page = sweeping.preview(c, None, request.args.get("cursor"), PAGE)
    return render_page("pool/sweep.html", items=page.items, next_cursor=page.next_cursor)


def flows(ctx: HookContext, days: int = 30) -> Mapping[str, Any]:
    """The dashboard panel's figures: leads into the pool (lost their owner) and out of it, per day for 30 days.

    Read from the core's ownership ledger (``ownerless_flows``), so releases,
    recycles, claims and distributions all count; for managers and admins.
    """
    rows = ownerless_flows(ctx, ctx.now(), days)
    top = max([1, *(r.lost for r in rows), *(r.taken for r in rows)])
    bars = [(r.day, r.lost, r.taken, round(r.lost / top * 80), round(r.taken / top * 80)) for r in rows]
    return {"bars": bars, "total_in": sum(r.lost for r in rows), "total_out": sum(r.taken for r in rows)}


PANELS = (DashboardPanel("flows", "Pool inflow and outflow, 30 days", "pool/_flows_panel.html", flows, "manager"),)

MESSAGES = {"zh-CN": {
    "webhook url": "Webhook 地址",
    "pool events are POSTed here, signed; empty: no webhook": "公海事件以签名请求 POST 到此地址；留空表示不推送",
    "webhook secret": "Webhook 密钥",
    "HMAC-SHA256 key of X-Pelago-Signature": "X-Pelago-Signature 的 HMAC-SHA256 密钥",
    "sweep batch": "回收批量",
    "most leads the sweep releases per transaction": "回收任务每个事务最多释放的线索数",
    "Pool inflow and outflow, 30 days": "公海流入与流出（30 天）",
    "into the pool": "流入公海",
    "claimed or given out": "被领取或分配",
    "Public pool (公海)": "公海",
    "Unworked leads return to a pool by rule; others claim them, one winner per lead.":
        "未跟进的线索按规则回到公海，其他人领取，每条线索只有一个领取者。",
    "Pool": "公海",
    "Pools": "公海",
    "Sweep preview": "回收预览",
    "My held leads": "我持有的线索",
    "Days left": "剩余天数",
    "Rule": "规则",
    "never": "不回收",
    "Claim": "领取",
    "Release": "释放",
    "Release to": "释放到",
    "the lead's team's pool": "线索所属团队的公海",
    "Claimed {done}.": "已领取 {done} 条。",
    "Claimed {done}; refused: {refused}": "已领取 {done} 条；被拒绝：{refused}",
    "Released {done}.": "已释放 {done} 条。",
    "Refused": "被拒绝",
    "hidden": "已隐藏",
    "Entered": "进入时间",
    "Would go to": "将回收到",
}}
