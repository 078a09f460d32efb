"""Imports: upload a CSV (UTF-8 or GB18030), watch its progress, read and download every row error.

The upload is the API's own :func:`~pelago.hostapp.api.imports.upload_import`
(same limits, same checks, same job); the pages only show its result.
"""

from __future__ import annotations

from typing import Any

from flask import Response, request
from sqlalchemy import select
from werkzeug.datastructures import ImmutableMultiDict

from pelago.core.errors import InvalidInput
from pelago.core.models import Import
from pelago.core.pagination import paginate
from pelago.core.services import imports as svc

from ..api.imports import upload_import
from ..auth import ctx
from . import bp, forms
from .web import back, console_requires, render_page

ERRORS_PER_PAGE = 100


@bp.route("/imports", methods=["GET", "POST"])
@console_requires("manager")
def imports() -> Any:
    c = ctx()
    errors: dict[str, Any] = {}
    error = None
    if request.method == "POST":
        # The API's upload reads every form field as an import option: the CSRF token (checked already) is not
        # one, and an input left empty is an option not given.
        request.form = ImmutableMultiDict(  # type: ignore[misc]
            [(k, v) for k, v in request.form.items(multi=True) if k != "csrf_token" and v.strip()])
        try:
            out, _status, _headers = upload_import()
        except InvalidInput as exc:
            c.session.rollback()
            errors, error = forms.errors_of(exc), exc.message
        else:
            return back("console.import_page", None, import_id=out["id"])
    page = paginate(c.session, select(Import), Import.id, request.args.get("cursor"), 20)
    html = render_page("console/imports.html", items=page.items, next_cursor=page.next_cursor, errors=errors,
                       error=error, form=request.form)
    return html, 422 if error else 200


def _progress(imp: Import) -> int:
    if imp.total_rows:
        return round(100 * imp.processed_rows / imp.total_rows)
    return 100 if imp.status == "done" else 0


@bp.get("/imports/<int:import_id>")
@console_requires("manager")
def import_page(import_id: int) -> Any:
    c = ctx()
    imp = svc.get_import(c, import_id)
    page = svc.error_page(c, imp, request.args.get("cursor"), ERRORS_PER_PAGE)
    return render_page("console/import.html", imp=imp, progress=_progress(imp), row_errors=page.items,
                       next_cursor=page.next_cursor)


@bp.get("/imports/<int:import_id>/progress")
@console_requires("manager")
def import_progress(import_id: int) -> Any:
    """The progress block alone, polled by htmx every second while the import runs.

    When it ends the whole page is reloaded (``HX-Refresh``) to show the errors.
    """
    imp = svc.get_import(ctx(), import_id)
    html = render_page("console/_import_progress.html", imp=imp, progress=_progress(imp))
    if imp.status in ("done", "failed") and request.args.get("was") in ("queued", "running"):
        return Response(html, headers={"HX-Refresh": "true"})
    return html


@bp.get("/imports/<int:import_id>/errors.csv")
@console_requires("manager")
def import_errors_csv(import_id: int) -> Any:
    """Every stored row error as CSV (the API's file: UTF-8 with a BOM, formulas defused)."""
    c = ctx()
    imp = svc.get_import(c, import_id)
    body = "\ufeff" + "".join(svc.errors_csv(c, imp))
    return Response(body.encode("utf-8"), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="import-{imp.id}-errors.csv"',
    })



