"""Core-owned writes for plugins: activities in batches, stage changes, deals and refunds (``pelago.plugin``)."""

from __future__ import annotations

import json
from datetime import timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select, text

from pelago.plugin import (
    Activity,
    Deal,
    InvalidInput,
    Lead,
    NewActivity,
    NotFound,
    change_stage,
    log_activities,
    record_deal,
    refund_deal,
    tenant_context,
)
from pelago.testing import new_tenant


def test_log_activities_is_one_batch_and_one_event(app, clock):
    t = new_tenant(app)
    a, b = t.lead("13800138501")["id"], t.lead("13800138502")["id"]
    rep = t.users["rep"]
    earlier = clock() - timedelta(hours=2)
    with tenant_context(t.runtime, t.id) as ctx:
        ids = log_activities(ctx, [
            NewActivity(a, "sms", "自动短信 1"),                       # automatic: no user
            NewActivity(b, "call", "called", occurred_at=earlier, user_id=rep),
            NewActivity(b, "note", "older", occurred_at=earlier - timedelta(hours=1), user_id=rep),
        ])
        assert len(ids) == 3 and ids == sorted(ids)
    with tenant_context(t.runtime, t.id) as ctx:
        rows = ctx.session.execute(select(Activity.id, Activity.lead_id, Activity.kind, Activity.user_id)
                                   .where(Activity.id.in_(ids)).order_by(Activity.id)).all()
        assert [tuple(r) for r in rows] == [(ids[0], a, "sms", None), (ids[1], b, "call", rep), (ids[2], b, "note", rep)]
        last = dict(ctx.session.execute(select(Lead.id, Lead.last_activity_at).where(Lead.id.in_([a, b]))).all())
        assert last[a] is None  # an automatic activity is not a rep's follow-up
        assert last[b].astimezone(timezone.utc) == earlier.astimezone(timezone.utc)
        events = ctx.session.execute(text(
            "SELECT payload FROM core_event WHERE tenant_id = :t AND name = 'activity_logged'"), {"t": t.id}).scalars()
        payloads = [p if isinstance(p, dict) else json.loads(p) for p in events]
        assert [len(p["items"]) for p in payloads] == [3]


def test_log_activities_refuses_bad_batches_whole(app, clock):
    t = new_tenant(app)
    other = new_tenant(app)
    lead = t.lead("13800138503")["id"]
    foreign = other.lead("13800138504")["id"]
    for batch, error in (
        ([NewActivity(lead, "fax")], InvalidInput),
        ([NewActivity(lead, "sms", occurred_at=clock() + timedelta(minutes=5))], InvalidInput),
        ([NewActivity(lead, "sms", occurred_at=clock().replace(tzinfo=None))], InvalidInput),
        ([NewActivity(lead, "sms"), NewActivity(foreign, "sms")], NotFound),     # another tenant's lead
        ([NewActivity(lead, "call", user_id=other.users["rep"])], NotFound),     # another tenant's user
    ):
        with tenant_context(t.runtime, t.id) as ctx:
            with pytest.raises(error):
                log_activities(ctx, batch)
    with tenant_context(t.runtime, t.id) as ctx:
        assert ctx.session.scalars(select(Activity).where(Activity.lead_id == lead)).all() == []


def test_stage_deal_and_refund_through_the_core(app):
    t = new_tenant(app)
    lead = t.lead("13800138505")["id"]
    with tenant_context(t.runtime, t.id) as ctx:
        assert change_stage(ctx, lead, "contacted").stage == "contacted"
        with pytest.raises(InvalidInput):
            change_stage(ctx, lead, "lost")  # a lost lead needs a reason
    with tenant_context(t.runtime, t.id) as ctx:
        deal_id = record_deal(ctx, lead, amount="1000.00", product="60 课时")
    with tenant_context(t.runtime, t.id) as ctx:
        assert refund_deal(ctx, deal_id, amount=Decimal("400.00"), reason="退课")
        with pytest.raises(InvalidInput):
            refund_deal(ctx, deal_id, amount="600.01", reason="too much")
    with tenant_context(t.runtime, t.id) as ctx:
        deal = ctx.session.get(Deal, deal_id)
        assert deal.refunded == Decimal("400.00") and deal.kind == "first_purchase"
        assert ctx.session.get(Lead, lead).stage == "won"
    other = new_tenant(app)
    with tenant_context(other.runtime, other.id) as ctx:
        with pytest.raises(NotFound):
            change_stage(ctx, lead, "contacted")
        with pytest.raises(NotFound):
            refund_deal(ctx, deal_id, amount="1.00", reason="x")


def test_log_activities_skip_leaves_the_caller_out_of_the_delivery(make_app):
    """``skip``: the named plugin gets no delivery of the batch's ``activity_logged``; the others do."""
    from pelago.core.models.outbox import Delivery
    from tests.plugins import recorder

    t = new_tenant(make_app(["recorder"]))
    t.put("/api/v1/plugins/recorder", json={"enabled": True})
    lead = t.lead("13800138506")["id"]
    recorder.CALLS.clear()
    with tenant_context(t.runtime, t.id) as ctx:
        log_activities(ctx, [NewActivity(lead, "sms", "sent by the recorder")], skip=("recorder",))
    with tenant_context(t.runtime, t.id) as ctx:
        log_activities(ctx, [NewActivity(lead, "sms", "sent by someone else")])
    with tenant_context(t.runtime, t.id) as ctx:
        events = ctx.session.execute(text(
            "SELECT id FROM core_event WHERE tenant_id = :t AND name = 'activity_logged' ORDER BY id"),
            {"t": t.id}).scalars().all()
        assert len(events) == 2  # both stored
        delivered = ctx.session.scalars(select(Delivery.event_id).where(Delivery.plugin == "recorder",
                                                                        Delivery.event_id.in_(events))).all()
        assert delivered == [events[1]]
    assert len(recorder.calls("activity_logged", t.id)) == 1
