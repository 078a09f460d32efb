"""Channel secrets and plugins' secret settings are encrypted at rest; keys rotate (issue 14, finding 12)."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import text

from pelago.core import crypto
from pelago.testing import invoke_cli, new_tenant

from .test_channels import post_signed

KEY_A = "pGNp1d8tVbx0A3X-zIvOEdU4kDBk6HUNBk9P0zvE9Q8="


def stored_secret(t, channel_id: int) -> str:
    with t.runtime.engine.connect() as conn:
        return conn.execute(text("SELECT secret FROM core_channel WHERE id = :id"), {"id": channel_id}).scalar_one()


def stored_settings(t, plugin: str) -> dict:
    with t.runtime.engine.connect() as conn:
        raw = conn.execute(text("SELECT settings FROM core_tenant_plugin WHERE tenant_id = :t AND plugin = :p"),
                           {"t": t.id, "p": plugin}).scalar_one()
    return raw if isinstance(raw, dict) else json.loads(raw)


def test_a_channel_secret_is_stored_encrypted_and_still_verifies(tenant):
    created = tenant.post("/api/v1/channels", json={"name": "douyin"}).get_json()
    stored = stored_secret(tenant, created["id"])
    assert stored.startswith("enc:v1:") and created["secret"] not in stored
    assert crypto.decrypt(stored) == created["secret"]
    r = post_signed(tenant, created["key"], created["secret"], {"name": "A", "phone": "13800138601"})
    assert r.status_code == 202, r.get_json()  # signature verified: the submission is stored
    rotated = tenant.post(f"/api/v1/channels/{created['id']}/rotate-secret").get_json()["secret"]
    assert crypto.decrypt(stored_secret(tenant, created["id"])) == rotated != created["secret"]


def test_a_plugin_secret_setting_is_stored_encrypted_and_read_in_clear(make_app, monkeypatch):
    monkeypatch.setenv("PELAGO_OUTBOUND_ALLOW_PRIVATE", "1")
    app = make_app()
    t = new_tenant(app)
    r = t.put("/api/v1/plugins/pool", json={"enabled": True, "settings": {
        "webhook_url": "https://hooks.example.com/h", "webhook_secret": "s3cret"}})
    assert r.status_code == 200 and r.get_json()["settings"]["webhook_secret"] == "********"
    first = stored_settings(t, "pool")["webhook_secret"]
    assert first.startswith("enc:v1:") and "s3cret" not in first
    with t.runtime.sessions() as session:
        from pelago.core.models import Tenant

        state = t.runtime.host.tenant_state(session, session.get(Tenant, t.id), cache=False)
    assert state.settings["pool"]["webhook_secret"] == "s3cret"
    # Saving other fields keeps the token (no "changed" secret), a new value replaces it.
    t.put("/api/v1/plugins/pool", json={"settings": {"webhook_secret": "********", "sweep_batch": 200}})
    assert stored_settings(t, "pool")["webhook_secret"] == first
    t.put("/api/v1/plugins/pool", json={"settings": {"webhook_secret": "other"}})
    assert crypto.decrypt(stored_settings(t, "pool")["webhook_secret"]) == "other"


def stored_account_secret(t, account_id: int) -> str:
    with t.runtime.engine.connect() as conn:
        return conn.execute(text("SELECT secret FROM conversions_account WHERE id = :id"),
                            {"id": account_id}).scalar_one()


def test_rotation_re_encrypts_under_the_new_key_and_old_keys_can_go(make_app, monkeypatch):
    app = make_app(plugins=["pool", "conversions"])
    t = new_tenant(app)
    created = t.post("/api/v1/channels", json={"name": "baidu"}).get_json()
    t.put("/api/v1/plugins/pool", json={"enabled": True, "settings": {"webhook_secret": "s3cret"}})
    # A plugin's EncryptedString column (the conversions plugin's account secret) is rotated too.
    t.put("/api/v1/plugins/conversions", json={"enabled": True})
    account = t.post("/api/v1/conversions/accounts", json={
        "name": "ocean", "adapter": "generic", "url": "https://ads.example.com/conv", "secret": "acct-s3cret"})
    assert account.status_code == 201, account.get_json()
    account_id = account.get_json()["id"]
    assert stored_account_secret(t, account_id).startswith("enc:v1:")
    # A value stored before encryption existed is read as it is, and rotation encrypts it.
    legacy = t.post("/api/v1/channels", json={"name": "legacy"}).get_json()
    with t.runtime.engine.begin() as conn:
        conn.execute(text("UPDATE core_channel SET secret = :s WHERE id = :id"),
                     {"s": legacy["secret"], "id": legacy["id"]})
    new = crypto.new_key()
    monkeypatch.setenv("PELAGO_SECRET_KEYS", f"{new},{KEY_A}")
    result = invoke_cli(t.runtime, "secrets", "rotate", env={"PELAGO_SECRET_KEYS": f"{new},{KEY_A}"})
    assert result.exit_code == 0, result.output
    assert "channel secrets" in result.output
    monkeypatch.setenv("PELAGO_SECRET_KEYS", new)  # the old key dropped
    assert crypto.decrypt(stored_secret(t, created["id"])) == created["secret"]
    assert crypto.decrypt(stored_secret(t, legacy["id"])) == legacy["secret"]
    assert stored_secret(t, legacy["id"]).startswith("enc:v1:")
    assert crypto.decrypt(stored_settings(t, "pool")["webhook_secret"]) == "s3cret"
    # every tenant's accounts are rotated: this one and any an earlier test of the run made
    rotated_accounts = re.search(r"(\d+) in conversions_account\.secret", result.output)
    assert rotated_accounts and int(rotated_accounts.group(1)) >= 1, result.output
    assert crypto.decrypt(stored_account_secret(t, account_id)) == "acct-s3cret"  # under the new key alone
    r = post_signed(t, created["key"], created["secret"], {"name": "B", "phone": "13800138602"})
    assert r.status_code == 202, r.get_json()  # verified under the new key
    again = invoke_cli(t.runtime, "secrets", "rotate", env={"PELAGO_SECRET_KEYS": new})
    assert "re-encrypted 0 channel secrets and 0 plugin settings; 0 in conversions_account.secret" in again.output


def test_a_dropped_key_is_a_clear_error_not_garbage(monkeypatch):
    token = crypto.encrypt("whsec_x")
    monkeypatch.setenv("PELAGO_SECRET_KEYS", crypto.new_key())
    with pytest.raises(crypto.SecretKeyError, match="rotate"):
        crypto.decrypt(token)
    monkeypatch.setenv("PELAGO_SECRET_KEYS", "not-a-key")
    with pytest.raises(crypto.SecretKeyError, match="malformed"):
        crypto.encrypt("x")


def test_the_key_file_is_for_the_embedded_demo_only_postgresql_needs_the_environment(monkeypatch, tmp_path):
    """Without PELAGO_SECRET_KEYS: SQLite makes a key file; once the process uses PostgreSQL, a clear error."""
    from pelago.core.db import make_engine

    monkeypatch.setattr(crypto, "_key_file_refused", None)
    monkeypatch.delenv("PELAGO_SECRET_KEYS", raising=False)
    monkeypatch.setenv("PELAGO_INSTANCE_DIR", str(tmp_path))
    make_engine(f"sqlite:///{tmp_path / 'demo.db'}").dispose()
    token = crypto.encrypt("whsec_demo")
    assert (tmp_path / "secret.key").exists() and crypto.decrypt(token) == "whsec_demo"

    make_engine("postgresql://postgres@127.0.0.1:5432/test").dispose()
    with pytest.raises(crypto.SecretKeyError, match="PELAGO_SECRET_KEYS is not set: a postgresql database") as err:
        crypto.encrypt("whsec_prod")
    assert "only for the embedded SQLite demo" in str(err.value)
    with pytest.raises(crypto.SecretKeyError):
        crypto.decrypt(token)
    monkeypatch.setenv("PELAGO_SECRET_KEYS", crypto.new_key())
    assert crypto.decrypt(crypto.encrypt("whsec_prod")) == "whsec_prod"
