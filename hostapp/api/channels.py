"""``/api/v1/channels``: webhook channels, administered by the tenant's admins.

The secret is answered twice only: when the channel is created and when it
is rotated. Lists and reads never show it.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate
from sqlalchemy import select

from pelago.core.models import Channel as ChannelRow
from pelago.core.pagination import paginate
from pelago.core.services import channels as svc

from ..auth import commit, ctx, requires
from . import Blueprint
from .schemas import LocalTime, PageArgs, page_of

blp = Blueprint(
    "channels", __name__, url_prefix="/api/v1/channels",
    description="Webhook channels: a public key, a signing secret and a payload mapping each",
)


class ChannelArgs(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    mapping = fields.Nested(svc.ChannelMapping, metadata={
        "description": "our field → dotted path into the payload; omitted fields keep the identity default",
    })
    source = fields.String(allow_none=True, validate=validate.Length(max=100), metadata={
        "description": "the leads' source when the payload has none",
    })
    active = fields.Boolean(load_default=True)


class ChannelPatch(Schema):
    name = fields.String(validate=validate.Length(min=1, max=100))
    mapping = fields.Nested(svc.ChannelMapping, metadata={"description": "replaces the mapping (over the defaults)"})
    source = fields.String(allow_none=True, validate=validate.Length(max=100))
    active = fields.Boolean()


class Channel(Schema):
    id = fields.Integer(required=True)
    key = fields.String(required=True, metadata={"description": "public: the webhook is POST /api/v1/intake/{key}"})
    url = fields.String(required=True, metadata={"description": "the webhook's path"})
    name = fields.String(required=True)
    mapping = fields.Dict(required=True, metadata={"description": "the effective mapping, defaults included"})
    source = fields.String(allow_none=True)
    active = fields.Boolean(required=True)
    created_at = LocalTime(required=True)


class ChannelSecret(Channel):
    secret = fields.String(required=True, metadata={
        "description": "the HMAC-SHA256 signing key; shown only now, store it at the sender",
    })


ChannelPage = page_of(Channel)


def _out(channel: ChannelRow, *, secret: bool = False) -> dict[str, Any]:
    out = {name: getattr(channel, name) for name in Channel().fields if name != "url"}
    out["url"] = f"/api/v1/intake/{channel.key}"
    if secret:
        out["secret"] = channel.secret
    return out


@blp.route("", methods=["POST"])
@blp.arguments(ChannelArgs)
@blp.response(201, ChannelSecret)
@requires("admin")
def create(data: dict[str, Any]) -> Any:
    """Create a webhook channel (admins); its secret is shown only now.

    The answer has the public `key`, the webhook `url` and the signing
    `secret`. `mapping` (our field → dotted path into the payload) is laid
    over the identity mapping. A duplicate name is a 409.
    """
    channel = svc.create_channel(ctx(), data)
    commit()
    return _out(channel, secret=True)


@blp.route("", methods=["GET"])
@blp.arguments(PageArgs, location="query")
@blp.response(200, ChannelPage)
@requires("admin")
def index(args: dict[str, Any]) -> Any:
    """List the tenant's webhook channels (admins), never with their secrets.

    Paginated with `limit` and `cursor`.
    """
    page = paginate(ctx().session, select(ChannelRow), ChannelRow.id, args.get("cursor"), args["limit"])
    return {"items": [_out(c) for c in page.items], "next_cursor": page.next_cursor}


@blp.route("/<int:channel_id>", methods=["GET"])
@blp.response(200, Channel)
@requires("admin")
def show(channel_id: int) -> Any:
    """Read one webhook channel (admins), without its secret.

    Another tenant's channel is a 404.
    """
    return _out(svc.get_channel(ctx(), channel_id))


@blp.route("/<int:channel_id>", methods=["PATCH"])
@blp.arguments(ChannelPatch)
@blp.response(200, Channel)
@requires("admin")
def patch(data: dict[str, Any], channel_id: int) -> Any:
    """Change a webhook channel (admins): name, mapping, source, active.

    A new `mapping` replaces the old one, over the defaults. An inactive
    channel's webhook answers 404.
    """
    c = ctx()
    channel = svc.update_channel(c, svc.get_channel(c, channel_id), data)
    commit()
    return _out(channel)


@blp.route("/<int:channel_id>/rotate-secret", methods=["POST"])
@blp.response(200, ChannelSecret)
@requires("admin")
def rotate(channel_id: int) -> Any:
    """Give a channel a new signing secret (admins), shown once.

    The old secret is refused from now on.
    """
    c = ctx()
    channel = svc.rotate_secret(c, svc.get_channel(c, channel_id))
    commit()
    return _out(channel, secret=True)


@blp.route("/<int:channel_id>", methods=["DELETE"])
@blp.response(204)
@requires("admin")
def delete(channel_id: int) -> Any:
    """Delete a webhook channel (admins).

    `204`. Touches keep the channel's name.
    """
    c = ctx()
    svc.delete_channel(c, svc.get_channel(c, channel_id))
    commit()
    return None
