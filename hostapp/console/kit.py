"""What every plugin's console module needs besides views: its blueprint, the page size, refused forms, charts.

Kept on the public surface (``pelago.plugin``) so that a plugin's
``console.py`` holds only its pages: docs/console.md, "Adding a page".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flask

from pelago.core.errors import PelagoError

from ..auth import ctx
from .web import _

#: rows per page of a plugin's console lists (the API's pages are larger)
CONSOLE_PAGE = 50
FIX = "Please correct the fields marked below."


def console_blueprint(plugin: str, import_name: str) -> flask.Blueprint:
    """The plugin's console blueprint, ``<plugin>_pages``, with its templates in the package's ``templates/``."""
    return flask.Blueprint(f"{plugin}_pages", import_name, template_folder="templates")


def console_refused(exc: PelagoError | None = None) -> tuple[str, dict[str, Any]]:
    """``(message, field errors)`` for a form that was refused, to show on the form again.

    With ``exc`` (a service's ``InvalidInput``, ``Conflict`` …) the request's
    writes are rolled back first and the service's message and field errors
    are returned; without it, the console's "Please correct the fields
    marked below." and no field errors (for a form the schema refused: its
    errors are already in hand).
    """
    if exc is None:
        return _(FIX), {}
    ctx().session.rollback()
    return exc.message, dict(exc.errors or {})


def console_bars(rows: Sequence[tuple[str, int]], width: int = 320) -> dict[str, Any]:
    """A horizontal bar chart's data, drawn by ``{% from "console/_bars.html" import bars %}{{ bars(chart, label) }}``.

    ``rows``: ``(label, count)``; labels are translated when drawn. The
    chart is an inline SVG drawn on the server, with a table for screen readers.
    """
    top = max((n for _label, n in rows), default=0) or 1
    return {"rows": [(label, n, round(n / top * (width - 140))) for label, n in rows],
            "height": 22 * len(rows) + 4, "width": width}
