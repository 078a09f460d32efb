"""The Aliyun provider through sms_nurture, against a local stand-in that checks the documented signature."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from aliyun_stand_in import AliyunStandIn, documented_signature
from pelago_sms_aliyun import signing

from pelago.testing import TenantHandle, new_tenant, run_periodic

SECRET = "testSecret-0123"


def test_the_signature_of_alibaba_clouds_documented_example():
    params = {
        "AccessKeyId": "testId", "Action": "SendSms", "Format": "XML", "OutId": "123",
        "PhoneNumbers": "15300000001", "RegionId": "cn-hangzhou", "SignName": "阿里云短信测试专用",
        "SignatureMethod": "HMAC-SHA1", "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
        "SignatureVersion": "1.0", "TemplateCode": "SMS_71390007", "TemplateParam": '{"customer":"test"}',
        "Timestamp": "2017-07-12T02:42:19Z", "Version": "2017-05-25",
    }
    assert signing.signature("testSecret", "GET", params) == "zJDF+Lrzhj/ThnlvIToysFRq6t4="
    assert documented_signature("testSecret", "GET", params) == "zJDF+Lrzhj/ThnlvIToysFRq6t4="


@pytest.fixture
def aliyun(monkeypatch: pytest.MonkeyPatch) -> Iterator[AliyunStandIn]:
    monkeypatch.setenv("PELAGO_OUTBOUND_ALLOW_PRIVATE", "1")
    stand_in = AliyunStandIn(SECRET)
    yield stand_in
    stand_in.stop()


def tenant_on_aliyun(app, aliyun: AliyunStandIn, secret: str = SECRET) -> TenantHandle:
    t = new_tenant(app)
    r = t.put("/api/v1/plugins/sms_nurture", json={"enabled": True, "settings": {
        "provider": "aliyun", "require_consent": False, "signature": "学而思"}})
    assert r.status_code == 200, r.get_json()
    r = t.put("/api/v1/plugins/sms_aliyun", json={"enabled": True, "settings": {
        "access_key_id": "LTAI-test", "access_key_secret": secret, "sign_name": "学而思", "endpoint": aliyun.url,
        "callback_token": "tok-123"}})
    assert r.status_code == 200, r.get_json()
    return t


def one_due_message(t: TenantHandle) -> dict:
    r = t.post("/api/v1/sms_nurture/templates", json={"name": f"t{uuid.uuid4().hex[:6]}", "body": "{name}您好，试听课已预留",
                                                     "provider_template_id": "SMS_71390007"})
    assert r.status_code == 201, r.get_json()
    r = t.post("/api/v1/sms_nurture/sequences", json={"name": f"s{uuid.uuid4().hex[:6]}",
                                                     "steps": [{"template_id": r.get_json()["id"], "delay_minutes": 0}]})
    seq = r.get_json()
    lead = t.lead(f"+86139{uuid.uuid4().int % 10**8:08d}", name="王五")
    r = t.post(f"/api/v1/sms_nurture/sequences/{seq['id']}/enrolments", json={"lead_ids": [lead["id"]]})
    assert r.get_json()["enrolled"] == [lead["id"]]
    return lead


def message(t: TenantHandle, lead_id: int) -> dict:
    [m] = t.get("/api/v1/sms_nurture/messages", query_string={"lead_id": lead_id}).get_json()["items"]
    return m


def dispatch(t: TenantHandle) -> None:
    assert run_periodic(t.runtime, "sms_nurture", "dispatch", t.id) == {t.id: "done"}


def test_a_message_goes_out_through_sendsms_signed_with_our_id_as_outid(app, aliyun):
    t = tenant_on_aliyun(app, aliyun)
    lead = one_due_message(t)
    dispatch(t)
    m = message(t, lead["id"])
    assert (m["status"], m["provider"], m["provider_id"]) == ("sent", "aliyun", "biz-1")
    [record] = aliyun.records
    assert record["OutId"] == m["our_id"] and record["PhoneNum"] == lead["phone"].removeprefix("+86")
    assert (record["TemplateCode"], json.loads(record["TemplateParam"]), record["SignName"]) == (
        "SMS_71390007", {"name": "王五"}, "学而思")
    assert aliyun.bad_signatures == 0


def test_a_wrong_secret_is_refused_by_the_stand_in_and_nothing_is_recorded_as_sent(app, aliyun):
    t = tenant_on_aliyun(app, aliyun, secret="not-the-secret")
    lead = one_due_message(t)
    dispatch(t)
    assert aliyun.bad_signatures == 1 and not aliyun.sent
    assert message(t, lead["id"])["status"] == "sending"  # SignatureDoesNotMatch is not a certain refusal


def test_an_isv_error_is_a_refusal(app, aliyun):
    t = tenant_on_aliyun(app, aliyun)
    lead = one_due_message(t)
    aliyun.next_code = "isv.MOBILE_NUMBER_ILLEGAL"
    dispatch(t)
    m = message(t, lead["id"])
    assert m["status"] == "failed" and m["reason"].startswith("isv.MOBILE_NUMBER_ILLEGAL")


def test_an_error_after_aliyun_took_it_is_reconciled_by_querysenddetails_not_sent_again(app, aliyun, clock):
    t = tenant_on_aliyun(app, aliyun)
    lead = one_due_message(t)
    aliyun.fail_http = True
    dispatch(t)
    assert message(t, lead["id"])["status"] == "sending"
    aliyun.fail_http = False
    clock.advance(minutes=6)
    dispatch(t)
    m = message(t, lead["id"])
    assert m["status"] == "delivered" and aliyun.sent[m["our_id"]] == 1 and m["attempts"] == 1


def test_reports_and_replies_need_the_callback_token(app, aliyun):
    t = tenant_on_aliyun(app, aliyun)
    lead = one_due_message(t)
    dispatch(t)
    m = message(t, lead["id"])
    report = json.dumps([{"phone_number": lead["phone"][3:], "success": True, "err_code": "DELIVERED",
                          "biz_id": m["provider_id"], "out_id": m["our_id"]}]).encode()
    base = f"/api/v1/sms_nurture/webhooks/{t.slug}/aliyun"
    client = t.client()
    assert client.post(f"{base}/receipts", data=report, content_type="application/json").status_code == 403
    assert client.post(f"{base}/receipts?token=nope", data=report, content_type="application/json").status_code == 403
    r = client.post(f"{base}/receipts?token=tok-123", data=report, content_type="application/json")
    assert r.status_code == 200 and message(t, lead["id"])["status"] == "delivered"
    reply = json.dumps([{"phone_number": lead["phone"][3:], "content": "ＴＤ", "send_time": "2026-03-02 10:05:00"}])
    r = client.post(f"{base}/inbound?token=tok-123", data=reply.encode(), content_type="application/json")
    assert r.status_code == 200
    [s] = t.get("/api/v1/sms_nurture/suppressions").get_json()["items"]
    assert s["phone"] == lead["phone"] and s["suppressed_source"] == "reply:aliyun"
