"""``pelago.plugin.ownership_history``: the read side of the ownership ledger for plugins."""

from __future__ import annotations

from pelago.plugin import Move, OwnershipStep, change_owners, ownership_history, tenant_context
from tests.conftest import new_tenant


def test_a_leads_history_oldest_first_and_only_the_tenants(app):
    t, other = new_tenant(app), new_tenant(app)
    lead = t.lead("13800138201")
    foreign = other.lead("13800138202")
    rep, rep2 = t.users["rep"], t.users["rep2"]
    with tenant_context(t.runtime, t.id) as ctx:
        first = lead["owner_id"]
        change_owners(ctx, [Move(lead["id"], from_user_id=first, to_user_id=rep2 if first != rep2 else rep)],
                      reason="manual", check=False)
        change_owners(ctx, [Move(lead["id"], from_user_id=rep2 if first != rep2 else rep, to_user_id=None)],
                      reason="released", check=False)
        ctx.session.commit()
    with tenant_context(t.runtime, t.id) as ctx:
        history = ownership_history(ctx, [lead["id"], foreign["id"], lead["id"]])
    assert set(history) == {lead["id"], foreign["id"]}
    assert history[foreign["id"]] == ()  # another tenant's lead: nothing
    steps = history[lead["id"]]
    assert all(isinstance(s, OwnershipStep) for s in steps)
    assert [s.change_id for s in steps] == sorted(s.change_id for s in steps)
    assert steps[0].reason == "created" or steps[0].to_user_id == first
    assert steps[-1].to_user_id is None and steps[-1].reason == "released"
    assert steps[-2].to_user_id in (rep, rep2) and steps[-2].from_user_id == first
    assert [s.at for s in steps] == sorted(s.at for s in steps)
