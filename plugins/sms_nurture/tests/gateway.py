"""A local stand-in SMS gateway speaking the ``http`` provider's protocol, for tests and benchmarks.

It listens on 127.0.0.1 only, checks every request's ``X-Pelago-Signature``
(401 otherwise), and *counts*: ``received[our_id]`` is how many times a send
for that id arrived, so a double send is visible. ``POST /send`` answers
``{"id": "gw-N"}``; ``POST /status`` answers what it received, by our id; ``POST /counts`` the totals.
``python -m pelago.plugins.sms_nurture.tests.gateway SECRET`` serves one in a
process of its own (its URL on the first line of stdout) until stdin closes.
``hold()`` makes the next send block after it was counted (and before it is
answered) until ``release()``: a worker can be killed right there. ``answer``
overrides the status code of sends (``503``: the gateway took it but said no
answer, which the dispatch must reconcile rather than resend).
"""

from __future__ import annotations

import hmac
import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pelago.plugin import sign_body


class Gateway:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.received: Counter[str] = Counter()
        self.bodies: dict[str, dict[str, Any]] = {}
        self.refuse: set[str] = set()
        self.answer: int | None = None
        self.unsigned = 0
        self._lock = threading.Lock()
        self._hold: threading.Event | None = None
        self.held = threading.Event()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                given = self.headers.get("X-Pelago-Signature") or ""
                if not hmac.compare_digest(given, sign_body(gateway.secret, raw)):
                    with gateway._lock:
                        gateway.unsigned += 1
                    return self._reply(401, {"error": "bad signature"})
                body = json.loads(raw)
                if self.path == "/send":
                    return self._reply(*gateway._send(body))
                if self.path == "/status":
                    return self._reply(200, gateway._status(body))
                if self.path == "/counts":
                    return self._reply(200, gateway.counts())
                return self._reply(404, {"error": "no such path"})

            def _reply(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def settings(self) -> dict[str, str]:
        """The ``sms_nurture`` settings that point the ``http`` provider here."""
        return {"provider": "http", "http_send_url": f"{self.url}/send", "http_status_url": f"{self.url}/status",
                "http_secret": self.secret}

    def start(self) -> Gateway:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()

    def hold(self) -> None:
        self._hold = threading.Event()

    def release(self) -> None:
        if self._hold is not None:
            self._hold.set()

    def _send(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        our_id = str(body["id"])
        if our_id in self.refuse:
            return 400, {"error": "invalid number"}
        with self._lock:
            self.received[our_id] += 1
            self.bodies[our_id] = body
            n = sum(self.received.values())
            hold, self._hold = self._hold, None
        if hold is not None:
            self.held.set()
            hold.wait(60)
        if self.answer is not None:
            return self.answer, {"error": "try later"}
        return 200, {"id": f"gw-{n}"}

    def _status(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return {"messages": {
                i: ({"status": "accepted", "provider_id": f"gw-{i}"} if self.received[i] else {"status": "not_found"})
                for i in body.get("ids", [])}}

    def counts(self) -> dict[str, int]:
        """How many sends arrived, for how many ids, and how many ids arrived more than once."""
        with self._lock:
            return {"received": sum(self.received.values()), "distinct": len(self.received),
                    "doubles": sum(1 for v in self.received.values() if v > 1)}

    def doubles(self) -> dict[str, int]:
        return {k: v for k, v in self.received.items() if v > 1}


if __name__ == "__main__":
    import sys

    served = Gateway(sys.argv[1]).start()
    print(served.url, flush=True)
    sys.stdin.read()
    served.stop()
