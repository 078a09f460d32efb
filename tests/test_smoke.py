def test_create_and_read_lead(tenant):
    lead = tenant.lead("138 0013 8000")
    assert lead["phone"] == "+8613800138000"
    r = tenant.get(f"/api/v1/leads/{lead['id']}")
    assert r.status_code == 200
