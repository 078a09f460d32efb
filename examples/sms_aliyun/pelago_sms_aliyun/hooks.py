"""``sms_nurture``'s provider hooks, for ``provider == "aliyun"`` (``None`` for every other provider).

- send: one ``SendSms`` per message (``PhoneNumbers``, ``SignName``,
  ``TemplateCode`` = the template's provider id, ``TemplateParam`` = the
  variables, ``OutId`` = our id). ``Code: OK`` is accepted (``BizId`` kept);
  an ``isv.*`` code is a refusal (the request was wrong, nothing was sent);
  anything else (throttling, ``isp.*``, no answer) is unknown and reconciled.
- query: ``QuerySendDetails`` for the phone and the day of the send, matched
  by ``OutId``: status 3 delivered, 2 failed, 1 accepted; absent: not found.
- receipts (``SmsReport``) and replies (``SmsUp``): Aliyun pushes JSON arrays
  without a signature, so the callback URL carries ``?token=<callback_token>``,
  checked in constant time (403 otherwise).

Requests are POSTed through ``pelago.plugin.post_json`` with the signed
parameters in the query (signature method ``POST``): the endpoint is a URL the
tenant typed, guarded against internal targets.
"""

from __future__ import annotations

import hmac
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from pelago.plugin import Forbidden, HookContext, InvalidInput, OutboundRefused, hookimpl, post_json

from . import signing

PLUGIN = "sms_aliyun"
PROVIDER = "aliyun"
TIMEOUT = 5
CHINA = timezone(timedelta(hours=8))


def _call(settings: Mapping[str, Any], action: str, params: Mapping[str, str], now: datetime) -> dict[str, Any]:
    common = {
        "AccessKeyId": settings["access_key_id"], "Action": action, "Format": "JSON",
        "RegionId": settings.get("region_id") or "cn-hangzhou", "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": uuid.uuid4().hex, "SignatureVersion": "1.0",
        "Timestamp": now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "Version": "2017-05-25",
    }
    query = signing.signed_query(settings["access_key_secret"], "POST", {**common, **params})
    base = str(settings["endpoint"]).split("?", 1)[0]
    answer = post_json(f"{base}?{query}", b"{}", timeout=TIMEOUT, headers={"User-Agent": "pelago-sms-aliyun"})
    try:
        body = json.loads(answer.body or b"{}")
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    body.setdefault("Code", f"HTTP{answer.status}")
    return body


def _domestic(phone: str) -> str:
    return phone[3:] if phone.startswith("+86") else phone.lstrip("+")


@hookimpl
def sms_nurture_send(ctx: HookContext, provider: str, messages: Sequence[Any]) -> list[dict[str, Any]] | None:
    if provider != PROVIDER:
        return None
    settings = ctx.settings(PLUGIN)
    out = []
    for m in messages:
        if not m.template_id:
            out.append({"our_id": m.our_id, "status": "rejected", "error": "Aliyun needs the template's provider id"})
            continue
        params = {"PhoneNumbers": _domestic(m.phone), "SignName": settings["sign_name"] or m.signature,
                  "TemplateCode": m.template_id, "TemplateParam": json.dumps(dict(m.variables), ensure_ascii=False),
                  "OutId": m.our_id}
        try:
            body = _call(settings, "SendSms", params, ctx.now())
        except OutboundRefused as exc:
            out.append({"our_id": m.our_id, "status": "rejected", "error": f"refused: {exc}"})
            continue
        except OSError as exc:
            out.append({"our_id": m.our_id, "status": "unknown", "error": f"no answer: {exc}"})
            continue
        code = str(body.get("Code"))
        if code == "OK":
            out.append({"our_id": m.our_id, "status": "accepted", "provider_id": body.get("BizId")})
        elif code.startswith("isv."):
            out.append({"our_id": m.our_id, "status": "rejected", "error": f"{code}: {body.get('Message', '')}"})
        else:
            out.append({"our_id": m.our_id, "status": "unknown", "error": code})
    return out


@hookimpl
def sms_nurture_query(ctx: HookContext, provider: str, messages: Sequence[Any]) -> dict[str, dict[str, Any]] | None:
    if provider != PROVIDER:
        return None
    settings = ctx.settings(PLUGIN)
    out: dict[str, dict[str, Any]] = {}
    for m in messages:
        params = {"PhoneNumber": _domestic(m.phone), "SendDate": m.claimed_at.astimezone(CHINA).strftime("%Y%m%d"),
                  "PageSize": "50", "CurrentPage": "1"}
        try:
            body = _call(settings, "QuerySendDetails", params, ctx.now())
        except (OSError, OutboundRefused):
            out[m.our_id] = {"status": "unknown"}
            continue
        if body.get("Code") != "OK":
            out[m.our_id] = {"status": "unknown", "error": body.get("Code")}
            continue
        details = (body.get("SmsSendDetailDTOs") or {}).get("SmsSendDetailDTO") or []
        found = next((d for d in details if isinstance(d, dict) and d.get("OutId") == m.our_id), None)
        if found is None:
            out[m.our_id] = {"status": "not_found"}
        else:
            status = {3: "delivered", 2: "failed", 1: "accepted"}.get(int(found.get("SendStatus") or 1), "accepted")
            out[m.our_id] = {"status": status, "error": found.get("ErrCode")}
    return out


def _pushed(ctx: HookContext, request: Any) -> list[dict[str, Any]]:
    token = ctx.settings(PLUGIN).get("callback_token") or ""
    given = str(request.query.get("token") or "")
    if not token or not hmac.compare_digest(given.encode(), token.encode()):
        raise Forbidden("missing or wrong ?token= on Aliyun's callback URL")
    try:
        items = json.loads(request.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput("not JSON", {"body": ["Aliyun pushes a JSON array"]}) from None
    if not isinstance(items, list):
        raise InvalidInput("not a list", {"body": ["Aliyun pushes a JSON array"]})
    return [i for i in items if isinstance(i, dict)]


@hookimpl
def sms_nurture_parse_receipt(ctx: HookContext, provider: str, request: Any) -> list[dict[str, Any]] | None:
    if provider != PROVIDER:
        return None
    return [{"our_id": i.get("out_id") or None, "provider_id": i.get("biz_id"),
             "status": "delivered" if i.get("success") else "failed", "at": i.get("report_time"),
             "error": i.get("err_msg") or i.get("err_code")} for i in _pushed(ctx, request)]


@hookimpl
def sms_nurture_parse_inbound(ctx: HookContext, provider: str, request: Any) -> list[dict[str, Any]] | None:
    if provider != PROVIDER:
        return None
    return [{"phone": i.get("phone_number"), "text": i.get("content"), "at": i.get("send_time")}
            for i in _pushed(ctx, request)]
