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
