"""What every plugin's console module needs besides views: its blueprint, the page size, refused forms, charts.

Kept on the public surface (``pelago.plugin``) so that a plugin's
``console.py`` holds only its pages: docs/console.md, "Adding a page".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import flask
from marshmallow import Schema

from pelago.core.errors import Conflict, InvalidInput, PelagoError

from ..auth import ctx
from . import forms
from .web import _

T = TypeVar("T")

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


@dataclass(frozen=True)
class Submitted(Generic[T]):
    """What became of a posted form (:func:`console_submit`): ``act``'s answer, or why it was refused.

    Refused (``error`` set): the form is shown again with ``error`` on top,
    ``errors`` at the fields and ``status`` (422 for the schema's refusal,
    the service's own status otherwise).
    """

    value: T | None = None
    error: str | None = None
    errors: dict[str, Any] = field(default_factory=dict)
    status: int = 200


def console_submit(schema: Schema, act: Callable[[dict[str, Any]], T], source: Mapping[str, Any] | None = None,
                   *, keep: Iterable[str] = ()) -> Submitted[T]:
    """Read the posted form (or ``source``) with ``schema`` and run ``act(data)``, as a plugin's form views do.

    ``console_form``'s reading (empty inputs not given, but those in
    ``keep``); a refusal of the service (``InvalidInput``, ``Conflict``)
    rolls the request back. Other errors (``NotFound`` …) propagate to the
    console's error pages.
    """
    data, errors = forms.read(schema, source, keep=keep)
    if errors:
        return Submitted(error=_(FIX), errors=errors, status=422)
    try:
        return Submitted(value=act(data))
    except (InvalidInput, Conflict) as exc:
        message, errors = console_refused(exc)
        return Submitted(error=message, errors=errors, status=exc.status)


def console_bars(rows: Sequence[tuple[str, int]], width: int = 320) -> dict[str, Any]:
    """A horizontal bar chart's data, drawn by ``{% from "console/_bars.html" import bars %}{{ bars(chart, label) }}``.

    ``rows``: ``(label, count)``; labels are translated when drawn. The
    chart is an inline SVG drawn on the server, with a table for screen readers.
    """
    top = max((n for _label, n in rows), default=0) or 1
    return {"rows": [(label, n, round(n / top * (width - 140))) for label, n in rows],
            "height": 22 * len(rows) + 4, "width": width}
