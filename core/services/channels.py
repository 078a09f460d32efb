"""Webhook channels: where outside senders post leads, and how their payloads map to ours.

A channel belongs to a tenant but is found by its public ``key`` alone (the
webhook URL carries no tenant and no credential); the sender proves itself by
signing the body with the channel's ``secret`` (HMAC-SHA256). Every ad
platform shapes its callback differently, so each channel has a ``mapping``:
our field → a dotted path into the payload.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import select

from ..context import HookContext
from ..db import flush_or_conflict
from ..errors import InvalidInput, NotFound
from ..models import Channel
from .intake import Submission

#: our fields a channel can map; lead fields first, then the touch's attribution
LEAD_FIELDS = ("name", "phone", "email", "source", "region", "product")
TOUCH_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "click_id")
MAPPED_FIELDS = (*LEAD_FIELDS, "external_id", *TOUCH_FIELDS)
#: the identity mapping: a payload shaped like ``POST /api/v1/leads`` works as is
DEFAULT_MAPPING: dict[str, Any] = {name: name for name in MAPPED_FIELDS} | {"attributes": {}}

KEY_PREFIX = "ch_"
SECRET_PREFIX = "whsec_"
#: what a channel key can look like; anything else is a 404 before any query
KEY_SHAPE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
SIGNATURE = re.compile(r"^sha256=([0-9a-fA-F]{64})$")
MAX_PATH_DEPTH = 10
#: ``Touch.idempotency_key`` is 200 characters; longer external ids are hashed
MAX_KEY = 200


def _check_path(value: str) -> None:
    parts = value.split(".")
    if any(not p.strip() for p in parts):
        raise ValidationError("a dotted path such as 'data.phone' (no empty segments)")
    if len(parts) > MAX_PATH_DEPTH:
        raise ValidationError(f"at most {MAX_PATH_DEPTH} segments")


def _path(description: str = "") -> fields.String:
    return fields.String(
        allow_none=True, validate=[validate.Length(min=1, max=200), _check_path],
        metadata={"description": description or "dotted path into the payload (list items by index: "
                                                "'answers.0.value'); null: not mapped"},
    )


class ChannelMapping(Schema):
    """Our field → dotted path into the channel's JSON payload; ``attributes``: name → path."""

    name = _path()
    phone = _path()
    email = _path()
    source = _path()
    region = _path()
    product = _path()
    external_id = _path(
        "the sender's id of the submission: a retry with it is a no-op (unmapped or absent: the body's SHA-256)"
    )
    utm_source = _path()
    utm_medium = _path()
    utm_campaign = _path()
    utm_term = _path()
    utm_content = _path()
    click_id = _path()
    attributes = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=100)),
        values=fields.String(validate=[validate.Length(min=1, max=200), _check_path]),
        validate=validate.Length(max=50),
        metadata={"description": "lead attribute name → dotted path"},
    )


def effective_mapping(given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The defaults overlaid with ``given`` (validated); ``null`` unmaps a default."""
    try:
        loaded = ChannelMapping().load(dict(given or {}))
    except ValidationError as exc:
        raise InvalidInput("invalid mapping", {"mapping": exc.messages}) from None
    return {**DEFAULT_MAPPING, **loaded}


# --- administration ----------------------------------------------------------------


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(18)


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def create_channel(ctx: HookContext, data: Mapping[str, Any]) -> Channel:
    """A channel with a fresh key and secret; the caller shows the secret once."""
    channel = Channel(
        tenant_id=ctx.tenant.id, key=new_key(), secret=new_secret(), name=data["name"],
        mapping=effective_mapping(data.get("mapping")), source=data.get("source"),
        active=data.get("active", True), created_at=ctx.now(),
    )
    ctx.session.add(channel)
    flush_or_conflict(ctx.session, f"a channel named {data['name']!r} exists", {"name": ["already taken"]})
    return channel


def get_channel(ctx: HookContext, channel_id: int) -> Channel:
    channel = ctx.session.scalars(select(Channel).where(Channel.id == channel_id)).first()
    if channel is None:
        raise NotFound(f"channel {channel_id} not found")
    return channel


def update_channel(ctx: HookContext, channel: Channel, data: Mapping[str, Any]) -> Channel:
    """Rename, remap (a new mapping replaces the old, over the defaults), re-source, (de)activate."""
    for name in ("name", "source", "active"):
        if name in data:
            setattr(channel, name, data[name])
    if "mapping" in data:
        channel.mapping = effective_mapping(data["mapping"])
    flush_or_conflict(ctx.session, "a channel with this name exists", {"name": ["already taken"]})
    return channel


def rotate_secret(ctx: HookContext, channel: Channel) -> Channel:
    """A new secret at once: bodies signed with the old one are refused from now on."""
    channel.secret = new_secret()
    ctx.session.flush()
    return channel


def delete_channel(ctx: HookContext, channel: Channel) -> None:
    """Touches name their channel by text, so the history stays whole."""
    ctx.session.delete(channel)
    ctx.session.flush()


# --- the webhook -------------------------------------------------------------------------


def signature(secret: str, body: bytes) -> str:
    """The ``X-Pelago-Signature`` value a sender computes: ``sha256=<hex HMAC of the raw body>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def well_formed_signature(header: str | None) -> bool:
    return header is not None and SIGNATURE.match(header.strip()) is not None


def signature_matches(secret: str, body: bytes, header: str) -> bool:
    """Constant-time comparison over the raw bytes; the hex digits' case does not matter."""
    return hmac.compare_digest(signature(secret, body), header.strip().lower())


class Missing:
    """No value at the path (distinct from a JSON ``null``)."""


MISSING = Missing()


def lookup(payload: Any, path: str) -> Any:
    """The value at the dotted ``path``; list items are addressed by index."""
    value = payload
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return MISSING
    return value


def _text(value: Any) -> str | None:
    """A scalar as text; ``None`` for nothing; ``ValueError`` for objects and lists."""
    if value is MISSING or value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        text = str(value).strip()
        return text or None
    raise ValueError(type(value).__name__)


def submission(channel: Channel, payload: Mapping[str, Any], body: bytes) -> Submission:
    """The payload as one intake submission, through the channel's mapping.

    A path that points at an object or a list where text is expected is a
    field error (422), named by our field and the path. The idempotency key
    is the mapped external id, else the body's SHA-256, so a sender that
    retries with the same bytes or the same id changes nothing.
    """
    mapping = channel.mapping or DEFAULT_MAPPING
    values: dict[str, str | None] = {}
    errors: dict[str, list[str]] = {}
    for name in MAPPED_FIELDS:
        path = mapping.get(name)
        if not path:
            continue
        try:
            values[name] = _text(lookup(payload, path))
        except ValueError as exc:
            errors[name] = [f"expected text or a number at {path!r}, found {exc}"]
    attributes: dict[str, Any] = {}
    for attr, path in (mapping.get("attributes") or {}).items():
        found = lookup(payload, path)
        if found is not MISSING:
            attributes[attr] = found
    if errors:
        raise InvalidInput("the payload does not fit the channel's mapping", errors)
    data: dict[str, Any] = {name: values.get(name) for name in LEAD_FIELDS}
    data["source"] = data["source"] or channel.source
    data["attributes"] = attributes
    touch: dict[str, Any] = {name: values.get(name) for name in TOUCH_FIELDS}
    touch["channel"] = channel.name
    touch["source"] = data["source"]
    external = values.get("external_id")
    if external:
        key = f"channel:{channel.id}:{external}"
        if len(key) > MAX_KEY:
            key = f"channel:{channel.id}:sha256:{hashlib.sha256(external.encode()).hexdigest()}"
    else:
        key = f"channel:{channel.id}:body:{hashlib.sha256(body).hexdigest()}"
    return Submission(data=data, touch=touch, raw=payload, key=key)


def channel_by_key(session: Any, key: str) -> Channel:
    """The active channel with this public key, in any tenant; 404 otherwise (no shape is told apart)."""
    if not KEY_SHAPE.match(key):
        raise NotFound("no such channel")
    channel = session.scalars(
        select(Channel).where(Channel.key == key).execution_options(all_tenants=True)
    ).first()
    if channel is None or not channel.active:
        raise NotFound("no such channel")
    return channel
