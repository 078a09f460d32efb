"""Leads through the API: intake and merge, idempotency, lists, ownership, stages, activities."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from pelago.core.models import Lead, OwnershipChange, Touch


def count(t, model, **where):
    with t.runtime.sessions() as s:
        stmt = select(func.count()).select_from(model).where(model.tenant_id == t.id)
        for k, v in where.items():
            stmt = stmt.where(getattr(model, k) == v)
        return s.scalar(stmt)


def test_phone_is_normalised_and_duplicates_merge(tenant):
    first = tenant.post("/api/v1/leads", json={"name": "张伟", "phone": "138 0013 8000", "source": "baidu"})
    assert first.status_code == 201
    body = first.get_json()
    assert body["phone"] == "+8613800138000" and body["merged"] is False and body["stage"] == "new"
    for variant in ("+86 138-0013-8000", "008613800138000", "13800138000"):
        again = tenant.post("/api/v1/leads", json={"name": "other name", "phone": variant, "email": "zw@example.com"})
        assert again.status_code == 200, again.get_json()
        assert again.get_json()["id"] == body["id"] and again.get_json()["merged"] is True
    lead = tenant.get(f"/api/v1/leads/{body['id']}").get_json()
    assert lead["name"] == "张伟"  # never overwritten silently
    assert lead["email"] == "zw@example.com"  # an empty field is filled
    assert count(tenant, Lead) == 1 and count(tenant, Touch) == 4


def test_email_only_leads_merge_by_email(tenant):
    a = tenant.post("/api/v1/leads", json={"email": "Someone@Example.com"}).get_json()
    b = tenant.post("/api/v1/leads", json={"email": "someone@example.com"})
    assert b.status_code == 200 and b.get_json()["id"] == a["id"]
    with_phone = tenant.lead("13900139000", email="both@example.com")
    c = tenant.post("/api/v1/leads", json={"email": "both@example.com"})
    assert c.get_json()["id"] == with_phone["id"] and c.get_json()["merged"] is True


def test_same_phone_in_two_tenants_is_two_leads(tenant, other_tenant):
    a = tenant.lead("13800138000")
    b = other_tenant.lead("13800138000")
    assert a["id"] != b["id"] and b["merged"] is False


def test_idempotency_key_replays_the_first_result(tenant):
    h = {"Idempotency-Key": "order-42"}
    first = tenant.post("/api/v1/leads", json={"phone": "13700137000"}, headers=h)
    assert first.status_code == 201
    again = tenant.post("/api/v1/leads", json={"phone": "13700137000"}, headers=h)
    assert again.status_code == 200
    assert again.get_json()["id"] == first.get_json()["id"] and again.get_json()["replayed"] is True
    assert count(tenant, Touch) == 1
    via_body = tenant.post("/api/v1/leads", json={"phone": "13700137001", "external_id": "ext-1"})
    replay = tenant.post("/api/v1/leads", json={"phone": "13700137001", "external_id": "ext-1"})
    assert replay.get_json()["replayed"] is True and replay.get_json()["id"] == via_body.get_json()["id"]


def test_touch_keeps_utm_and_the_raw_submission(tenant):
    body = {"phone": "13600136000", "utm_source": "douyin", "utm_campaign": "spring", "click_id": "c1",
            "attributes": {"grade": "5"}}
    lead = tenant.post("/api/v1/leads", json=body).get_json()
    with tenant.runtime.sessions() as s:
        touch = s.scalars(select(Touch).where(Touch.lead_id == lead["id"])).one()
    assert (touch.utm_source, touch.utm_campaign, touch.click_id, touch.channel) == ("douyin", "spring", "c1", "api")
    assert touch.raw["attributes"] == {"grade": "5"}
    assert lead["attributes"] == {"grade": "5"}


def test_list_filters_and_cursor_pagination(tenant):
    ids = [tenant.lead(f"1380013{8100 + i:04d}", source="baidu" if i % 2 else "site")["id"] for i in range(7)]
    seen: list[int] = []
    cursor = None
    while True:
        url = "/api/v1/leads?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = tenant.get(url).get_json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)
    baidu = tenant.get("/api/v1/leads?source=baidu&limit=200").get_json()["items"]
    assert {i["id"] for i in baidu} == {ids[i] for i in range(7) if i % 2}
    found = tenant.get("/api/v1/leads?q=138-0013-8103").get_json()["items"]
    assert [i["id"] for i in found] == [ids[3]]
    assert tenant.get("/api/v1/leads?limit=201").status_code == 422
    assert tenant.get("/api/v1/leads?cursor=garbage").status_code == 422
    assert tenant.get("/api/v1/leads?stage=nope").status_code == 422


def test_reps_see_and_act_on_their_own_leads_only(tenant):
    mine = tenant.lead("13500135000", who="rep")
    assert mine["owner_id"] == tenant.users["rep"]
    theirs = tenant.lead("13500135001", who="rep2")
    unowned = tenant.lead("13500135002")
    listed = {i["id"] for i in tenant.get("/api/v1/leads", "rep").get_json()["items"]}
    assert listed == {mine["id"]}
    for lead in (theirs, unowned):
        assert tenant.get(f"/api/v1/leads/{lead['id']}", "rep").status_code == 404
        assert tenant.post(f"/api/v1/leads/{lead['id']}/activities", "rep", json={"kind": "call"}).status_code == 404
    assert tenant.post(f"/api/v1/leads/{mine['id']}/assign", "rep", json={"user_id": tenant.users["rep2"]}).status_code == 403
    r = tenant.post("/api/v1/leads", "rep", json={"phone": "13500135009", "owner_id": tenant.users["rep2"]})
    assert r.status_code == 403


def test_manager_reassigns_and_the_ledger_explains(tenant):
    lead = tenant.lead("13400134000")
    assert lead["owner_id"] is None
    r = tenant.post(f"/api/v1/leads/{lead['id']}/assign", "manager", json={"user_id": tenant.users["rep"], "note": "VIP"})
    assert r.status_code == 200 and r.get_json()["owner_id"] == tenant.users["rep"]
    r = tenant.post(f"/api/v1/leads/{lead['id']}/assign", "manager", json={"user_id": None, "note": "back"})
    assert r.get_json()["owner_id"] is None
    history = tenant.get(f"/api/v1/leads/{lead['id']}/history").get_json()["items"]
    ownership = [(h["reason"], h["from_user_id"], h["to_user_id"], h["note"]) for h in history if h["type"] == "ownership"]
    assert ownership == [
        ("created", None, None, ""),
        ("manual", None, tenant.users["rep"], "VIP"),
        ("manual", tenant.users["rep"], None, "back"),
    ]
    assert all(h["actor_id"] == tenant.users["manager"] for h in history if h["type"] == "ownership" and h["reason"] == "manual")
    bad = tenant.post(f"/api/v1/leads/{lead['id']}/assign", "manager", json={"user_id": 999999})
    assert bad.status_code == 422 and "user_id" in bad.get_json()["errors"]["json"]


def test_locked_lead_is_not_moved_by_rules(tenant):
    from pelago.core.errors import Conflict
    from pelago.core.services.leads import assign, get_lead

    lead = tenant.lead("13300133000", owner_id=tenant.users["rep"])
    assert tenant.patch(f"/api/v1/leads/{lead['id']}", "rep", json={"locked": True}).status_code == 403
    assert tenant.patch(f"/api/v1/leads/{lead['id']}", "manager", json={"locked": True}).get_json()["locked"] is True
    with tenant.runtime.tenant_context(tenant.id) as ctx:
        target = get_lead(ctx, lead["id"])
        try:
            assign(ctx, target, None, reason="recycled", rule="test rule")
        except Conflict as exc:
            assert "locked" in exc.message
        else:
            raise AssertionError("a rule moved a locked lead")
    assert tenant.get(f"/api/v1/leads/{lead['id']}").get_json()["owner_id"] == tenant.users["rep"]
    # A manager can still move it by hand.
    r = tenant.post(f"/api/v1/leads/{lead['id']}/assign", "manager", json={"user_id": tenant.users["rep2"]})
    assert r.status_code == 200


def test_stage_changes_and_lost_needs_a_reason(tenant):
    lead = tenant.lead("13200132000")
    r = tenant.post(f"/api/v1/leads/{lead['id']}/stage", json={"stage": "lost"})
    assert r.status_code == 422 and "lost_reason" in r.get_json()["errors"]["json"]
    assert tenant.post(f"/api/v1/leads/{lead['id']}/stage", json={"stage": "contacted"}).status_code == 200
    r = tenant.post(f"/api/v1/leads/{lead['id']}/stage", json={"stage": "lost", "lost_reason": "no budget"})
    assert r.get_json()["stage"] == "lost" and r.get_json()["lost_reason"] == "no budget"
    stages = [(h["old"], h["new"]) for h in tenant.get(f"/api/v1/leads/{lead['id']}/history").get_json()["items"] if h["type"] == "stage"]
    assert stages == [(None, "new"), ("new", "contacted"), ("contacted", "lost")]


def test_activities_move_last_activity_forward_only(tenant, clock):
    lead = tenant.lead("13100131000")
    now = clock()
    r = tenant.post(f"/api/v1/leads/{lead['id']}/activities", json={"kind": "call", "note": "hi"})
    assert r.status_code == 201
    old = (now.replace(hour=0)).isoformat()
    assert tenant.post(f"/api/v1/leads/{lead['id']}/activities", json={"kind": "note", "occurred_at": old}).status_code == 201
    got = tenant.get(f"/api/v1/leads/{lead['id']}").get_json()
    assert datetime.fromisoformat(got["last_activity_at"]) == now
    assert got["last_activity_at"].endswith("+08:00")  # shown in the tenant's timezone
    listed = tenant.get(f"/api/v1/leads/{lead['id']}/activities").get_json()["items"]
    assert [a["kind"] for a in listed] == ["note", "call"]
    future = now.replace(year=now.year + 1).isoformat()
    assert tenant.post(f"/api/v1/leads/{lead['id']}/activities", json={"kind": "call", "occurred_at": future}).status_code == 422
    assert tenant.post(f"/api/v1/leads/{lead['id']}/activities", json={"kind": "telepathy"}).status_code == 422


def test_patch_refuses_a_phone_that_belongs_to_another_lead(tenant):
    a = tenant.lead("13000130000")
    b = tenant.lead("13000130001")
    r = tenant.patch(f"/api/v1/leads/{b['id']}", json={"phone": "130 0013 0000"})
    assert r.status_code == 409
    assert tenant.get(f"/api/v1/leads/{b['id']}").get_json()["phone"] == "+8613000130001"
    assert a["id"] != b["id"]


def test_ledger_row_for_every_creation(tenant):
    tenant.lead("15000150000")
    tenant.lead("15000150001", owner_id=tenant.users["rep"])
    assert count(tenant, OwnershipChange) == 2


def test_a_reps_duplicate_of_a_colleagues_lead_is_a_collision_not_a_leak(tenant):
    theirs = tenant.lead("13500135100", who="rep2", name="秘密客户", email="vip@example.com")
    before = count(tenant, Touch)
    r = tenant.post("/api/v1/leads", "rep", json={"phone": "135 0013 5100"})
    assert r.status_code == 409
    body = r.get_json()
    assert body["errors"] == {"lead_id": theirs["id"], "owner_id": tenant.users["rep2"]}
    assert "秘密客户" not in r.get_data(as_text=True) and "vip@" not in r.get_data(as_text=True)
    assert count(tenant, Touch) == before
    own = tenant.post("/api/v1/leads", "rep2", json={"phone": "13500135100"})
    assert own.status_code == 200 and own.get_json()["merged"] is True


def test_a_lead_s_touches_can_be_read_like_the_lead(tenant, other_tenant):
    """Was write-only: attribution was stored and never shown."""
    first = tenant.post("/api/v1/leads", "rep", json={
        "name": "触点", "phone": "13800138660", "utm_source": "douyin", "utm_campaign": "spring", "click_id": "c-1"})
    lead = first.get_json()
    again = tenant.post("/api/v1/leads", json={"phone": "+86 138 0013 8660", "utm_campaign": "summer"})
    assert again.status_code == 200 and again.get_json()["merged"]
    url = f"/api/v1/leads/{lead['id']}/touches"
    items = tenant.get(url, "rep").get_json()["items"]
    assert [(t["utm_campaign"], t["merged"], t["channel"]) for t in items] == [
        ("summer", True, "api"), ("spring", False, "api")]
    assert items[1]["utm_source"] == "douyin" and items[1]["click_id"] == "c-1" and items[1]["lead_id"] == lead["id"]
    assert items[1]["received_at"].endswith("+08:00") and items[0]["id"] == again.get_json()["touch_id"]
    page = tenant.get(url, query_string={"limit": 1}).get_json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    rest = tenant.get(url, query_string={"limit": 1, "cursor": page["next_cursor"]}).get_json()
    assert rest["items"][0]["utm_campaign"] == "spring" and rest["next_cursor"] is None
    assert tenant.get(url, "rep2").status_code == 404  # not her lead
    assert other_tenant.get(url).status_code == 404


def test_a_merged_submission_adds_its_new_attributes_without_overwriting(tenant):
    """Was: a merged submission's attributes were dropped (only on the touch's raw payload)."""
    from pelago.core.attributes import MAX_KEYS

    lead = tenant.lead("13800138661", attributes={"grade": "三年级", "city": "杭州"})
    r = tenant.post("/api/v1/leads", json={"phone": "13800138661", "attributes": {"grade": "五年级", "school": "实验"}})
    assert r.status_code == 200 and r.get_json()["merged"] and r.get_json()["id"] == lead["id"]
    assert r.get_json()["attributes"] == {"grade": "三年级", "city": "杭州", "school": "实验"}
    # a lead at the limit keeps what it has; the submission stays whole on its touch
    full = tenant.lead("13800138662", attributes={f"k{i}": i for i in range(MAX_KEYS)})
    r = tenant.post("/api/v1/leads", json={"phone": "13800138662", "attributes": {"extra": 1}})
    assert r.status_code == 200 and "extra" not in r.get_json()["attributes"]
    assert len(r.get_json()["attributes"]) == MAX_KEYS and full["id"] == r.get_json()["id"]
