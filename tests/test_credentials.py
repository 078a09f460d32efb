"""Credentials: API keys shown once and stored as a hash; passwords with a slow hash."""

from __future__ import annotations

from sqlalchemy import select

from pelago.core.models import ApiKey, User
from pelago.core.security import check_password, hash_password, key_matches, split_key


def test_api_key_is_shown_once_and_stored_as_a_hash(tenant):
    r = tenant.post("/api/v1/api-keys", json={"name": "ci"})
    assert r.status_code == 201
    created = r.get_json()
    key = created["key"]
    with tenant.runtime.sessions() as s:
        row = s.get(ApiKey, created["id"])
        stored = [str(v) for v in (row.prefix, row.secret_hash, row.name)]
    assert all(key not in v and key.split("_", 2)[2] not in v for v in stored)
    assert key_matches(key, row.secret_hash) and split_key(key) == row.prefix
    listed = tenant.get("/api/v1/api-keys").get_json()["items"]
    assert created["id"] in [k["id"] for k in listed] and all("key" not in k for k in listed)
    assert tenant.client().get("/api/v1/leads", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert tenant.call("DELETE", f"/api/v1/api-keys/{created['id']}").status_code == 200
    assert tenant.client().get("/api/v1/leads", headers={"Authorization": f"Bearer {key}"}).status_code == 401


def test_passwords_are_stored_with_a_salted_slow_hash(tenant):
    r = tenant.post("/api/v1/users", json={"email": "pw@example.com", "role": "rep", "password": "correct horse"})
    assert r.status_code == 201 and "password" not in r.get_json()
    with tenant.runtime.sessions() as s:
        stored = s.scalars(select(User.password_hash).where(User.id == r.get_json()["id"])).one()
    algo, iterations, _salt, _digest = stored.split("$")
    assert algo == "pbkdf2_sha256" and int(iterations) >= 200_000
    assert check_password("correct horse", stored) and not check_password("wrong horse", stored)
    assert hash_password("correct horse") != hash_password("correct horse")  # salted
