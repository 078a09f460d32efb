"""The pool's part of privacy requests: its data in an export, and gone after an erasure.

The pool is the reference for plugin authors: it answers ``privacy_export``
and, on ``person_erased``, takes the person's leads out of its pools and
drops their reminders, even while it is switched off for the tenant.
"""

from __future__ import annotations

from datetime import timedelta
from types import MappingProxyType

from sqlalchemy import func, select

from pelago.plugin import Event, tenant_context
from pelago.plugins.pool import hooks
from pelago.plugins.pool.models import PoolEntry, Reminder

from .pool_helpers import claim, default_pool, into_pool, phone, pool_tenant

NOTE = "Li Na asked us to call after 8pm at home"


def released_with_a_reminder(t):
    """A lead the rep released into the default pool with a personal note, and a reminder sent about it."""
    number = phone()
    lead = t.lead(number, who="rep", name="Li Na")["id"]
    r = t.post("/api/v1/pool/release", "rep", json={"lead_ids": [lead], "reason": NOTE})
    assert r.status_code == 200 and r.get_json()["done"] == [lead]
    now = t.runtime.clock()
    with t.runtime.tenant_session(t.id) as s:
        s.add(Reminder(lead_id=lead, owner_id=t.users["rep"], due_at=now + timedelta(days=1), rule="no_follow_up",
                       sent_at=now))
        s.commit()
    return number, lead


def pool_rows(t, model, lead_id):
    with t.runtime.tenant_session(t.id) as s:
        return s.scalar(select(func.count()).select_from(model).where(model.lead_id == lead_id))


def test_an_export_carries_the_pools_entries_and_reminders(make_app):
    t = pool_tenant(make_app())
    number, lead = released_with_a_reminder(t)
    r = t.post("/api/v1/privacy/exports", json={"phone": number})
    assert r.status_code == 200, r.get_json()
    part = r.get_json()["plugins"]["pool"]
    [entry] = part["entries"]
    pool = default_pool(t)
    assert (entry["lead_id"], entry["pool_id"], entry["pool"], entry["reason"], entry["note"]) == (
        lead, pool["id"], pool["name"], "released", NOTE)
    assert entry["from_user_id"] == t.users["rep"]
    [reminder] = part["reminders"]
    assert (reminder["lead_id"], reminder["owner_id"], reminder["rule"]) == (lead, t.users["rep"], "no_follow_up")
    # A person the pool holds nothing about: no pool part at all.
    other = t.lead(phone(), name="Not pooled")
    assert "pool" not in t.post("/api/v1/privacy/exports", json={"phone": other["phone"]}).get_json()["plugins"]


def test_an_erasure_takes_the_person_out_of_the_pools_and_drops_the_reminders(make_app):
    t = pool_tenant(make_app())
    number, lead = released_with_a_reminder(t)
    [bystander] = into_pool(t)
    r = t.post("/api/v1/privacy/erasures", json={"phone": number, "reason": "asked"})
    assert r.status_code == 200 and r.get_json()["lead_ids"] == [lead]
    assert pool_rows(t, PoolEntry, lead) == 0 and pool_rows(t, Reminder, lead) == 0
    listed = t.get(f"/api/v1/pool/pools/{default_pool(t)['id']}/leads").get_json()["items"]
    assert [x["id"] for x in listed] == [bystander]  # the other lead stays in the pool
    r = claim(t, "rep2", bystander, lead)
    assert r.get_json() == {"done": [bystander], "refused": [
        {"lead_id": lead, "reason": "not in a pool you may claim from"}]}
    deliveries = t.get("/api/v1/deliveries", query_string={"plugin": "pool"}).get_json()["items"]
    assert [d["state"] for d in deliveries if d["event"] == "person_erased"] == ["delivered"]


def test_the_pool_erases_its_data_while_switched_off(make_app):
    t = pool_tenant(make_app())
    number, lead = released_with_a_reminder(t)
    assert t.put("/api/v1/plugins/pool", json={"enabled": False}).status_code == 200
    r = t.post("/api/v1/privacy/erasures", json={"phone": number, "reason": "asked"})
    assert r.status_code == 200
    assert pool_rows(t, PoolEntry, lead) == 0 and pool_rows(t, Reminder, lead) == 0
    # And the handler is idempotent: delivered again, it finds nothing and succeeds.
    event = Event(id=r.get_json()["event_id"], name="person_erased", tenant_id=t.id, created_at=t.runtime.clock(),
                  actor_id=None, items=(MappingProxyType({"lead_id": lead}),))
    with tenant_context(t.runtime, t.id) as ctx:
        hooks.person_erased(ctx, event)
    assert pool_rows(t, PoolEntry, lead) == 0 and pool_rows(t, Reminder, lead) == 0
