"""The public webhook ``POST /api/v1/intake/{key}``: signatures, idempotency, mapping, refusals that store nothing.

Without Redis the tests' runtime runs the router inline right after the accept's commit, so a
submission is routed by the time its ``202`` is read; ``routed`` reads what became of it.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
from typing import Any

import pytest
from sqlalchemy import func, select

from pelago.core.models import Lead, OwnershipChange, RoutingSettings, StoredSubmission, Touch
from pelago.hostapp.api.intake import MAX_BODY

# Two ad platforms that shape their callbacks differently.
DOUYIN_MAPPING = {
    "external_id": "clue_id", "name": "name", "phone": "telephone", "region": "location.city",
    "utm_campaign": "ad.campaign_name", "utm_content": "ad.creative_id", "click_id": "clickid",
    "attributes": {"form": "form_name"},
}
BAIDU_MAPPING = {
    "external_id": "data.order_id", "name": "data.fields.0.value", "phone": "data.fields.1.value",
    "email": "data.contact.email", "utm_source": "data.utm.source", "utm_medium": "data.utm.medium",
    "utm_term": "data.utm.keyword", "click_id": "data.bd_vid", "source": "data.site",
    "attributes": {"grade": "data.fields.2.value"},
}


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def send(t, channel: dict[str, Any], payload: Any = None, *, body: bytes | None = None, secret: str | None = None,
         signature: str | None = None, unsigned: bool = False, key: str | None = None) -> Any:
    raw = body if body is not None else json.dumps(payload, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json"}
    if not unsigned:
        headers["X-Pelago-Signature"] = signature or sign(secret or channel["secret"], raw)
    return t.app.test_client().post(f"/api/v1/intake/{key or channel['key']}", data=raw, headers=headers)


def counts(t) -> tuple[int, int]:
    with t.runtime.sessions() as s:
        leads = s.scalar(select(func.count()).select_from(Lead).where(Lead.tenant_id == t.id))
        touches = s.scalar(select(func.count()).select_from(Touch).where(Touch.tenant_id == t.id))
    return leads, touches


def stored(t) -> int:
    """The tenant's webhook submissions (accepted or not yet routed alike)."""
    with t.runtime.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(StoredSubmission)
                            .where(StoredSubmission.tenant_id == t.id)) or 0)


def routed(t, r: Any, status: int = 202) -> dict[str, Any]:
    """What became of the accepted submission ``r`` answers: ``{lead_id, status (its outcome), touch_id}``."""
    assert r.status_code == status, r.get_json()
    answer = r.get_json()
    assert r.headers["Location"] == f"/api/v1/submissions/{answer['id']}"
    sub = t.get(f"/api/v1/submissions/{answer['id']}", "manager").get_json()
    assert sub["status"] == "processed", sub
    return {"lead_id": sub["lead_id"], "status": sub["outcome"], "touch_id": sub["touch_id"]}


def touch_of(t, touch_id: int) -> Touch:
    with t.runtime.sessions() as s:
        return s.get(Touch, touch_id)


def channel(t, name: str = "site", **body: Any) -> dict[str, Any]:
    r = t.post("/api/v1/channels", json={"name": name, **body})
    assert r.status_code == 201, r.get_json()
    return r.get_json()  # type: ignore[no-any-return]


def test_a_signed_submission_creates_a_lead_with_its_touch(tenant):
    ch = channel(tenant, "site", source="own-site")
    payload = {"name": "张伟", "phone": "138 0013 8000", "utm_source": "baidu", "utm_medium": "cpc",
               "utm_campaign": "spring", "utm_term": "少儿编程", "utm_content": "banner-1", "click_id": "bd-123",
               "external_id": "form-1"}
    r = send(tenant, ch, payload)
    assert r.status_code == 202, r.get_json()
    assert r.get_json() == {"id": r.get_json()["id"], "status": "accepted", "outcome": None, "lead_id": None,
                            "touch_id": None}
    out = routed(tenant, r)
    assert out["status"] == "created"
    lead = tenant.get(f"/api/v1/leads/{out['lead_id']}").get_json()
    assert (lead["name"], lead["phone"], lead["source"]) == ("张伟", "+8613800138000", "own-site")
    touch = touch_of(tenant, out["touch_id"])
    assert touch.lead_id == out["lead_id"] and touch.channel == "site"
    assert (touch.utm_source, touch.utm_medium, touch.utm_campaign, touch.utm_term, touch.utm_content,
            touch.click_id) == ("baidu", "cpc", "spring", "少儿编程", "banner-1", "bd-123")
    assert touch.raw == payload  # the whole submission, as sent
    assert touch.idempotency_key == f"channel:{ch['id']}:form-1"


def test_a_retry_replays_the_first_result_and_stores_nothing(tenant):
    ch = channel(tenant)
    first = send(tenant, ch, {"phone": "13800138001", "external_id": "abc"})
    result = routed(tenant, first)
    before = counts(tenant), stored(tenant)
    # the same external id, even with a changed body (a platform re-sending with a new timestamp)
    for payload in ({"phone": "13800138001", "external_id": "abc"},
                    {"phone": "13800138001", "external_id": "abc", "sent_at": "later"}):
        again = send(tenant, ch, payload)
        assert again.status_code == 200, again.get_json()
        assert again.get_json() == {"id": first.get_json()["id"], "status": "processed", "outcome": "created",
                                    "lead_id": result["lead_id"], "touch_id": result["touch_id"]}
    assert (counts(tenant), stored(tenant)) == before


def test_without_an_external_id_an_identical_body_is_the_retry(tenant):
    ch = channel(tenant, mapping={"external_id": None})
    body = json.dumps({"phone": "13800138002", "name": "李娜"}).encode()
    first = send(tenant, ch, body=body)
    result = routed(tenant, first)
    before = counts(tenant)
    again = send(tenant, ch, body=body)
    assert again.status_code == 200 and again.get_json()["id"] == first.get_json()["id"]
    assert again.get_json()["touch_id"] == result["touch_id"]
    assert counts(tenant) == before
    # a different body with the same phone is a new submission: merged, one more touch
    other = routed(tenant, send(tenant, ch, {"phone": "13800138002", "name": "李娜", "note": "second form"}))
    assert other["status"] == "merged" and other["lead_id"] == result["lead_id"]
    assert counts(tenant) == (before[0], before[1] + 1)


def test_a_known_phone_is_merged(tenant):
    lead = tenant.lead("13800138003", name="王芳")
    ch = channel(tenant)
    r = routed(tenant, send(tenant, ch, {"phone": "+86 138-0013-8003", "email": "wf@example.com", "external_id": "x1"}))
    assert r["status"] == "merged" and r["lead_id"] == lead["id"]
    assert tenant.get(f"/api/v1/leads/{lead['id']}").get_json()["email"] == "wf@example.com"


def test_each_channel_maps_its_own_payloads(tenant):
    douyin = channel(tenant, "douyin", mapping=DOUYIN_MAPPING, source="douyin")
    baidu = channel(tenant, "baidu", mapping=BAIDU_MAPPING)
    d = send(tenant, douyin, {"clue_id": 7001, "name": "周杰", "telephone": 13900139000, "clickid": "dy-9",
                              "location": {"city": "杭州"}, "ad": {"campaign_name": "暑期", "creative_id": 42},
                              "form_name": "试听课"})
    b = send(tenant, baidu, {"data": {"order_id": "bd-1", "site": "baidu-landing", "bd_vid": "vid-1",
                                      "fields": [{"value": "陈静"}, {"value": "13900139001"}, {"value": "三年级"}],
                                      "contact": {"email": "CJ@Example.com"},
                                      "utm": {"source": "baidu", "medium": "sem", "keyword": "数学"}}})
    d, b = routed(tenant, d), routed(tenant, b)
    assert d["status"] == "created" and b["status"] == "created", (d, b)
    dl = tenant.get(f"/api/v1/leads/{d['lead_id']}").get_json()
    bl = tenant.get(f"/api/v1/leads/{b['lead_id']}").get_json()
    assert (dl["name"], dl["phone"], dl["region"], dl["source"], dl["attributes"]) == \
        ("周杰", "+8613900139000", "杭州", "douyin", {"form": "试听课"})
    assert (bl["name"], bl["phone"], bl["email"], bl["source"], bl["attributes"]) == \
        ("陈静", "+8613900139001", "cj@example.com", "baidu-landing", {"grade": "三年级"})
    dt, bt = touch_of(tenant, d["touch_id"]), touch_of(tenant, b["touch_id"])
    assert (dt.channel, dt.utm_campaign, dt.utm_content, dt.click_id, dt.idempotency_key) == \
        ("douyin", "暑期", "42", "dy-9", f"channel:{douyin['id']}:7001")
    assert (bt.channel, bt.utm_source, bt.utm_medium, bt.utm_term, bt.click_id) == \
        ("baidu", "baidu", "sem", "数学", "vid-1")


def test_a_long_external_id_is_hashed_into_the_key(tenant):
    ch = channel(tenant)
    long_id = "x" * 500
    first = send(tenant, ch, {"phone": "13800138004", "external_id": long_id})
    key = touch_of(tenant, routed(tenant, first)["touch_id"]).idempotency_key
    assert len(key) <= 200 and hashlib.sha256(long_id.encode()).hexdigest() in key
    again = send(tenant, ch, {"phone": "13800138004", "external_id": long_id})
    assert again.status_code == 200 and again.get_json()["id"] == first.get_json()["id"]


@pytest.mark.parametrize("case", ["missing", "malformed", "wrong secret", "tampered body", "other channel's secret",
                                  "empty"])
def test_bad_or_missing_signature_is_401_and_stores_nothing(tenant, case):
    ch = channel(tenant)
    other = channel(tenant, "other")
    payload = {"phone": "13800138005", "external_id": "sig"}
    body = json.dumps(payload).encode()
    kw: dict[str, Any] = {
        "missing": {"unsigned": True},
        "malformed": {"signature": "md5=abc"},
        "wrong secret": {"secret": "whsec_not-the-secret"},
        "tampered body": {"signature": sign(ch["secret"], body.replace(b"05", b"06"))},
        "other channel's secret": {"secret": other["secret"]},
        "empty": {"signature": "sha256="},
    }[case]
    before = counts(tenant)
    r = send(tenant, ch, body=body, **kw)
    assert r.status_code == 401, r.get_json()
    assert r.get_json()["code"] == 401 and "signature" in r.get_json()["message"].lower()
    assert counts(tenant) == before and stored(tenant) == 0
    # and the same body, rightly signed, is then new (nothing of the refused one was kept)
    assert send(tenant, ch, body=body).status_code == 202


def test_uppercase_hex_signatures_are_accepted(tenant):
    ch = channel(tenant)
    body = json.dumps({"phone": "13800138006"}).encode()
    signature = sign(ch["secret"], body)
    r = send(tenant, ch, body=body, signature="sha256=" + signature.split("=", 1)[1].upper())
    assert r.status_code == 202


@pytest.mark.parametrize("key", ["ch_doesnotexist000000000000", "nope", "a" * 41, "bad key!", "%00"])
def test_unknown_channel_is_404(tenant, key):
    ch = channel(tenant)
    before = counts(tenant)
    r = send(tenant, ch, {"phone": "13800138007"}, key=key)
    assert r.status_code == 404, r.get_json()
    assert counts(tenant) == before and stored(tenant) == 0


def test_inactive_channel_is_404(tenant):
    ch = channel(tenant, active=False)
    r = send(tenant, ch, {"phone": "13800138008"})
    assert r.status_code == 404 and counts(tenant) == (0, 0) and stored(tenant) == 0


@pytest.mark.parametrize("body", [
    b"{not json", b"", b"[1, 2]", b'"a string"', b"null", b'{"phone": NaN}', b'{"name": "\\u0000"}',
    b'{"name": "\xff\xfe"}', b"[" * 100 + b"]" * 100,
], ids=["not json", "empty", "array", "string", "null", "NaN", "NUL", "not UTF-8", "deep"])
def test_malformed_body_is_400_and_stores_nothing(tenant, body):
    ch = channel(tenant)
    r = send(tenant, ch, body=body)
    assert r.status_code == 400, r.get_json()
    assert r.get_json()["message"].startswith("malformed body")
    assert counts(tenant) == (0, 0) and stored(tenant) == 0


def test_oversize_body_is_413_and_stores_nothing(tenant):
    ch = channel(tenant)
    payload = {"phone": "13800138009", "padding": "x" * MAX_BODY}
    r = send(tenant, ch, payload)
    assert r.status_code == 413, r.get_json()
    assert r.get_json()["code"] == 413
    # without a Content-Length (chunked) the limit holds too
    body = json.dumps(payload).encode()
    r = tenant.app.test_client().post(
        f"/api/v1/intake/{ch['key']}", input_stream=io.BytesIO(body),
        headers={"Content-Type": "application/json", "X-Pelago-Signature": sign(ch["secret"], body),
                 "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert r.status_code == 413, r.get_json()
    assert counts(tenant) == (0, 0) and stored(tenant) == 0
    # just under the limit is fine
    small = {"phone": "13800138009", "padding": ""}
    small["padding"] = "x" * (MAX_BODY - len(json.dumps(small).encode()))
    assert len(json.dumps(small).encode()) == MAX_BODY
    assert send(tenant, ch, small).status_code == 202


@pytest.mark.parametrize(("payload", "field"), [
    ({"name": "no contact"}, "phone"),
    ({"phone": "12345"}, "phone"),
    ({"email": "not-an-email"}, "email"),
    ({"phone": "13800138010", "name": "x" * 201}, "name"),
    ({"phone": {"number": "13800138010"}}, "phone"),
    ({"phone": "13800138010", "utm_source": ["a", "b"]}, "utm_source"),
])
def test_an_invalid_mapped_lead_is_422_and_stores_nothing(tenant, payload, field):
    ch = channel(tenant)
    r = send(tenant, ch, payload)
    assert r.status_code == 422, r.get_json()
    assert field in r.get_json()["errors"]["json"], r.get_json()
    assert counts(tenant) == (0, 0) and stored(tenant) == 0


def test_routing_follows_the_tenants_settings(tenant):
    ch = channel(tenant)
    off = routed(tenant, send(tenant, ch, {"phone": "13800138011"}))
    assert tenant.get(f"/api/v1/leads/{off['lead_id']}").get_json()["owner_id"] is None
    with tenant.runtime.sessions() as s:
        s.add(RoutingSettings(tenant_id=tenant.id, auto_routing=True, default_team_id=tenant.team_id,
                              handoff_enabled=False, updated_at=tenant.runtime.clock()))
        s.commit()
    on = routed(tenant, send(tenant, ch, {"phone": "13800138012"}))
    lead = tenant.get(f"/api/v1/leads/{on['lead_id']}").get_json()
    assert lead["team_id"] == tenant.team_id and lead["owner_id"] is not None
    with tenant.runtime.sessions() as s:
        ledger = s.scalars(select(OwnershipChange).where(OwnershipChange.lead_id == on["lead_id"])).one()
    assert ledger.to_user_id == lead["owner_id"] and ledger.actor_id is None


def test_the_tenant_comes_from_the_channel(tenant, other_tenant):
    mine, theirs = channel(tenant), channel(other_tenant)
    a = routed(tenant, send(tenant, mine, {"phone": "13800138013", "external_id": "same"}))
    b = routed(other_tenant, send(other_tenant, theirs, {"phone": "13800138013", "external_id": "same"}))
    assert b["status"] == "created" and b["lead_id"] != a["lead_id"]
    assert counts(tenant) == (1, 1) and counts(other_tenant) == (1, 1)
    # a body signed with one tenant's secret is refused on the other's channel
    assert send(other_tenant, theirs, {"phone": "13800138014"}, secret=mine["secret"]).status_code == 401
    # a bearer key changes nothing: the webhook ignores it
    body = json.dumps({"phone": "13800138015"}).encode()
    r = tenant.app.test_client().post(
        f"/api/v1/intake/{theirs['key']}", data=body,
        headers={"Content-Type": "application/json", "X-Pelago-Signature": sign(theirs["secret"], body),
                 **tenant.headers("admin")},
    )
    assert r.status_code == 202 and counts(other_tenant) == (2, 2) and counts(tenant) == (1, 1)
    # a submission is read in its own tenant only
    sid = r.get_json()["id"]
    assert other_tenant.get(f"/api/v1/submissions/{sid}").status_code == 200
    assert tenant.get(f"/api/v1/submissions/{sid}").status_code == 404


@pytest.mark.postgres
def test_the_same_callback_from_8_threads_stores_one_touch(tenant):
    from tests.test_concurrency import run_parallel

    ch = channel(tenant)
    body = json.dumps({"phone": "13800138016", "external_id": "burst"}).encode()
    responses = run_parallel(8, lambda i: send(tenant, ch, body=body))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 7 + [202], [r.get_json() for r in responses]
    assert len({r.get_json()["id"] for r in responses}) == 1
    assert counts(tenant) == (1, 1) and stored(tenant) == 1
