"""Stand-ins for Ocean Engine and Kuaishou on 127.0.0.1 that check each request's shape as documented.

A request that does not have the documented shape is answered as the
platform answers bad input (Ocean Engine ``{"code": 40001}``, Kuaishou
``{"result": 0}``) and noted in ``problems``, so a test sees both.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MILLIS = re.compile(r"^\d{13}$")


def ocean_problems(path: str, body: bytes) -> list[str]:
    problems = []
    if urlsplit(path).path != "/api/v2/conversion":
        problems.append(f"path {path}")
    try:
        doc = json.loads(body)
    except ValueError:
        return [*problems, "not JSON"]
    if set(doc) - {"event_type", "context", "timestamp", "properties"}:
        problems.append(f"unknown keys {sorted(set(doc))}")
    if not isinstance(doc.get("event_type"), str) or not doc["event_type"]:
        problems.append("event_type")
    if not isinstance(doc.get("context", {}).get("ad", {}).get("callback"), str):
        problems.append("context.ad.callback")
    if not isinstance(doc.get("timestamp"), int) or not MILLIS.match(str(doc["timestamp"])):
        problems.append("timestamp (milliseconds)")
    if "properties" in doc and not isinstance(doc["properties"].get("pay_amount"), (int, float)):
        problems.append("properties.pay_amount")
    return problems


def kuaishou_problems(path: str, body: bytes) -> list[str]:
    parts = urlsplit(path)
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    problems = []
    if parts.path != "/track/activate":
        problems.append(f"path {parts.path}")
    for key in ("callback", "event_type", "event_time"):
        if not q.get(key):
            problems.append(key)
    if not MILLIS.match(q.get("event_time", "")):
        problems.append("event_time (13 digits)")
    if "purchase_amount" in q and not re.match(r"^\d+\.\d{2}$", q["purchase_amount"]):
        problems.append("purchase_amount")
    if set(q) - {"callback", "event_type", "event_time", "purchase_amount"}:
        problems.append(f"unknown parameters {sorted(q)}")
    return problems


@dataclass
class Platform:
    kind: str  # "ocean" or "kuaishou"
    received: list[tuple[str, bytes]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    reject: set[str] = field(default_factory=set)  # callbacks to refuse as unknown
    busy: int = 0  # answer this many requests 503 first
    held: threading.Event = field(default_factory=threading.Event)
    _hold: bool = False
    _gate: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Platform:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.received.append((self.path, body))
                if outer._hold:
                    outer._hold = False
                    outer.held.set()
                    outer._gate.wait(60)
                status, doc = (503, {"message": "busy"}) if outer.busy else (200, outer._answer(self.path, body))
                outer.busy = max(outer.busy - 1, 0)
                data = json.dumps(doc, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def _answer(self, path: str, body: bytes) -> dict[str, Any]:
        if self.kind == "ocean":
            problems = ocean_problems(path, body)
            callback = json.loads(body).get("context", {}).get("ad", {}).get("callback") if not problems else None
            self.problems += problems
            if problems:
                return {"code": 40001, "message": "参数错误: " + ", ".join(problems)}
            if callback in self.reject:
                return {"code": 40002, "message": "callback 无效"}
            return {"code": 0, "message": "成功"}
        problems = kuaishou_problems(path, body)
        self.problems += problems
        if problems:
            return {"result": 0, "error_msg": ", ".join(problems)}
        if parse_qs(urlsplit(path).query)["callback"][0] in self.reject:
            return {"result": 0, "error_msg": "callback invalid"}
        return {"result": 1}

    @property
    def url(self) -> str:
        port = self.server.server_address[1]
        return f"http://127.0.0.1:{port}" + ("/api/v2/conversion" if self.kind == "ocean" else "/track/activate")

    def hold(self) -> None:
        self._hold = True

    def release(self) -> None:
        self._gate.set()

    def stop(self) -> None:
        self._gate.set()
        self.server.shutdown()
        self.server.server_close()
