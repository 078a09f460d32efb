"""The core-owned ownership changes (``pelago.plugin.change_owners`` and ``take_unowned``).

Every change of a lead's owner, by the core or a plugin, goes through them:
the lead row (owner, team, version), one ledger row per lead with its
explanation, and one ``lead_assigned`` / ``lead_released`` event carrying the
core's item shape. They are compare-and-set: a lead whose owner is no longer
the one the caller saw is reported, never overwritten.
"""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import func, select

from pelago.core.models import Lead, OutboxEvent, OwnershipChange
from pelago.plugin import Move, NotFound, change_owners, take_unowned, tenant_context
from tests.conftest import TenantHandle, new_tenant
from tests.plugins import recorder
from tests.test_concurrency import run_parallel

ASSIGNED_KEYS = {"lead_id", "from_user_id", "to_user_id", "team_id", "reason", "rule"}
RELEASED_KEYS = {"lead_id", "from_user_id", "reason", "rule"}


def _tenant(make_app, **settings) -> TenantHandle:
    t = new_tenant(make_app(("recorder",)))
    r = t.put("/api/v1/plugins/recorder", json={"enabled": True, "settings": settings})
    assert r.status_code == 200, r.get_json()
    return t


def _add_user(t: TenantHandle, name: str, team_id: int | None = None) -> int:
    r = t.post("/api/v1/users", json={"email": f"{name}@{t.slug}.test", "role": "rep", "team_id": team_id})
    assert r.status_code == 201, r.get_json()
    return r.get_json()["id"]


def _leads(t: TenantHandle, ids: list[int]) -> dict[int, Lead]:
    with t.runtime.sessions() as s:
        return {lead.id: lead for lead in s.scalars(select(Lead).where(Lead.id.in_(ids)))}


def _ledger(t: TenantHandle, ids: list[int]) -> list[OwnershipChange]:
    with t.runtime.sessions() as s:
        return list(s.scalars(select(OwnershipChange).where(OwnershipChange.lead_id.in_(ids))
                              .order_by(OwnershipChange.id)))


def _last_event_id(t: TenantHandle) -> int:
    with t.runtime.sessions() as s:
        return s.scalar(select(func.max(OutboxEvent.id)).where(OutboxEvent.tenant_id == t.id)) or 0


def _events_since(t: TenantHandle, after: int) -> list[tuple[str, list[dict]]]:
    with t.runtime.sessions() as s:
        rows = s.scalars(select(OutboxEvent).where(OutboxEvent.tenant_id == t.id, OutboxEvent.id > after)
                         .order_by(OutboxEvent.id))
        return [(e.name, e.payload["items"]) for e in rows]


# check=False on PostgreSQL is the one-statement path (CHANGE_SQL); check=True reads, asks, then writes.
@pytest.mark.parametrize("check", [True, False], ids=["asking", "not-asking"])
def test_change_owners_moves_a_batch_with_ledger_and_events(make_app, check):
    t = _tenant(make_app)
    rep, rep2 = t.users["rep"], t.users["rep2"]
    other_team = t.post("/api/v1/teams", json={"name": "Other"}).get_json()["id"]
    rep3 = _add_user(t, "rep3", other_team)
    a = t.lead("13800138601", owner_id=rep)["id"]
    b = t.lead("13800138602", owner_id=rep)["id"]
    c = t.lead("13800138603")["id"]
    d = t.lead("13800138604", owner_id=rep2)["id"]
    before = _leads(t, [a, b, c, d])
    assert before[c].owner_id is None
    mark = _last_event_id(t)
    recorder.CALLS.clear()

    with tenant_context(t.runtime, t.id) as ctx:
        moved = change_owners(ctx, [
            Move(a, rep, rep2, rule="test", detail={"why": "a to rep2"}),
            Move(b, rep, None, detail={"why": "released"}),
            Move(c, None, rep3, rule="test", detail={"why": "c to rep3"}),
            Move(d, rep2, rep2),  # already there: nothing to do, nothing written
        ], reason="manual", note="batch", check=check)
    assert moved.moved == [a, b, c] and moved.missed == [] and moved.refused == {}

    after = _leads(t, [a, b, c, d])
    assert {k: (v.owner_id, v.team_id) for k, v in after.items()} == {
        a: (rep2, t.team_id), b: (None, t.team_id), c: (rep3, other_team), d: (rep2, t.team_id),
    }
    assert {k: after[k].version - before[k].version for k in after} == {a: 1, b: 1, c: 1, d: 0}
    assert after[b].assigned_at is None and after[a].assigned_at is not None

    ledger = [row for row in _ledger(t, [a, b, c, d]) if row.note == "batch"]
    assert sorted((r.lead_id, r.from_user_id, r.to_user_id, r.to_team_id, r.reason, r.rule, r.detail["why"])
                  for r in ledger) == [
        (a, rep, rep2, t.team_id, "manual", "test", "a to rep2"),
        (b, rep, None, t.team_id, "manual", None, "released"),
        (c, None, rep3, other_team, "manual", "test", "c to rep3"),
    ]

    events = _events_since(t, mark)
    assert [name for name, _ in events] == ["lead_assigned", "lead_released"]
    assigned, released = events[0][1], events[1][1]
    assert all(set(item) == ASSIGNED_KEYS for item in assigned)
    assert all(set(item) == RELEASED_KEYS for item in released)
    assert sorted((i["lead_id"], i["from_user_id"], i["to_user_id"], i["team_id"]) for i in assigned) == [
        (a, rep, rep2, t.team_id), (c, None, rep3, other_team),
    ]
    assert released == [{"lead_id": b, "from_user_id": rep, "reason": "manual", "rule": None}]
    # Delivered to the plugins that are on, as one event each.
    assert [c["items"] for c in recorder.calls("lead_assigned", t.id)] == [assigned]
    assert [c["items"] for c in recorder.calls("lead_released", t.id)] == [released]


@pytest.mark.parametrize("check", [True, False], ids=["asking", "not-asking"])
def test_a_lead_whose_owner_changed_meanwhile_is_missed_and_not_written(make_app, check):
    t = _tenant(make_app)
    rep, rep2 = t.users["rep"], t.users["rep2"]
    stale = t.lead("13800138611", owner_id=rep2)["id"]  # the caller thinks rep has it
    fine = t.lead("13800138612", owner_id=rep)["id"]
    before = _leads(t, [stale, fine])
    ledger_before = len(_ledger(t, [stale]))
    mark = _last_event_id(t)

    with tenant_context(t.runtime, t.id) as ctx:
        moved = change_owners(ctx, [Move(stale, rep, None), Move(fine, rep, rep2)], reason="manual", check=check)
    assert moved.moved == [fine] and moved.missed == [stale] and moved.refused == {}
    after = _leads(t, [stale, fine])
    assert (after[stale].owner_id, after[stale].version) == (rep2, before[stale].version)
    assert after[fine].owner_id == rep2
    assert len(_ledger(t, [stale])) == ledger_before
    events = _events_since(t, mark)
    assert [(name, [i["lead_id"] for i in items]) for name, items in events] == [("lead_assigned", [fine])]

    # All missed: nothing at all is written, not even an empty event.
    mark = _last_event_id(t)
    with tenant_context(t.runtime, t.id) as ctx:
        moved = change_owners(ctx, [Move(stale, None, rep), Move(10**12, None, rep)], reason="manual", check=check)
    assert moved.moved == [] and sorted(moved.missed) == [stale, 10**12]
    assert _events_since(t, mark) == []


def test_vetoed_moves_are_left_out_naming_the_plugin(make_app):
    t = new_tenant(make_app(("recorder",)))
    rep, rep2 = t.users["rep"], t.users["rep2"]
    t.put("/api/v1/plugins/recorder", json={"enabled": True, "settings": {"veto_user_id": rep2}})
    refused = t.lead("13800138621", owner_id=rep)["id"]
    released = t.lead("13800138622", owner_id=rep)["id"]
    mark = _last_event_id(t)
    recorder.CALLS.clear()

    with tenant_context(t.runtime, t.id) as ctx:
        moved = change_owners(ctx, [Move(refused, rep, rep2), Move(released, rep, None)], reason="manual")
    assert moved.refused == {refused: ("recorder", "recorder vetoes this user")}
    assert moved.moved == [released] and moved.missed == []
    assert recorder.calls("check_assign", t.id) == [rep2, None]  # asked once about both, as one batch
    assert _leads(t, [refused])[refused].owner_id == rep
    assert [(n, [i["lead_id"] for i in items]) for n, items in _events_since(t, mark)] == [
        ("lead_released", [released]),
    ]

    # check=False: the caller has decided; skip: the asking plugin applied its own rules.
    for kw in ({"check": False}, {"skip": "recorder"}):
        recorder.CALLS.clear()
        owner = _leads(t, [refused])[refused].owner_id
        with tenant_context(t.runtime, t.id) as ctx:
            moved = change_owners(ctx, [Move(refused, owner, rep2 if owner == rep else rep)], reason="manual", **kw)
        assert moved.moved == [refused] and moved.refused == {}
        assert recorder.calls("check_assign", t.id) == []


def test_take_unowned_takes_only_the_unowned_leads(make_app):
    t = _tenant(make_app)
    rep, rep2 = t.users["rep"], t.users["rep2"]
    free = [t.lead(f"1380013863{i}")["id"] for i in range(3)]
    owned = t.lead("13800138639", owner_id=rep)["id"]
    before = _leads(t, [*free, owned])
    mark = _last_event_id(t)

    with tenant_context(t.runtime, t.id) as ctx:
        taken = take_unowned(ctx, [owned, *free], rep2, team_id=None, reason="claimed", rule="test",
                             note="take", detail={"pool": "x"}, item={"pool_id": 7})
    assert [i.id for i in taken.leads] == free and {i.owner_id for i in taken.leads} == {rep2}
    after = _leads(t, [*free, owned])
    assert (after[owned].owner_id, after[owned].version) == (rep, before[owned].version)
    assert all(after[i].owner_id == rep2 and after[i].version == before[i].version + 1 for i in free)
    ledger = [r for r in _ledger(t, [*free, owned]) if r.note == "take"]
    assert sorted((r.lead_id, r.from_user_id, r.to_user_id, r.reason, r.rule, r.detail) for r in ledger) == [
        (i, None, rep2, "claimed", "test", {"pool": "x"}) for i in free
    ]
    events = _events_since(t, mark)
    assert len(events) == 1 and events[0][0] == "lead_assigned"
    items = events[0][1]
    assert all(set(item) == ASSIGNED_KEYS | {"pool_id"} for item in items)
    assert sorted((i["lead_id"], i["from_user_id"], i["to_user_id"], i["pool_id"]) for i in items) == [
        (i, None, rep2, 7) for i in free
    ]
    with t.runtime.sessions() as s:
        assert taken.event_id == s.scalar(select(func.max(OutboxEvent.id)).where(OutboxEvent.tenant_id == t.id))

    # Nothing left to take: nothing written.
    mark = _last_event_id(t)
    with tenant_context(t.runtime, t.id) as ctx:
        again = take_unowned(ctx, free, rep, team_id=None, reason="claimed")
    assert again.leads == [] and again.event_id is None and _events_since(t, mark) == []


@pytest.mark.postgres
def test_takers_racing_for_the_same_leads_get_each_lead_once(make_app):
    t = _tenant(make_app)
    takers = [_add_user(t, f"taker{i}", t.team_id) for i in range(8)]
    leads = [t.lead(f"138001386{40 + i}")["id"] for i in range(12)]
    mark = _last_event_id(t)

    def take(i):
        with tenant_context(t.runtime, t.id) as ctx:
            return take_unowned(ctx, list(reversed(leads)) if i % 2 else leads, takers[i], team_id=None,
                                reason="claimed")

    results = run_parallel(8, take)
    got = Counter(info.id for r in results for info in r.leads)
    assert got == Counter(leads)  # every lead taken, and only once
    owners = {k: v.owner_id for k, v in _leads(t, leads).items()}
    for i, r in enumerate(results):
        assert all(owners[info.id] == takers[i] for info in r.leads)
    ledger = _ledger(t, leads)
    assert Counter(r.lead_id for r in ledger if r.reason == "claimed") == Counter(leads)
    assert all(owners[r.lead_id] == r.to_user_id for r in ledger if r.reason == "claimed")
    events = _events_since(t, mark)
    winners = [r for r in results if r.leads]
    assert len(events) == len(winners) and {n for n, _ in events} == {"lead_assigned"}
    with t.runtime.sessions() as s:
        event_ids = list(s.scalars(select(OutboxEvent.id).where(OutboxEvent.tenant_id == t.id, OutboxEvent.id > mark)))
    assert sorted(r.event_id for r in winners) == sorted(event_ids)  # each taker's own event
    assert sorted(i["lead_id"] for _, items in events for i in items) == sorted(leads)


@pytest.mark.parametrize("check", [True, False], ids=["asking", "not-asking"])
def test_a_user_of_another_tenant_never_gets_a_lead(make_app, check):
    t = _tenant(make_app)
    other = new_tenant(t.app)
    lead = t.lead("13800138691", owner_id=t.users["rep"])["id"]
    unowned = t.lead("13800138692")["id"]
    with tenant_context(t.runtime, t.id) as ctx:
        moved = change_owners(ctx, [Move(lead, t.users["rep"], other.users["rep"])], reason="manual", check=check)
        assert moved.moved == [] and moved.refused == {lead: ("core", f"no user {other.users['rep']} in this tenant")}
        with pytest.raises(NotFound):
            take_unowned(ctx, [unowned], other.users["rep"], team_id=None, reason="claimed")
    owners = _leads(t, [lead, unowned])
    assert (owners[lead].owner_id, owners[unowned].owner_id) == (t.users["rep"], None)


@pytest.mark.postgres
def test_racing_batches_move_each_lead_once(make_app):
    """Four batches move the same leads away from rep at once: one wins them all, the others miss them all."""
    t = new_tenant(make_app(()))  # no plugin answers check_assign: the one-statement path
    rep = t.users["rep"]
    ids = [t.lead(f"1380013870{i}", owner_id=rep)["id"] for i in range(6)]
    targets = [t.users["rep2"], t.users["manager"], t.users["admin"], None]

    def move(i: int):
        with tenant_context(t.runtime, t.id) as ctx:
            return change_owners(ctx, [Move(lid, rep, targets[i]) for lid in ids], reason="manual", check=False)

    results = run_parallel(len(targets), move)
    winners = [r for r in results if r.moved]
    assert len(winners) == 1 and winners[0].moved == ids
    assert all(r.missed == ids for r in results if not r.moved)
    ledger = [row for row in _ledger(t, ids) if row.from_user_id == rep and row.reason == "manual"]
    assert Counter(row.lead_id for row in ledger) == dict.fromkeys(ids, 1)


@pytest.mark.parametrize("check", [True, False], ids=["asking", "not-asking"])
@pytest.mark.parametrize("loaded", [1, 3], ids=["fewer-loaded-than-moved", "every-moved-loaded"])
def test_leads_loaded_in_the_session_show_the_change(make_app, check, loaded):
    """The changes are Core statements: the session's loaded leads are expired, whichever side is smaller."""
    t = _tenant(make_app)
    rep, rep2 = t.users["rep"], t.users["rep2"]
    ids = [t.lead(f"1380013862{k}", owner_id=rep)["id"] for k in range(3)]
    kept = t.lead("13800138629", owner_id=rep)["id"]  # loaded, not moved: left as it is
    with tenant_context(t.runtime, t.id) as ctx:
        held = [ctx.session.get(Lead, i) for i in [*ids[:loaded], kept]]
        assert all(lead is not None and lead.owner_id == rep for lead in held)
        moved = change_owners(ctx, [Move(i, rep, rep2) for i in ids], reason="manual", check=check)
        assert moved.moved == ids
        assert [lead.owner_id for lead in held] == [rep2] * loaded + [rep]
