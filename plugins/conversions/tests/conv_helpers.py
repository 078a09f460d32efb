"""Helpers of the conversions tests: a tenant with the plugin on, a channel, leads from clicks."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from typing import Any

from sqlalchemy import text

from pelago.testing import TenantHandle, new_tenant

_phones = itertools.count(13700000000)


def phone() -> str:
    return str(next(_phones) + 1)


def on(app: Any, **settings: Any) -> TenantHandle:
    t = new_tenant(app)
    r = t.put("/api/v1/plugins/conversions", json={"enabled": True, "settings": settings})
    assert r.status_code == 200, r.get_json()
    return t


def channel(t: TenantHandle, name: str = "ocean", **mapping: str) -> dict[str, Any]:
    """A channel whose payloads carry the click id in ``clickid`` (and a campaign in ``campaign``)."""
    m = {"name": "name", "phone": "phone", "click_id": "clickid", "utm_campaign": "campaign",
         "external_id": "id", **mapping}
    r = t.post("/api/v1/channels", json={"name": name, "source": name, "mapping": m})
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def submit(t: TenantHandle, ch: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """Post a signed submission to the channel's webhook; what became of it (``lead_id``, ``status``, ``touch_id``)."""
    body = json.dumps(payload, ensure_ascii=False).encode()
    sig = "sha256=" + hmac.new(ch["secret"].encode(), body, hashlib.sha256).hexdigest()
    r = t.client().post(ch["url"], data=body, headers={"Content-Type": "application/json",
                                                       "X-Pelago-Signature": sig})
    # 202: stored as a submission, routed by the time the answer is read (jobs run inline in tests);
    # 200: a retried id answers the first submission.
    assert r.status_code in (200, 202), r.get_json()
    sub = t.get(f"/api/v1/submissions/{r.get_json()['id']}").get_json()
    assert sub["status"] == "processed", sub
    return {"lead_id": sub["lead_id"], "status": sub["outcome"], "touch_id": sub["touch_id"]}


def account(t: TenantHandle, url: str, adapter: str = "generic", **fields: Any) -> dict[str, Any]:
    r = t.post("/api/v1/conversions/accounts", json={"name": f"acct-{adapter}-{phone()}", "adapter": adapter,
                                                      "url": url, **fields})
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def rule(t: TenantHandle, account_id: int, moment: str, event_type: str, channel: str = "ocean",
         **fields: Any) -> dict[str, Any]:
    r = t.post("/api/v1/conversions/rules", json={"name": f"{channel}-{moment}-{phone()}", "account_id": account_id,
                                                   "channel": channel, "moment": moment,
                                                   "event_type": event_type, **fields})
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def conversions(t: TenantHandle, **query: Any) -> list[dict[str, Any]]:
    r = t.get("/api/v1/conversions/conversions", query_string={"limit": 200, **query})
    assert r.status_code == 200, r.get_json()
    return list(reversed(r.get_json()["items"]))


def count(t: TenantHandle, table: str, where: str = "TRUE") -> int:
    with t.runtime.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table} WHERE tenant_id = :t AND {where}"),
                                {"t": t.id}).scalar_one())
