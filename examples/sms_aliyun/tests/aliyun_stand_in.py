"""A local stand-in for Aliyun's dysmsapi endpoint: it checks each request's signature the documented way.

It recomputes ``Signature`` from the query with the account's secret
(its own implementation of the documented algorithm, not the plugin's) and
answers ``SignatureDoesNotMatch`` (HTTP 400) when it differs. ``SendSms``
records the ``OutId`` (``sent`` counts them); ``QuerySendDetails`` answers
from those records by phone and date.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def documented_signature(secret: str, method: str, params: dict[str, str]) -> str:
    def enc(s: str) -> str:  # java.net.URLEncoder, then the three documented replacements
        return urllib.parse.quote_plus(s, safe="").replace("+", "%20").replace("*", "%2A").replace("%7E", "~")

    query = "&".join(f"{enc(k)}={enc(params[k])}" for k in sorted(params))
    to_sign = f"{method}&{enc('/')}&{enc(query)}"
    return base64.b64encode(hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()).decode()


class AliyunStandIn:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.sent: Counter[str] = Counter()
        self.records: list[dict[str, str]] = []
        self.bad_signatures = 0
        self.next_code = "OK"
        self.fail_http = False
        self._lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query, keep_blank_values=True))
                given = params.pop("Signature", "")
                if given != documented_signature(stand_in.secret, "POST", params):
                    with stand_in._lock:
                        stand_in.bad_signatures += 1
                    return self._reply(400, {"Code": "SignatureDoesNotMatch", "Message": "bad signature"})
                status, body = stand_in._handle(params)
                self._reply(status, body)

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handle(self, p: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if p.get("Version") != "2017-05-25" or p.get("SignatureMethod") != "HMAC-SHA1":
            return 400, {"Code": "InvalidVersion"}
        if p["Action"] == "SendSms":
            code = self.next_code
            if code != "OK":
                return 200, {"Code": code, "Message": code}
            with self._lock:
                self.sent[p["OutId"]] += 1
                biz = f"biz-{len(self.records) + 1}"
                self.records.append({"OutId": p["OutId"], "PhoneNum": p["PhoneNumbers"], "BizId": biz,
                                     "TemplateCode": p["TemplateCode"], "TemplateParam": p["TemplateParam"],
                                     "SignName": p["SignName"]})
            if self.fail_http:
                return 500, {"Code": "isp.SYSTEM_ERROR"}
            return 200, {"Code": "OK", "Message": "OK", "BizId": biz, "RequestId": "r"}
        if p["Action"] == "QuerySendDetails":
            found = [{"OutId": r["OutId"], "PhoneNum": r["PhoneNum"], "SendStatus": 3, "ErrCode": "DELIVERED"}
                     for r in self.records if r["PhoneNum"] == p["PhoneNumber"]]
            return 200, {"Code": "OK", "TotalCount": len(found), "SmsSendDetailDTOs": {"SmsSendDetailDTO": found}}
        return 400, {"Code": "InvalidAction"}
