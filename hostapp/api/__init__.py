"""The core's REST API under ``/api/v1``, one blueprint per resource."""

from __future__ import annotations

from flask_smorest import Blueprint as _Blueprint

from ..errors import Parser

__all__ = ["Blueprint", "LocalTime", "MoneyString", "core_blueprints"]


class Blueprint(_Blueprint):
    """flask-smorest's blueprint with Pelago's argument parser (malformed JSON → 422)."""

    ARGUMENTS_PARSER = Parser()


from .schemas import LocalTime, MoneyString  # noqa: E402 - fields for plugins' schemas too


def core_blueprints() -> list[_Blueprint]:
    from . import admin, channels, deals, imports, intake, leads, plugins, privacy, routing, tenants

    return [
        leads.blp, deals.blp, routing.blp, admin.users, admin.teams, admin.keys, admin.deliveries, plugins.blp,
        tenants.blp, channels.blp, intake.blp, imports.blp, privacy.blp,
    ]
