"""Calls to tenant-chosen URLs refuse internal targets, when saved and again when sent (finding 8)."""

from __future__ import annotations

import http.server
import socket
import threading

import pytest

from pelago.plugin import OutboundRefused, OutboundURL, post_json, sign_body


@pytest.fixture
def server():
    """A loopback HTTP server recording requests; answers ``state["status"]`` (302 points elsewhere)."""
    got: list[dict] = []
    state = {"status": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append({"path": self.path, "headers": dict(self.headers), "body": body})
            self.send_response(state["status"])
            if state["status"] == 302:
                self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield {"port": srv.server_address[1], "got": got, "state": state}
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("url", [
    "ftp://example.com/x", "http:///nohost", "https://user:pw@example.com/", "http://localhost:8080/",
    "http://api.localhost/", "http://127.0.0.1/", "http://127.1.2.3:6379/", "http://[::1]/",
    "http://[::ffff:127.0.0.1]/", "http://169.254.169.254/latest/meta-data", "http://10.1.2.3/",
    "http://172.16.0.1/", "http://192.168.1.1/", "http://100.64.0.1/", "http://0.0.0.0/",
    "http://[fe80::1]/", "http://[fc00::1]/", "http://224.0.0.1/", "http://example.com:99999/",
])
def test_internal_and_malformed_targets_are_refused_when_saved(url, monkeypatch):
    monkeypatch.delenv("PELAGO_OUTBOUND_ALLOW_PRIVATE", raising=False)
    field = OutboundURL()
    with pytest.raises(Exception) as err:
        field.deserialize(url)
    assert "ValidationError" in type(err.value).__name__


def test_public_targets_and_empty_pass(monkeypatch):
    monkeypatch.delenv("PELAGO_OUTBOUND_ALLOW_PRIVATE", raising=False)
    field = OutboundURL()
    assert field.deserialize("https://hooks.example.com/pelago?x=1") == "https://hooks.example.com/pelago?x=1"
    assert field.deserialize("http://8.8.8.8:8080/h") == "http://8.8.8.8:8080/h"
    assert field.deserialize("") == ""


def test_a_name_that_resolves_to_loopback_is_refused_at_send_time(server, monkeypatch):
    """The DNS answer at send time decides: a public-looking name now pointing at 127.0.0.1 is refused."""
    monkeypatch.delenv("PELAGO_OUTBOUND_ALLOW_PRIVATE", raising=False)
    real = socket.getaddrinfo

    def rebinding(host, *args, **kwargs):
        return real("127.0.0.1" if host == "hooks.example.com" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    OutboundURL().deserialize(f"http://hooks.example.com:{server['port']}/h")  # saving could not know
    with pytest.raises(OutboundRefused, match="loopback"):
        post_json(f"http://hooks.example.com:{server['port']}/h", b"{}")
    assert server["got"] == []

    monkeypatch.setenv("PELAGO_OUTBOUND_ALLOW_PRIVATE", "1")  # the operator allows private receivers
    answer = post_json(f"http://hooks.example.com:{server['port']}/h", b"{}")
    assert answer.ok and len(server["got"]) == 1


def test_post_json_signs_the_body_and_does_not_follow_redirects(server, monkeypatch):
    monkeypatch.setenv("PELAGO_OUTBOUND_ALLOW_PRIVATE", "1")
    body = b'{"a":1}'
    answer = post_json(f"http://127.0.0.1:{server['port']}/in?x=1", body, secret="s3cret",
                       headers={"X-Pelago-Event": "e"})
    assert answer.status == 200 and answer.body == b"ok"
    (sent,) = server["got"]
    assert sent["path"] == "/in?x=1" and sent["body"] == body
    assert sent["headers"]["X-Pelago-Signature"] == sign_body("s3cret", body)
    assert sent["headers"]["Content-Type"] == "application/json" and sent["headers"]["X-Pelago-Event"] == "e"

    server["state"]["status"] = 302
    answer = post_json(f"http://127.0.0.1:{server['port']}/in", body)
    assert answer.status == 302 and not answer.ok and len(server["got"]) == 2  # the 302 was not followed
