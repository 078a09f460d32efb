"""``/api/v1/imports``: CSV imports, run as a background job.

``POST`` takes ``multipart/form-data`` (the file and optional ``mapping``,
``source``, ``channel``, ``delimiter``) of at most :data:`MAX_REQUEST` bytes,
stores the file, queues the ``import`` job and answers ``202`` with the
import. Without Redis the job runs inline, so the answer already shows it
done. ``GET /api/v1/imports/{id}`` shows progress, counts and the first row
errors.
"""

from __future__ import annotations

from typing import Any

from flask import request
from flask_smorest import abort
from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import select

from pelago.core.errors import InvalidInput
from pelago.core.models import Import as ImportRow
from pelago.core.pagination import paginate
from pelago.core.services import imports as svc

from .. import strict_input
from ..auth import commit, ctx, requires, runtime
from . import Blueprint, file_response
from .schemas import LocalTime, PageArgs, page_of

#: the largest upload: the file's limit plus room for the multipart envelope and form fields
MAX_REQUEST = svc.MAX_FILE_BYTES + 64 * 1024

blp = Blueprint(
    "imports", __name__, url_prefix="/api/v1/imports",
    description="CSV imports of leads: upload, progress, per-row errors",
)


class ImportSummary(Schema):
    id = fields.Integer(required=True)
    filename = fields.String(required=True)
    sha256 = fields.String(required=True)
    encoding = fields.String(allow_none=True, metadata={"description": "utf-8, utf-8-sig (with BOM) or gb18030"})
    mapping = fields.Dict(required=True, metadata={"description": "our field → column, as resolved at upload"})
    options = fields.Dict(required=True)
    status = fields.String(required=True, validate=validate.OneOf(("queued", "running", "done", "failed")))
    total_rows = fields.Integer(allow_none=True, metadata={"description": "data rows (blank lines not counted)"})
    processed_rows = fields.Integer(required=True)
    progress = fields.Float(allow_none=True, metadata={"description": "processed_rows / total_rows, 0…1"})
    created_leads = fields.Integer(required=True)
    merged_rows = fields.Integer(required=True, metadata={"description": "rows merged into an existing lead"})
    skipped_rows = fields.Integer(required=True, metadata={"description": "rows already imported (replayed)"})
    failed_rows = fields.Integer(required=True, metadata={"description": "rows refused, see errors"})
    error = fields.String(allow_none=True, metadata={"description": "why the import failed as a whole"})
    created_by = fields.Integer(allow_none=True)
    created_at = LocalTime(required=True)
    started_at = LocalTime(allow_none=True)
    finished_at = LocalTime(allow_none=True)


class RowError(Schema):
    row = fields.Integer(required=True, metadata={"description": "1 is the first line after the header"})
    field = fields.String(required=True)
    message = fields.String(required=True)


class ImportDetail(ImportSummary):
    """An import as its routes answer it: progress, counts and its first row errors."""

    errors = fields.List(fields.Nested(RowError), required=True, metadata={
        "description": f"the first {svc.SHOWN_ERRORS} row errors, by row",
    })
    error_count = fields.Integer(required=True, metadata={
        "description": f"row errors stored (at most {svc.MAX_STORED_ERRORS}; failed_rows counts every refused row)",
    })


ImportPage = page_of(ImportSummary)
RowErrorPage = page_of(RowError)


class _MappingJson(fields.Field):
    """A form field holding the mapping as a JSON object."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str):
            raise ValidationError("a JSON object")
        try:
            loaded = strict_input.loads(value)
        except (ValueError, strict_input.BadInput):
            raise ValidationError("not valid JSON") from None
        if not isinstance(loaded, dict):
            raise ValidationError("a JSON object, e.g. {\"phone\": \"手机号\"}")
        return loaded


class ImportForm(Schema):
    mapping = _MappingJson(load_default=None)
    source = fields.String(load_default=None, validate=validate.Length(min=1, max=100))
    channel = fields.String(load_default=None, validate=validate.Length(min=1, max=100))
    delimiter = fields.String(load_default=None, validate=validate.OneOf(svc.DELIMITERS))


UPLOAD_DOC = {
    "required": True,
    "content": {"multipart/form-data": {"schema": {
        "type": "object",
        "required": ["file"],
        "properties": {
            "file": {"type": "string", "format": "binary",
                     "description": f"the CSV, at most {svc.MAX_FILE_BYTES} bytes; UTF-8 (BOM or not) or GB18030"},
            "mapping": {"type": "string", "description": "JSON object: our field → column header, "
                        "e.g. {\"phone\": \"手机号\", \"attributes\": {\"grade\": \"年级\"}}; "
                        "unmapped fields are recognised from the header"},
            "source": {"type": "string", "maxLength": 100, "description": "source for rows without one"},
            "channel": {"type": "string", "maxLength": 100, "description": "the touches' channel (default import)"},
            "delimiter": {"type": "string", "enum": list(svc.DELIMITERS)},
        },
    }}},
}


def _summary(imp: ImportRow) -> dict[str, Any]:
    out = {name: getattr(imp, name) for name in ImportSummary().fields if name != "progress"}
    out["progress"] = (
        round(imp.processed_rows / imp.total_rows, 4) if imp.total_rows else (1.0 if imp.status == "done" else None)
    )
    return out


def _detail(imp: ImportRow) -> dict[str, Any]:
    errors, count = svc.import_errors(ctx(), imp)
    return _summary(imp) | {
        "errors": [{"row": e.row, "field": e.field, "message": e.message} for e in errors],
        "error_count": count,
    }


@blp.route("", methods=["POST"])
@blp.response(202, ImportDetail, description="stored and queued (inline without Redis: already run)")
@blp.doc(requestBody=UPLOAD_DOC)
@requires("manager")
def create() -> Any:
    """Upload a CSV of leads and queue its import (managers).

    `multipart/form-data` with `file` (UTF-8 or GB18030, at most 20 MiB) and
    optional `mapping`, `source`, `channel`, `delimiter`. A file that cannot
    work is refused at once (422 under `errors.form`). `202` with the import;
    without Redis the job has already run.
    """
    return upload_import()


def upload_import(**options: Any) -> Any:
    """Store the uploaded CSV as an import and queue its job: the response of a ``202``.

    The request body is documented by :data:`UPLOAD_DOC` (``@blp.doc(requestBody=UPLOAD_DOC)``;
    also ``upload_import.doc``).

    ``options`` are the import options the form cannot set (``route``,
    ``targets``): a plugin offering its own import route (the pool's
    "import into this pool") passes them and shares everything else.
    """
    c = ctx()
    # One byte of slack: a body without Content-Length (chunked) is cut at the
    # limit by werkzeug, not refused, and a cut file must not import half-way.
    # The form is then parsed from these cached bytes.
    request.max_content_length = MAX_REQUEST + 1
    if len(request.get_data(cache=True)) > MAX_REQUEST:
        abort(413, message=f"the upload is larger than {MAX_REQUEST} bytes (the file may have {svc.MAX_FILE_BYTES})")
    fields_ = [(k, v) for k, v in request.form.items(multi=True) if k]  # a part without a name says nothing
    try:
        strict_input.check_pairs(fields_)
    except strict_input.BadInput as exc:
        raise InvalidInput("invalid form", {"_schema": [str(exc)]}, "form") from None
    try:
        form = ImportForm().load(dict(fields_))
    except ValidationError as exc:
        raise InvalidInput("invalid input", exc.normalized_messages(), "form") from None
    upload = request.files.get("file")
    if upload is None:
        raise InvalidInput("no file", {"file": ["send the CSV as the multipart/form-data field 'file'"]}, "form")
    imp = svc.create_import(
        c, filename=upload.filename or "", content=upload.read(), mapping=form["mapping"],
        options={**{k: form[k] for k in ("source", "channel", "delimiter")}, **options},
    )
    commit()
    try:
        runtime().queue.enqueue("import", tenant_id=c.tenant.id, import_id=imp.id)
    except Exception:  # noqa: BLE001 - the queue is down: say so, and leave no import waiting forever
        runtime().log.exception("could not queue import %s", imp.id)
        imp.status, imp.error = "failed", "the job queue was unavailable; upload the file again"
        commit()
        abort(503, message="the job queue is unavailable; try again later")
    c.session.refresh(imp)
    return _detail(imp), 202, {"Location": f"/api/v1/imports/{imp.id}"}


upload_import.doc = UPLOAD_DOC  # type: ignore[attr-defined]


@blp.route("", methods=["GET"])
@blp.arguments(PageArgs, location="query")
@blp.response(200, ImportPage)
@requires("manager")
def index(args: dict[str, Any]) -> Any:
    """List imports, newest first (managers): status, progress, counts.

    Without their row errors; read one import for those.
    """
    page = paginate(ctx().session, select(ImportRow), ImportRow.id, args.get("cursor"), args["limit"])
    return {"items": [_summary(i) for i in page.items], "next_cursor": page.next_cursor}


@blp.route("/<int:import_id>", methods=["GET"])
@blp.response(200, ImportDetail)
@requires("manager")
def show(import_id: int) -> Any:
    """Read one import (managers): status, progress, counts and its first row errors.

    The first 100 errors by row, and `error_count`; every error is at
    `/errors` (paged) and `/errors.csv`.
    """
    return _detail(svc.get_import(ctx(), import_id))


@blp.route("/<int:import_id>/errors", methods=["GET"])
@blp.arguments(PageArgs, location="query")
@blp.response(200, RowErrorPage)
@requires("manager")
def errors(args: dict[str, Any], import_id: int) -> Any:
    """All the import's stored row errors, in row order, a page at a time.

    The import's own read shows only the first errors; this pages through
    every stored one (at most 10,000 per import) with `limit` and `cursor`,
    oldest row first.
    """
    c = ctx()
    page = svc.error_page(c, svc.get_import(c, import_id), args.get("cursor"), args["limit"])
    return {"items": [{"row": e.row, "field": e.field, "message": e.message} for e in page.items],
            "next_cursor": page.next_cursor}


@blp.route("/<int:import_id>/errors.csv", methods=["GET"])
@blp.response(200, {"type": "string"}, content_type="text/csv",
              description="`row,field,message`, a header line then every stored row error")
@requires("manager")
def errors_csv(import_id: int) -> Any:
    """Download every stored row error of the import as a CSV file.

    UTF-8 with a BOM (so spreadsheet programs read Chinese text right), one
    line per error: `row,field,message`, in row order. Cells that a
    spreadsheet would run as a formula are prefixed with `'`.
    """
    c = ctx()
    imp = svc.get_import(c, import_id)
    # At most MAX_STORED_ERRORS lines (about a megabyte): built whole, so the
    # request's transaction ends before the body is sent.
    return file_response("".join(svc.errors_csv(c, imp)), "text/csv", f"import-{imp.id}-errors.csv", bom=True)
