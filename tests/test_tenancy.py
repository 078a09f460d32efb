"""Tenant isolation is held by the session, not by each query remembering a WHERE."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from pelago.core.models import Lead, Team, User


def test_a_query_without_where_sees_only_its_tenant(tenant, other_tenant):
    mine = tenant.lead("13800138800")
    theirs = other_tenant.lead("13800138801")
    rt = tenant.runtime
    with rt.tenant_session(tenant.id) as s:
        ids = set(s.scalars(select(Lead.id)))
        assert mine["id"] in ids and theirs["id"] not in ids
        assert s.get(Lead, theirs["id"]) is None
        joined = s.scalars(select(User.email).join(Lead, Lead.owner_id == User.id)).all()
        assert all(e.endswith(f"@{tenant.slug}.test") for e in joined)


def test_bulk_updates_are_scoped_too(tenant, other_tenant):
    theirs = other_tenant.lead("13800138802")
    with tenant.runtime.tenant_session(tenant.id) as s:
        s.execute(update(Lead).values(name="hijacked"))
        s.commit()
    assert other_tenant.get(f"/api/v1/leads/{theirs['id']}").get_json()["name"] != "hijacked"


def test_new_rows_are_stamped_and_foreign_rows_refused(tenant, other_tenant, clock):
    with tenant.runtime.tenant_session(tenant.id) as s:
        team = Team(name="stamped", description="", active=True, created_at=clock())
        s.add(team)
        s.flush()
        assert team.tenant_id == tenant.id
        s.add(Team(tenant_id=other_tenant.id, name="foreign", description="", active=True, created_at=clock()))
        with pytest.raises(PermissionError):
            s.flush()
        s.rollback()


def test_ids_of_another_tenant_answer_404(tenant, other_tenant):
    theirs = other_tenant.lead("13800138803")
    assert tenant.get(f"/api/v1/leads/{theirs['id']}").status_code == 404
    r = tenant.post(f"/api/v1/leads/{theirs['id']}/stage", json={"stage": "contacted"})
    assert r.status_code == 404
    assert tenant.post("/api/v1/leads", json={"phone": "13800138804", "owner_id": other_tenant.users["rep"]}).status_code == 422
