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


def test_post_json_has_a_deadline_for_the_whole_call_not_each_read(monkeypatch):
    """Issue 14 review: a receiver answering a byte at a time held the caller for as long as it liked.

    The per-socket timeout restarts with every byte; the deadline does not.
    The receiver here would take 10 s (a byte every 0.1 s); the call's
    ``timeout`` of 1 s ends it.
    """
    monkeypatch.setenv("PELAGO_OUTBOUND_ALLOW_PRIVATE", "1")
    stop, dripped = threading.Event(), []

    class Dripping(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                if stop.wait(0.1):  # a slow receiver's pace (and the test's end stops it)
                    return
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except OSError:
                    return
                dripped.append(1)

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Dripping)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        with pytest.raises(TimeoutError, match="within 1 s"):
            post_json(f"http://127.0.0.1:{srv.server_address[1]}/slow", b"{}", timeout=1)
        assert len(dripped) < 100  # cut off, not read to the end
    finally:
        stop.set()
        srv.shutdown()
        srv.server_close()


def test_an_event_handler_may_not_call_out_inside_its_transaction_it_queues_the_post(make_app, monkeypatch):
    """Issue 14 review: a handler's ``post_json`` held its delivery's transaction (SQLite: the write lock)
    open while the receiver answered. It is refused there (the delivery fails, saying what to do);
    ``queue_post`` in the same handler sends after the commit."""
    from pelago.plugin import PluginSpec, hookimpl, queue_post
    from pelago.testing import new_tenant

    monkeypatch.setenv("PELAGO_OUTBOUND_ALLOW_PRIVATE", "1")
    mode = {"call": "post_json"}
    got: list[bytes] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            got.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/hook"

    class Hooks:
        @staticmethod
        @hookimpl
        def lead_created(ctx, event):
            body = b'{"lead":%d}' % event.items[0]["lead_id"]
            if mode["call"] == "post_json":
                post_json(url, body)
            else:
                queue_post(ctx, url, body, plugin="caller")

    spec = PluginSpec(name="caller", title="Caller", description="calls out on new leads", version="0.1.0",
                      core=">=0.1", hooks=Hooks, default_enabled=True)
    app = make_app(plugins=["caller"], extra=(spec,))
    t = new_tenant(app)
    try:
        lead = t.post("/api/v1/leads", json={"name": "A", "phone": "13800138771"}).get_json()
        failed = t.get("/api/v1/deliveries?plugin=caller&state=failed").get_json()["items"]
        assert len(failed) == 1 and "queue_post" in failed[0]["last_error"] and not got
        mode["call"] = "queue_post"
        lead = t.post("/api/v1/leads", json={"name": "B", "phone": "13800138772"}).get_json()
        assert got == [b'{"lead":%d}' % lead["id"]]
        (sent,) = t.get("/api/v1/posts?plugin=caller").get_json()["items"]
        assert (sent["status"], sent["answer_status"], sent["attempts"]) == ("sent", 204, 1)
    finally:
        srv.shutdown()
        srv.server_close()
