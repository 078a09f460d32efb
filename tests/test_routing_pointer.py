"""The round-robin pointer, written late (with the line's last statement on PostgreSQL) but never lost or leaked."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from pelago.core.models import Team
from pelago.core.services.intake import Submission, ingest

from .test_routing import add_team, routing_on


def phone() -> str:
    return f"1392{uuid.uuid4().int % 10**7:07d}"


def pointer(t, team_id: int) -> int | None:
    with t.runtime.sessions() as session:
        return session.scalar(select(Team.rr_pointer).where(Team.id == team_id))


def owner_of(out) -> int | None:
    return out.decision.owner_id if out.decision else None


def test_two_batches_in_one_transaction_continue_the_rotation(tenant):
    team, reps = add_team(tenant, "Twice", reps=3)
    routing_on(tenant, team)
    with tenant.runtime.tenant_context(tenant.id) as ctx:
        first = ingest(ctx, [Submission({"phone": phone()})])[0]
        second = ingest(ctx, [Submission({"phone": phone()})])[0]  # routes again before the commit
    assert [owner_of(first), owner_of(second)] == reps[:2]
    assert pointer(tenant, team) == reps[1]
    assert tenant.lead(phone())["owner_id"] == reps[2]


def test_a_rolled_back_batch_leaves_the_pointer_where_it_was(tenant):
    team, reps = add_team(tenant, "Undone", reps=3)
    routing_on(tenant, team)
    assert tenant.lead(phone())["owner_id"] == reps[0]
    with pytest.raises(RuntimeError):
        with tenant.runtime.tenant_context(tenant.id) as ctx:
            assert owner_of(ingest(ctx, [Submission({"phone": phone()})])[0]) == reps[1]
            raise RuntimeError("the request fails after routing")
    assert pointer(tenant, team) == reps[0]
    assert tenant.lead(phone())["owner_id"] == reps[1]


def test_a_routed_lead_without_events_still_moves_the_pointer(tenant):
    """A route with no intake after it (preview aside) writes its pointer at commit."""
    team, reps = add_team(tenant, "Bare", reps=2)
    routing_on(tenant, team)
    from pelago.core.routing import LeadInfo, route

    with tenant.runtime.tenant_context(tenant.id) as ctx:
        decision = route(ctx, [LeadInfo(None, "", phone(), None, None, None, None, None, {}, None)])[0]
    assert decision.owner_id == reps[0]
    assert pointer(tenant, team) == reps[0]
    assert tenant.lead(phone())["owner_id"] == reps[1]


def test_a_preview_after_routing_in_one_transaction_loses_no_pointer(tenant):
    """The preview's savepoint is rolled back; the pointer decided before it is still written."""
    team, reps = add_team(tenant, "Preview", reps=3)
    routing_on(tenant, team)
    from pelago.core.services.routing import preview

    with tenant.runtime.tenant_context(tenant.id) as ctx:
        assert owner_of(ingest(ctx, [Submission({"phone": phone()})])[0]) == reps[0]
        assert preview(ctx, {"phone": phone()})["owner_id"] == reps[1]
        assert owner_of(ingest(ctx, [Submission({"phone": phone()})])[0]) == reps[1]
    assert pointer(tenant, team) == reps[1]
    assert tenant.lead(phone())["owner_id"] == reps[2]


def _lead():
    from pelago.core.routing import LeadInfo

    return LeadInfo(None, "", phone(), None, None, None, None, None, {}, None)


def test_a_released_savepoint_keeps_the_pointer_moved_inside_it(tenant):
    """A pointer pending from before the savepoint must not be written over the one chosen in it."""
    team, reps = add_team(tenant, "Released", reps=3)
    routing_on(tenant, team)
    from pelago.core.routing import route

    with tenant.runtime.tenant_context(tenant.id) as ctx:
        assert route(ctx, [_lead()])[0].owner_id == reps[0]
        with ctx.session.begin_nested():
            assert route(ctx, [_lead()])[0].owner_id == reps[1]
    assert pointer(tenant, team) == reps[1]
    assert tenant.lead(phone())["owner_id"] == reps[2]


def test_a_rolled_back_savepoint_gives_back_the_pointer_pending_before_it(tenant):
    team, reps = add_team(tenant, "RolledBack", reps=3)
    routing_on(tenant, team)
    from pelago.core.routing import route

    with tenant.runtime.tenant_context(tenant.id) as ctx:
        assert route(ctx, [_lead()])[0].owner_id == reps[0]
        savepoint = ctx.session.begin_nested()
        assert route(ctx, [_lead()])[0].owner_id == reps[1]
        inner = ctx.session.begin_nested()
        assert route(ctx, [_lead()])[0].owner_id == reps[2]
        inner.commit()
        savepoint.rollback()
        assert route(ctx, [_lead()])[0].owner_id == reps[1]
    assert pointer(tenant, team) == reps[1]
    assert tenant.lead(phone())["owner_id"] == reps[2]


def test_a_released_savepoint_inside_a_rolled_back_one(tenant):
    team, reps = add_team(tenant, "Nested", reps=4)
    routing_on(tenant, team)
    from pelago.core.routing import route

    with tenant.runtime.tenant_context(tenant.id) as ctx:
        assert route(ctx, [_lead()])[0].owner_id == reps[0]
        with ctx.session.begin_nested():
            assert route(ctx, [_lead()])[0].owner_id == reps[1]
            inner = ctx.session.begin_nested()
            assert route(ctx, [_lead()])[0].owner_id == reps[2]
            inner.rollback()
        assert route(ctx, [_lead()])[0].owner_id == reps[2]
    assert pointer(tenant, team) == reps[2]
    assert tenant.lead(phone())["owner_id"] == reps[3]


def test_closing_the_session_leaves_no_pointer_pending(tenant):
    """``Session.close()`` ends the transaction without the rollback event; the pending pointer goes with it."""
    team, reps = add_team(tenant, "Closed", reps=2)
    routing_on(tenant, team)
    from pelago.core.routing import POINTERS, route

    with tenant.runtime.tenant_context(tenant.id) as ctx:
        assert route(ctx, [_lead()])[0].owner_id == reps[0]
        ctx.session.close()
        assert POINTERS not in ctx.session.info
    assert pointer(tenant, team) is None
    assert tenant.lead(phone())["owner_id"] == reps[0]


def test_routing_reads_the_locked_team_not_the_one_in_the_identity_map(tenant):
    """A Team loaded earlier in the session (expire_on_commit=False) must not hide a pointer moved since."""
    team, reps = add_team(tenant, "Stale", reps=3)
    routing_on(tenant, team)
    from pelago.core.routing import route

    with tenant.runtime.tenant_context(tenant.id) as ctx:
        loaded = ctx.session.get(Team, team)  # held: the identity map is weak
        assert loaded is not None and loaded.rr_pointer is None
        ctx.session.commit()  # the Team stays in the identity map, not expired
        assert tenant.lead(phone())["owner_id"] == reps[0]  # another transaction moves the pointer
        assert route(ctx, [_lead()])[0].owner_id == reps[1]
