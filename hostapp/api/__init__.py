"""The core's REST API under ``/api/v1``, one blueprint per resource."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint as _Blueprint

from ..errors import Parser

__all__ = ["Blueprint", "LocalTime", "MoneyString", "core_blueprints", "file_response"]


class Blueprint(_Blueprint):
    """flask-smorest's blueprint with Pelago's argument parser (malformed JSON → 422)."""

    ARGUMENTS_PARSER = Parser()

    def arguments(self, schema: Any, *args: Any, **kwargs: Any) -> Any:
        """flask-smorest's ``arguments``, with a schema class made an instance once, here: webargs
        would make one at every request (a schema's ``__init__`` copies its fields). That one instance
        serves every request, on every thread: a schema (a plugin's too) keeps no per-load state on
        ``self``: what a load needs travels in the data, or comes from ``current_context()``."""
        if isinstance(schema, type):
            schema = schema()
        return super().arguments(schema, *args, **kwargs)


from .schemas import LocalTime, MoneyString  # noqa: E402 - fields for plugins' schemas too


def file_response(
    body: str | bytes, mimetype: str, filename: str | None = None, *, max_age: int = 0, bom: bool = False
) -> Any:
    """A non-JSON answer (an iCalendar feed, a CSV export): ``body`` as ``mimetype``, UTF-8 for text.

    ``filename`` adds ``Content-Disposition: attachment``; ``max_age`` a
    ``Cache-Control`` lifetime in seconds (0: ``no-store``). ``bom`` starts
    a text body with the UTF-8 byte order mark, which spreadsheet programs
    (Excel) need to read a CSV's Chinese text as UTF-8. Document such a
    route with ``@blp.doc(responses=...)``, as it has no response schema.
    """
    from flask import Response

    if bom and isinstance(body, str) and not body.startswith("\ufeff"):
        body = "\ufeff" + body
    data = body.encode("utf-8") if isinstance(body, str) else body
    kind = f"{mimetype}; charset=utf-8" if isinstance(body, str) else mimetype
    response = Response(data, status=200, content_type=kind)
    if filename:
        safe = "".join(ch for ch in filename if ch.isalnum() or ch in "._-") or "download"
        response.headers["Content-Disposition"] = f'attachment; filename="{safe}"'
    response.headers["Cache-Control"] = f"private, max-age={max_age}" if max_age > 0 else "no-store"
    return response


def core_blueprints() -> list[_Blueprint]:
    from . import admin, channels, deals, imports, intake, leads, plugins, privacy, routing, tenants

    return [
        leads.blp, deals.blp, routing.blp, admin.users, admin.teams, admin.keys, admin.deliveries, admin.posts,
        plugins.blp, tenants.blp, channels.blp, intake.blp, intake.sub_blp, imports.blp, privacy.blp,
    ]
