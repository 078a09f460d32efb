"""Shared set-up for ``sms_nurture``'s tests: a tenant with the plugin on, templates, sequences, leads with consent."""

from __future__ import annotations

import json
import uuid
from typing import Any

from flask import Flask
from sqlalchemy import text

from pelago.plugin import sign_body
from pelago.testing import TenantHandle, new_tenant, run_periodic

SECRET = "s3cret-for-webhooks"


def phone() -> str:
    return f"+86139{uuid.uuid4().int % 10**8:08d}"


def sms_tenant(app: Flask, **settings: Any) -> TenantHandle:
    """A tenant (Asia/Shanghai) with sms_nurture on, its webhooks' secret set, and ``settings``."""
    t = new_tenant(app)
    r = t.put("/api/v1/plugins/sms_nurture", json={"enabled": True, "settings": {"http_secret": SECRET, **settings}})
    assert r.status_code == 200, r.get_json()
    return t


def template(t: TenantHandle, body: str = "{name}您好，春季班开课啦，回T退订", **kw: Any) -> int:
    r = t.post("/api/v1/sms_nurture/templates", json={"name": f"tpl-{uuid.uuid4().hex[:8]}", "body": body, **kw})
    assert r.status_code == 201, r.get_json()
    return int(r.get_json()["id"])


def sequence(t: TenantHandle, *delays: int, body: str | None = None, **kw: Any) -> dict[str, Any]:
    """A sequence with one step per delay (minutes after the previous step), all on one template."""
    tpl = template(t, body) if body else template(t)
    steps = [{"template_id": tpl, "delay_minutes": d} for d in (delays or (0,))]
    r = t.post("/api/v1/sms_nurture/sequences",
               json={"name": f"seq-{uuid.uuid4().hex[:8]}", "steps": steps, **kw})
    assert r.status_code == 201, r.get_json()
    return r.get_json()  # type: ignore[no-any-return]


def consent(t: TenantHandle, number: str) -> None:
    r = t.post("/api/v1/sms_nurture/consents", json={"phone": number, "source": "web form",
                                                     "text": "我同意接收课程短信"})
    assert r.status_code == 200, r.get_json()


def lead(t: TenantHandle, number: str | None = None, with_consent: bool = True, **fields: Any) -> dict[str, Any]:
    number = number or phone()
    if with_consent:
        consent(t, number)
    return t.lead(number, **fields)


def enrol(t: TenantHandle, sequence_id: int, *lead_ids: int, pass_key: str = "manual") -> dict[str, Any]:
    r = t.post(f"/api/v1/sms_nurture/sequences/{sequence_id}/enrolments",
               json={"lead_ids": list(lead_ids), "pass": pass_key})
    assert r.status_code == 200, r.get_json()
    return r.get_json()  # type: ignore[no-any-return]


def dispatch(t: TenantHandle) -> None:
    assert run_periodic(t.runtime, "sms_nurture", "dispatch", t.id) == {t.id: "done"}


def messages(t: TenantHandle, **query: Any) -> list[dict[str, Any]]:
    r = t.get("/api/v1/sms_nurture/messages", query_string={"limit": 200, **query})
    assert r.status_code == 200, r.get_json()
    return list(reversed(r.get_json()["items"]))


def enrolments(t: TenantHandle, **query: Any) -> list[dict[str, Any]]:
    r = t.get("/api/v1/sms_nurture/enrolments", query_string={"limit": 200, **query})
    assert r.status_code == 200, r.get_json()
    return list(reversed(r.get_json()["items"]))


def stats(t: TenantHandle, sequence_id: int) -> dict[str, Any]:
    r = t.get(f"/api/v1/sms_nurture/sequences/{sequence_id}/stats")
    assert r.status_code == 200, r.get_json()
    return r.get_json()  # type: ignore[no-any-return]


def webhook(t: TenantHandle, kind: str, payload: Any, *, secret: str | None = SECRET, provider: str = "log",
            tenant: str | None = None) -> Any:
    body = json.dumps(payload, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json"}
    if secret:
        headers["X-Pelago-Signature"] = sign_body(secret, body)
    return t.client().post(f"/api/v1/sms_nurture/webhooks/{tenant or t.slug}/{provider}/{kind}", data=body,
                           headers=headers)


def sms_activities(t: TenantHandle, lead_id: int) -> list[dict[str, Any]]:
    r = t.get(f"/api/v1/leads/{lead_id}/history")
    assert r.status_code == 200, r.get_json()
    return [i for i in r.get_json()["items"] if i.get("type") == "activity" and i.get("kind") == "sms"]


def count_rows(t: TenantHandle, table: str, where: str = "true", **params: Any) -> int:
    with t.runtime.sessions() as s:
        return int(s.execute(text(f"SELECT count(*) FROM {table} WHERE tenant_id = :t AND {where}"),
                             {"t": t.id, **params}).scalar() or 0)
