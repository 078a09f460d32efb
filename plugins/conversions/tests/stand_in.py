"""A stand-in ad platform on 127.0.0.1: records every request, answers what the test says, can hold one.

``answer(request) -> (status, body dict)`` decides each answer (default:
200 ``{"message": "ok"}``); a request whose ``Idempotency-Key`` was seen
before and accepted is answered 200 ``{"duplicate": true}`` and counted
once, as a platform that deduplicates would. ``hold()`` makes the next request wait
(after it is recorded) until ``release()``, so a test can kill the sender
while the platform has the request.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class StandIn:
    answer: Callable[[Seen], tuple[int, dict[str, Any]]] = lambda r: (200, {"message": "ok"})
    received: list[Seen] = field(default_factory=list)
    keys: dict[str, int] = field(default_factory=dict)
    held: threading.Event = field(default_factory=threading.Event)
    _hold: bool = False
    _gate: threading.Event = field(default_factory=threading.Event)

    def start(self) -> StandIn:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                seen = Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                outer.received.append(seen)
                key = seen.headers.get("idempotency-key")
                if outer._hold:
                    outer._hold = False
                    outer.held.set()
                    outer._gate.wait(60)
                if key and key in outer.keys:  # accepted before: counted once
                    outer.keys[key] += 1
                    status, doc = 200, {"duplicate": True}
                else:
                    status, doc = outer.answer(seen)
                    if key and 200 <= status < 300:
                        outer.keys[key] = 1
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/conversions"

    def hold(self) -> None:
        self._hold = True

    def release(self) -> None:
        self._gate.set()

    def stop(self) -> None:
        self._gate.set()
        self.server.shutdown()
        self.server.server_close()
