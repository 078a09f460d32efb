"""Calls from Pelago to URLs a tenant chose (webhooks, SMS gateways, ad platforms), guarded.

A tenant admin picks these URLs, so without a guard she could make the
server call its own internal services (``http://127.0.0.1:6379``, the cloud
metadata address, a database on the private network). The guard refuses
loopback, private, link-local, multicast, reserved and unspecified targets:

* when a URL is **saved** (:class:`OutboundURL`, a marshmallow field): the
  scheme, the host, an address written as an IP and names like ``localhost``;
* when a request is **sent** (:func:`post_json`): every address the name
  resolves to *at that moment*, and the socket connects only to an address
  that passed, so a DNS answer that changed since the save (or changes
  between two lookups) cannot slip through. Redirects are not followed.

An operator who runs receivers on a private network allows them with
``PELAGO_OUTBOUND_ALLOW_PRIVATE=1`` (read at each call, so every process
of a deployment honours it as soon as its environment has it).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import os
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from marshmallow import ValidationError, fields

ALLOW_PRIVATE_ENV = "PELAGO_OUTBOUND_ALLOW_PRIVATE"
SIGNATURE_HEADER = "X-Pelago-Signature"
LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
MAX_BODY = 64 * 1024  # bytes of an answer kept; receivers' answers are small


class OutboundRefused(ValueError):
    """A URL or the address it resolves to is not allowed (or is not a URL at all)."""


@dataclass(frozen=True)
class OutboundResponse:
    """What the receiver answered: status, headers (lower-case names) and up to 64 KiB of body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def private_allowed() -> bool:
    """Has the operator allowed private and loopback targets (``PELAGO_OUTBOUND_ALLOW_PRIVATE``)?"""
    return os.environ.get(ALLOW_PRIVATE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def _refused_address(address: str) -> str | None:
    """Why ``address`` (an IP) may not be called, or ``None``."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for test, what in (
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_private, "a private address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_reserved, "a reserved address"),
        (not ip.is_global, "not a public address"),
    ):
        if test:
            return f"{address} is {what}"
    return None


def check_url(url: str) -> tuple[str, str, int, str]:
    """Check a URL without resolving it: ``(scheme, host, port, path with query)``.

    Raises :class:`OutboundRefused` for anything but ``http``/``https`` with a
    host, and (unless private targets are allowed) for a host that is a
    refused IP address or a local name.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise OutboundRefused(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboundRefused("must be an http or https URL with a host")
    if parts.username is not None or parts.password is not None:
        raise OutboundRefused("must not carry a user name or password")
    host = parts.hostname.rstrip(".").lower()
    if not private_allowed():
        if host in LOCAL_NAMES or host.endswith(".localhost"):
            raise OutboundRefused(f"{host} is a loopback name")
        try:
            why = _refused_address(host)
        except ValueError:
            why = None  # a name: resolved and checked when sending
        if why:
            raise OutboundRefused(why)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80), path


def _guarded_connect(address: tuple[str, int], timeout: Any = None, source_address: Any = None) -> socket.socket:
    """``socket.create_connection`` that connects only to addresses the guard allows."""
    host, port = address
    allow = private_allowed()
    last: OSError | None = None
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    refused: list[str] = []
    for family, kind, proto, _name, sockaddr in infos:
        if not allow:
            why = _refused_address(str(sockaddr[0]))
            if why:
                refused.append(why)
                continue
        sock = socket.socket(family, kind, proto)
        try:
            if timeout is not None:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    if last is None and refused:
        raise OutboundRefused(f"{host} resolves to a refused target: {'; '.join(sorted(set(refused)))}")
    raise last or OSError(f"{host} did not resolve")


_in_transaction: ContextVar[str | None] = ContextVar("pelago_outbound_in_transaction", default=None)


@contextmanager
def no_calls(where: str) -> Iterator[None]:
    """Refuse :func:`post_json` while this block runs (the core wraps event handlers in it).

    A call made inside a transaction holds the transaction for as long as the
    receiver takes; on SQLite that is the write lock every API caller needs.
    """
    token = _in_transaction.set(where)
    try:
        yield
    finally:
        _in_transaction.reset(token)


def sign(secret: str, body: bytes) -> str:
    """The value of ``X-Pelago-Signature``: ``sha256=<hex HMAC-SHA256 of the raw body>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_json(
    url: str,
    body: bytes,
    *,
    headers: Mapping[str, str] | None = None,
    secret: str | None = None,
    timeout: float = 10.0,
) -> OutboundResponse:
    """POST ``body`` (JSON bytes) to ``url`` through the guard; signs it when ``secret`` is given.

    Returns the answer whatever its status (the caller decides what a
    failure is). Raises :class:`OutboundRefused` for a refused target and
    ``OSError`` when the receiver cannot be reached; redirects are answers,
    not followed. ``timeout`` bounds the **whole** call (connecting, sending,
    and reading the answer), not each socket operation: a receiver that
    answers a byte at a time cannot hold the caller past it
    (``TimeoutError``, an ``OSError``).
    """
    where = _in_transaction.get()
    if where is not None:
        raise RuntimeError(
            f"post_json called in {where}, whose transaction would stay open while {url} answers: "
            "queue the POST with queue_post(ctx, ...) instead (sent after the commit)"
        )
    scheme, host, port, path = check_url(url)
    sent = {"Content-Type": "application/json", "User-Agent": "pelago", **(headers or {})}
    if secret:
        sent[SIGNATURE_HEADER] = sign(secret, body)
    conn_class = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
    conn = conn_class(host, port, timeout=timeout)
    opened: list[socket.socket] = []

    def connect(address: tuple[str, int], timeout: Any = None, source_address: Any = None) -> socket.socket:
        sock = _guarded_connect(address, timeout, source_address)
        opened.append(sock)  # kept: http.client lets go of it once the answer owns it
        return sock

    conn._create_connection = connect  # type: ignore[attr-defined]
    expired = threading.Event()

    def cut() -> None:
        # The deadline passed: wake whatever socket call is blocked (the caller raises).
        expired.set()
        for sock in opened:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    watchdog = threading.Timer(timeout, cut)
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.request("POST", path, body=body, headers=sent)
        if conn.sock is not None:
            opened.append(conn.sock)  # HTTPS: the TLS socket (the plain one it wrapped is detached)
        answer = conn.getresponse()
        data = answer.read(MAX_BODY)
        if expired.is_set():
            raise TimeoutError(f"{host} did not answer in full within {timeout:g} s")
        return OutboundResponse(answer.status, {k.lower(): v for k, v in answer.getheaders()}, data)
    except (OSError, http.client.HTTPException) as exc:
        if expired.is_set():
            raise TimeoutError(f"{host} did not answer in full within {timeout:g} s") from exc
        raise
    finally:
        watchdog.cancel()
        conn.close()


class OutboundURL(fields.String):
    """A marshmallow field for a URL Pelago will call: ``http``/``https``, and not a refused target.

    Empty strings pass (a setting left empty means "none"). The same check
    runs again at send time, with DNS resolved then.
    """

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if text:
            try:
                check_url(text)
            except OutboundRefused as exc:
                raise ValidationError(str(exc)) from None
        return text
