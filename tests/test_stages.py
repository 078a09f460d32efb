"""The stage machine: allowed moves only, in the service (409) and in the database (a trigger)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from pelago.core.models import STAGE_TRANSITIONS, STAGES
from pelago.core.models.leads import DEAL_TRANSITIONS


def phone() -> str:
    return f"+86139{uuid.uuid4().int % 10**8:08d}"


def move(t, lead_id: int, stage: str, who: str = "admin"):
    body = {"stage": stage, **({"lost_reason": "no budget"} if stage == "lost" else {})}
    return t.post(f"/api/v1/leads/{lead_id}/stage", who, json=body)


def lead_in(t, stage: str) -> int:
    lead = t.lead(phone())["id"]
    if stage != "new":
        assert move(t, lead, stage).status_code == 200
    return lead


@pytest.mark.parametrize("old", STAGES)
def test_only_the_machine_s_moves_are_allowed(tenant, old):
    for new in STAGES:
        lead = lead_in(tenant, old)
        r = move(tenant, lead, new)
        if new == old or new in STAGE_TRANSITIONS[old]:
            assert r.status_code == 200 and r.get_json()["stage"] == new, (old, new, r.get_json())
        else:
            assert r.status_code == 409, (old, new, r.get_json())
            body = r.get_json()
            assert body["errors"] == {"from": old, "to": new, "allowed": list(STAGE_TRANSITIONS[old])}
            assert tenant.get(f"/api/v1/leads/{lead}").get_json()["stage"] == old  # nothing changed


def test_a_customer_with_a_won_deal_cannot_go_back_to_new(tenant):
    """Was: 200, and a customer was a new lead again."""
    lead = lead_in(tenant, "qualified")
    assert tenant.post(f"/api/v1/leads/{lead}/deals", json={"amount": "100.00"}).status_code == 201
    r = move(tenant, lead, "new")
    assert r.status_code == 409 and "a won lead stays won" in r.get_json()["message"]
    assert move(tenant, lead, "lost").status_code == 409
    history = tenant.get(f"/api/v1/leads/{lead}/history").get_json()["items"]
    assert [(h["old"], h["new"]) for h in history if h["type"] == "stage"] == [
        (None, "new"), ("new", "qualified"), ("qualified", "won")]
    # the next purchase cycle is a deal: the lead stays won, the deal is a repurchase
    again = tenant.post(f"/api/v1/leads/{lead}/deals", json={"amount": "50.00"})
    assert again.status_code == 201 and again.get_json()["kind"] == "repurchase"
    assert tenant.get(f"/api/v1/leads/{lead}").get_json()["stage"] == "won"


def test_lost_reopens_to_new_and_a_deal_wins_any_open_or_lost_lead(tenant):
    lost = lead_in(tenant, "lost")
    assert move(tenant, lost, "contacted").status_code == 409
    assert move(tenant, lost, "new").status_code == 200
    assert move(tenant, lost, "contacted").status_code == 200
    for stage in ("new", "contacted", "qualified", "lost"):
        lead = lead_in(tenant, stage)
        r = tenant.post(f"/api/v1/leads/{lead}/deals", json={"amount": "10.00"})
        assert r.status_code == 201, (stage, r.get_json())
        assert tenant.get(f"/api/v1/leads/{lead}").get_json()["stage"] == "won"


def test_the_database_holds_the_same_machine(tenant):
    """A raw UPDATE that skips the service is refused by the trigger (migration 0007) for the same moves."""
    allowed = {(old, new) for old, targets in STAGE_TRANSITIONS.items() for new in targets} | DEAL_TRANSITIONS
    rt = tenant.runtime
    for old in STAGES:
        for new in STAGES:
            if old == new:
                continue
            lead = lead_in(tenant, old)
            with rt.sessions() as s:
                update = text("UPDATE core_lead SET stage = :new, lost_reason = :reason WHERE id = :id")
                params = {"new": new, "reason": "x" if new == "lost" else None, "id": lead}
                if (old, new) in allowed:
                    s.execute(update, params)
                    s.commit()
                else:
                    with pytest.raises(IntegrityError):
                        s.execute(update, params)
                    s.rollback()
                    assert tenant.get(f"/api/v1/leads/{lead}").get_json()["stage"] == old
