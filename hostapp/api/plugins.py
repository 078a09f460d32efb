"""``/api/v1/plugins``: what is deployed, what is on for this tenant, and its settings."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from pelago.core.context import HookContext
from pelago.core.models import TenantPlugin
from pelago.core.services.plugins import configure

from ..auth import commit, ctx, requires
from . import Blueprint
from . import schemas as s

blp = Blueprint("plugins", __name__, url_prefix="/api/v1/plugins", description="Plugin switches per tenant")


def describe(c: HookContext, name: str, row: TenantPlugin | None) -> dict[str, Any]:
    spec = c.host.spec(name)
    return {
        "name": spec.name,
        "title": spec.title,
        "description": spec.description,
        "version": spec.version,
        "requires": list(spec.requires),
        "enabled": name in c.tenant.enabled,
        "settings": c.host.masked(name, c.tenant.settings.get(name, {})),
        "updated_at": row.updated_at if row else None,
        "updated_by": row.updated_by if row else None,
    }


@blp.route("", methods=["GET"])
@blp.response(200, s.PluginList)
def index() -> Any:
    """List the deployed plugins and whether each is on for this tenant.

    Settings are shown with secrets masked as `********`. Plugins that are
    deployed but failed to load are listed under `failed`.
    """
    c = ctx()
    rows = {r.plugin: r for r in c.session.scalars(select(TenantPlugin))}
    return {
        "items": [describe(c, name, rows.get(name)) for name in c.host.specs],
        "failed": [{"name": f.name, "target": f.target, "error": f.error} for f in c.host.failures.values()],
    }


@blp.route("/<name>", methods=["GET"])
@blp.response(200, s.Plugin)
def show(name: str) -> Any:
    """Read one deployed plugin and its switch and settings for this tenant.

    A plugin that is not deployed is a 404.
    """
    c = ctx()
    c.host.spec(name)
    return describe(c, name, c.session.get(TenantPlugin, (c.tenant.id, name)))


@blp.route("/<name>", methods=["PUT"])
@blp.arguments(s.PluginArgs)
@blp.response(200, s.Plugin)
@requires("admin")
def put(data: dict[str, Any], name: str) -> Any:
    """Switch a plugin for this tenant and/or change its settings (admins).

    Settings are merged into the stored ones and validated by the plugin's
    schema (422); sending the mask back keeps a secret. Enabling without its
    `requires`, or disabling a plugin others need, is a 409. Takes effect on
    the next request.
    """
    c = configure(ctx(), name, enabled=data.get("enabled"), settings=data.get("settings"))
    row = c.session.get(TenantPlugin, (c.tenant.id, name))
    out = describe(c, name, row)
    commit()
    return out
