"""``/api/v1/tenants``: the installation's tenants (operators only)."""

from __future__ import annotations

from typing import Any

from flask import g
from sqlalchemy import select

from pelago.core.models import Tenant
from pelago.core.pagination import paginate
from pelago.core.services import admin as svc

from ..auth import actor, requires, runtime
from . import Blueprint
from . import schemas as s

blp = Blueprint("tenants", __name__, url_prefix="/api/v1/tenants", description="Tenants (operators only)")


@blp.route("", methods=["GET"])
@blp.arguments(s.PageArgs, location="query")
@blp.response(200, s.TenantPage)
@requires("operator")
def index(args: dict[str, Any]) -> Any:
    """List the installation's tenants (operators).

    No `X-Pelago-Tenant` header is needed.
    """
    page = paginate(g.pelago_session, select(Tenant), Tenant.id, args.get("cursor"), args["limit"])
    return {"items": page.items, "next_cursor": page.next_cursor}


@blp.route("", methods=["POST"])
@blp.arguments(s.TenantArgs)
@blp.response(201, s.Tenant)
@requires("operator")
def create(data: dict[str, Any]) -> Any:
    """Create a tenant (operators).

    `slug` is 2-63 lowercase letters, digits and `-`; a duplicate slug is a
    409. Defaults: timezone `Asia/Shanghai`, region `CN`, currency `CNY`.
    """
    assert actor().role == "operator"
    session = g.pelago_session
    tenant = svc.create_tenant(session, now=runtime().clock(), **data)
    session.commit()
    return tenant
