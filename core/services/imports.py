"""CSV imports: a file in, leads out through the same intake line as the API and the webhooks.

Upload (:func:`create_import`) stores the file, detects its encoding and
delimiter, reads the header and resolves the column mapping, so a file that
cannot work (unknown encoding, no phone or email column, a mapped column that
is not there) is refused at once with field errors. The job (:func:`run_import`,
registered as ``import``) then streams the rows — ``csv`` over a text wrapper,
never the whole file as rows in memory — in batches of :data:`BATCH` through
:func:`~pelago.core.services.intake.ingest`, each batch in its own
transaction together with its progress and its row errors.

Every row carries the idempotency key ``import:<sha256 of the file>:<row>``,
so importing the same file again replays each row instead of adding to it.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
import unicodedata
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import func, insert, select, update

from ..context import Actor, HookContext
from ..errors import Busy, Conflict, InvalidInput, NotFound
from ..models import Import, ImportError_, User
from ..pagination import Page, paginate
from .intake import Outcome, Submission, ingest

if TYPE_CHECKING:  # pragma: no cover
    from ..runtime import Runtime

#: the largest file accepted, in bytes (split bigger exports)
MAX_FILE_BYTES = 20 * 1024 * 1024
#: rows per transaction (and per call of the decision hooks)
BATCH = 1000
#: row errors kept per import; ``failed_rows`` still counts every refused row
MAX_STORED_ERRORS = 10_000
#: How long a worker holds an import between two batches; a worker that died is replaced after it.
LEASE = timedelta(minutes=5)
#: Workers that may die on one import before it is failed instead of resumed again.
MAX_ATTEMPTS = 3
#: how many errors an import's read shows
SHOWN_ERRORS = 100
#: Pauses (seconds) before each retry of an import's write that found the database busy
#: (SQLite's write gate past its wait): the import waits its turn behind API writers, bounded.
BUSY_BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0)
DEFAULT_CHANNEL = "import"
DELIMITERS = (",", "\t", ";", "|")
LEAD_FIELDS = ("name", "phone", "email", "source", "region", "product")
TOUCH_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "click_id")
FIELDS = (*LEAD_FIELDS, *TOUCH_FIELDS)

#: header names recognised without a mapping (compared after :func:`normalise_header`)
ALIASES: dict[str, tuple[str, ...]] = {
    "name": ("name", "full name", "customer name", "contact", "contact name", "姓名", "名字", "客户姓名",
             "客户名称", "客户名", "联系人", "联系人姓名", "称呼", "学生姓名", "家长姓名"),
    "phone": ("phone", "mobile", "mobile phone", "mobile number", "phone number", "cell", "cellphone",
              "telephone", "tel", "手机", "手机号", "手机号码", "电话", "电话号码", "联系电话", "联系方式",
              "移动电话", "家长电话", "家长手机"),
    "email": ("email", "e mail", "mail", "email address", "邮箱", "电子邮箱", "电子邮件", "邮件", "邮箱地址"),
    "source": ("source", "lead source", "来源", "线索来源", "客户来源", "渠道", "来源渠道", "渠道来源"),
    "region": ("region", "area", "city", "province", "location", "地区", "区域", "城市", "省份", "所在地",
               "所在地区", "所在城市", "校区"),
    "product": ("product", "course", "interest", "产品", "意向产品", "课程", "意向课程", "咨询课程",
                "咨询产品", "意向"),
    "utm_source": ("utm source",),
    "utm_medium": ("utm medium",),
    "utm_campaign": ("utm campaign", "campaign", "广告计划", "推广计划"),
    "utm_term": ("utm term", "keyword", "关键词"),
    "utm_content": ("utm content",),
    "click_id": ("click id", "clickid", "gclid", "点击id"),
}


def normalise_header(text: str) -> str:
    """Compare headers loosely: full-width folded, case, spaces/_/-, and marks like ``*`` or ``：``."""
    text = unicodedata.normalize("NFKC", text).strip().lower()
    text = re.sub(r"[\s_\-]+", " ", text)
    return text.strip(" *:：()（）")


_ALIAS_INDEX = {normalise_header(alias): name for name, aliases in ALIASES.items() for alias in aliases}


def _column(**kw: Any) -> fields.String:
    return fields.String(allow_none=True, validate=validate.Length(min=1, max=200), **kw)


class ImportMapping(Schema):
    """Our field → the CSV column header holding it; ``null`` turns auto-detection off for it."""

    name = _column()
    phone = _column()
    email = _column()
    source = _column()
    region = _column()
    product = _column()
    utm_source = _column()
    utm_medium = _column()
    utm_campaign = _column()
    utm_term = _column()
    utm_content = _column()
    click_id = _column()
    attributes = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=100)),
        values=fields.String(validate=validate.Length(min=1, max=200)),
        validate=validate.Length(max=50),
        metadata={"description": "lead attribute name → column header"},
    )


class ImportOptions(Schema):
    source = fields.String(allow_none=True, validate=validate.Length(min=1, max=100), metadata={
        "description": "the leads' source where the row has none",
    })
    channel = fields.String(allow_none=True, validate=validate.Length(min=1, max=100), metadata={
        "description": f"the touches' channel (default {DEFAULT_CHANNEL!r})",
    })
    delimiter = fields.String(allow_none=True, validate=validate.OneOf(DELIMITERS), metadata={
        "description": "default: whichever of , TAB ; | the header line has most of",
    })
    route = fields.Boolean(load_default=True, metadata={
        "description": "route new leads as intake does; false leaves them unowned",
    })
    targets = fields.Dict(keys=fields.String(validate=validate.Length(min=1, max=64)), load_default=dict, metadata={
        "description": "options for plugins, by plugin name (e.g. the pool's destination): the core keeps "
                       "them on the import, and lead_created items carry the import_id to find them",
    })


# --- reading the file ---------------------------------------------------------------------


def _decodes(content: bytes, encoding: str) -> bool:
    """Strictly decodable as ``encoding``, checked in chunks (no second copy of the file)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    view = memoryview(content)
    try:
        for start in range(0, len(content), 1 << 20):
            decoder.decode(view[start:start + (1 << 20)])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def detect_encoding(content: bytes) -> str:
    """UTF-8 with a BOM, else strict UTF-8, else GB18030 (Excel's CSV export in China)."""
    if content.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if content.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InvalidInput("UTF-16 files are not supported", {
            "file": ["UTF-16 text: save it as 'CSV UTF-8' (or plain CSV) instead"]}, "form")
    if _decodes(content, "utf-8"):
        return "utf-8"
    if _decodes(content, "gb18030"):
        return "gb18030"
    raise InvalidInput("unknown encoding", {"file": ["neither UTF-8 nor GB18030 text"]}, "form")


def _records(content: bytes, encoding: str, delimiter: str) -> Iterator[list[str]]:
    """The file's CSV records, one at a time.

    Strict: a quote left open (which would otherwise swallow every row up to
    the end of the file into one field) or text right after a closing quote
    is a ``csv.Error``, so a broken file fails with its row number instead
    of silently losing rows.
    """
    text = io.TextIOWrapper(io.BytesIO(content), encoding=encoding, newline="")
    return csv.reader(text, delimiter=delimiter, strict=True)


def _csv_problem(exc: csv.Error) -> str:
    """``csv``'s message, with what it means for the two mistakes spreadsheets and scripts make."""
    text = str(exc)
    if "unexpected end of data" in text:
        return "a quote opened in this row is never closed"
    if "expected after" in text:
        return f"text right after a closing quote: {text}"
    return text


def _first_line(content: bytes, encoding: str) -> str:
    text = io.TextIOWrapper(io.BytesIO(content), encoding=encoding, newline="")
    return text.readline()


def detect_delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def _blank(record: list[str]) -> bool:
    return not any(v.strip() for v in record)


def resolve_mapping(header: list[str], given: Mapping[str, Any] | None) -> dict[str, Any]:
    """Our field → column: the given mapping first, the rest recognised from the header.

    A given column that is not in the header is a field error; so is a
    header with neither a phone nor an email column (nothing to dedupe on).
    """
    try:
        explicit = ImportMapping().load(dict(given or {}))
    except ValidationError as exc:
        raise InvalidInput("invalid mapping", {"mapping": exc.messages}, "form") from None
    columns = [h.strip() for h in header]
    present = set(columns)
    errors: dict[str, list[str]] = {}
    resolved: dict[str, Any] = {}
    for name in FIELDS:
        column = explicit.get(name)
        if column is not None:
            if column.strip() not in present:
                errors[name] = [f"no column {column!r} in the header"]
            resolved[name] = column.strip()
    attributes: dict[str, str] = {}
    for attr, column in (explicit.get("attributes") or {}).items():
        if column.strip() not in present:
            errors[f"attributes.{attr}"] = [f"no column {column!r} in the header"]
        attributes[attr] = column.strip()
    if errors:
        raise InvalidInput("the mapping names columns the file does not have", {"mapping": errors}, "form")
    used = set(resolved.values()) | set(attributes.values())
    for column in columns:
        found = _ALIAS_INDEX.get(normalise_header(column))
        if found and found not in explicit and found not in resolved and column not in used:
            resolved[found] = column
            used.add(column)
    if not resolved.get("phone") and not resolved.get("email"):
        raise InvalidInput("no phone or email column", {"mapping": {"phone": [
            "no phone or email column was recognised in the header "
            f"({', '.join(repr(c) for c in columns[:20])}); map one, e.g. {{\"phone\": \"<column>\"}}"
        ]}}, "form")
    resolved["attributes"] = attributes
    return resolved


# --- upload ---------------------------------------------------------------------------------


def create_import(
    ctx: HookContext, *, filename: str, content: bytes, mapping: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
) -> Import:
    """Store a file to import, refusing at once what cannot be imported; the caller queues the job."""
    if not content:
        raise InvalidInput("the file is empty", {"file": ["the file is empty"]}, "form")
    if len(content) > MAX_FILE_BYTES:
        raise InvalidInput("file too large", {"file": [f"larger than {MAX_FILE_BYTES} bytes: split it"]}, "form")
    try:
        opts = ImportOptions().load(dict(options or {}))
    except ValidationError as exc:
        raise InvalidInput("invalid options", exc.normalized_messages(), "form") from None
    encoding = detect_encoding(content)
    delimiter = opts.get("delimiter") or detect_delimiter(_first_line(content, encoding))
    try:
        header = next(iter(_records(content, encoding, delimiter)), [])
    except csv.Error as exc:
        raise InvalidInput("unreadable header", {"file": [f"the header line is not CSV: {exc}"]}, "form") from None
    if _blank(header):
        raise InvalidInput("no header", {"file": ["the first line must be the header (column names)"]}, "form")
    if any("\x00" in h for h in header):
        raise InvalidInput("unreadable header", {"file": ["the header contains the NUL character"]}, "form")
    resolved = resolve_mapping(header, mapping)
    imp = Import(
        tenant_id=ctx.tenant.id, filename=_clean_filename(filename), sha256=hashlib.sha256(content).hexdigest(),
        content=content, encoding=encoding, mapping=resolved,
        options={"source": opts.get("source"), "channel": opts.get("channel") or DEFAULT_CHANNEL,
                 "delimiter": delimiter, "route": opts["route"], "targets": opts["targets"]},
        status="queued", processed_rows=0, created_leads=0, merged_rows=0, skipped_rows=0, failed_rows=0,
        resume_after_row=0, attempts=0, created_by=ctx.actor.user_id if ctx.actor else None, created_at=ctx.now(),
        # A queued import's lease is its hand-off: a worker claims it by then, or the job
        # that would have run it was lost (with the embedded server) and it is queued again.
        lease_until=ctx.now() + LEASE,
    )
    ctx.session.add(imp)
    ctx.session.flush()
    return imp


def _clean_filename(name: str) -> str:
    """The base name, without characters a database cannot store or a log should not show."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = "".join(ch for ch in base if ch.isprintable() and not 0xD800 <= ord(ch) <= 0xDFFF)
    return base[:255]


# --- reads ----------------------------------------------------------------------------------


def get_import(ctx: HookContext, import_id: int) -> Import:
    imp = ctx.session.scalars(select(Import).where(Import.id == import_id)).first()
    if imp is None:
        raise NotFound(f"import {import_id} not found")
    return imp


def error_page(ctx: HookContext, imp: Import, cursor: str | None, limit: int) -> Page[ImportError_]:
    """One page of the import's stored row errors, in row order (they are stored batch by batch, by row)."""
    return paginate(ctx.session, select(ImportError_).where(ImportError_.import_id == imp.id), ImportError_.id,
                    cursor, limit, oldest_first=True)


def errors_csv(ctx: HookContext, imp: Import) -> Iterator[str]:
    """Every stored row error of the import as CSV text (``row,field,message``), a line at a time.

    A cell that a spreadsheet would run as a formula (starting with ``=``,
    ``+``, ``-``, ``@``, a tab or a carriage return) is prefixed with ``'``.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")

    def line(cells: list[Any]) -> str:
        out.seek(0)
        out.truncate()
        writer.writerow(["'" + c if isinstance(c, str) and c[:1] in _FORMULA else c for c in cells])
        return out.getvalue()

    yield line(["row", "field", "message"])
    last = 0
    while True:
        chunk = list(ctx.session.execute(
            select(ImportError_.id, ImportError_.row, ImportError_.field, ImportError_.message)
            .where(ImportError_.import_id == imp.id, ImportError_.id > last).order_by(ImportError_.id).limit(BATCH)
        ))
        for _id, row, name, message in chunk:
            yield line([row, name, message])
        if len(chunk) < BATCH:
            return
        last = chunk[-1][0]


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def import_errors(ctx: HookContext, imp: Import, limit: int | None = None) -> tuple[list[ImportError_], int]:
    """The first ``limit`` (default :data:`SHOWN_ERRORS`) stored row errors, by row, and how many are stored."""
    rows = list(ctx.session.scalars(
        select(ImportError_).where(ImportError_.import_id == imp.id)
        .order_by(ImportError_.row, ImportError_.id).limit(limit or SHOWN_ERRORS)
    ))
    total = ctx.session.scalar(
        select(func.count()).select_from(ImportError_).where(ImportError_.import_id == imp.id)
    )
    return rows, int(total or 0)


# --- the job ------------------------------------------------------------------------------------


@dataclass
class _Batch:
    first_row: int = 0
    last_row: int = 0
    subs: list[Submission] = field(default_factory=list)
    refused: list[tuple[int, str, str]] = field(default_factory=list)  # (row, field, message)

    def __len__(self) -> int:
        return len(self.subs) + len({r for r, _, _ in self.refused})


Progress = Callable[[int, int], None]


def run_import(
    runtime: Runtime, tenant_id: int, import_id: int, *, progress: Progress | None = None
) -> dict[str, Any]:
    """The ``import`` job: take a queued import through intake; returns its final counts.

    An import that is not ``queued`` is left alone (another worker has it, or
    it ran). Whatever goes wrong ends as status ``failed`` with the reason,
    never as an exception out of the job: rows already committed stay, and
    running the file again replays them.
    """
    token = uuid.uuid4().hex
    try:
        return _run(runtime, tenant_id, import_id, progress, token)
    except LeaseLost:
        runtime.log.warning("import %s of tenant %s: another worker took it over", import_id, tenant_id)
    except Conflict as exc:
        _finish(runtime, tenant_id, import_id, "failed", exc.message, token)
    except Exception as exc:  # noqa: BLE001 - recorded on the import, which is what callers read
        runtime.log.exception("import %s of tenant %s failed", import_id, tenant_id)
        _finish(runtime, tenant_id, import_id, "failed", f"internal error: {type(exc).__name__}: {exc}", token)
    return _summary(runtime, tenant_id, import_id)


def _pause(seconds: float) -> None:
    """Wait before a retry (tests replace it)."""
    import time

    time.sleep(seconds)


def _when_free(runtime: Runtime, what: str, write: Callable[[], Any]) -> Any:
    """``write()`` (one transaction), again after a pause each time it finds the database busy.

    An import is background work: a ``Busy`` (the embedded mode's write gate
    full of API writers past ``PELAGO_SQLITE_WRITE_WAIT``) means "later", not
    "fail the import". Bounded by :data:`BUSY_BACKOFF`; the transaction that
    was refused wrote nothing, so a retry is safe.
    """
    for pause in (*BUSY_BACKOFF, None):
        try:
            return write()
        except Busy:
            if pause is None:
                raise
            runtime.log.info("import: database busy during %s; retrying in %.1f s", what, pause)
            _pause(pause)
    raise AssertionError("unreachable")  # pragma: no cover


class LeaseLost(Exception):
    """This worker's lease on an import ran out and another worker took it: stop, write nothing."""


def resume_stalled(runtime: Runtime, *, lost_queue: bool = False) -> int:
    """Hand the imports whose job or worker is gone to the queue again; returns how many.

    * ``running`` with its lease expired: its worker died; the job goes on
      after its last committed batch.
    * ``queued`` with its hand-off lease expired (:data:`LEASE` after it was
      queued, or again after it was last handed over): the job that would
      have run it is gone, e.g. with the embedded server's in-memory queue
      when the server stopped first. Its lease moves on by :data:`LEASE`
      (a conditional update: one scheduler hands it over per lease).
    * ``lost_queue``: every ``queued`` import, whatever its lease (the
      embedded server at start, whose queue is new and empty).

    The scheduler's tick enqueues this; the import job itself claims the
    import (one winner, so a job handed over twice runs it once).
    """
    now = runtime.clock()
    queued_due = Import.status == "queued"
    if not lost_queue:
        queued_due = queued_due & (Import.lease_until.is_(None) | (Import.lease_until < now))
    with runtime.sessions() as session:
        stalled = session.execute(
            select(Import.tenant_id, Import.id, Import.status)
            .where(((Import.status == "running") & (Import.lease_until < now)) | queued_due)
            .order_by(Import.id).execution_options(all_tenants=True)
        ).all()
        handed: list[tuple[int, int]] = []
        for tenant_id, import_id, status in stalled:
            if status == "queued":  # the hand-off lease moves on: one scheduler hands it over
                won = session.execute(  # type: ignore[attr-defined]  # a CursorResult
                    update(Import).where(Import.id == import_id, queued_due)
                    .values(lease_until=now + LEASE).execution_options(synchronize_session=False)
                ).rowcount
                if not won:
                    continue
            handed.append((tenant_id, import_id))
        session.commit()
    for tenant_id, import_id in handed:
        runtime.queue.enqueue("import", tenant_id=tenant_id, import_id=import_id)
    return len(handed)


def _claim(runtime: Runtime, tenant_id: int, import_id: int, token: str) -> bool:
    """Take a queued import, or a running one whose lease expired; ``False`` if another worker has it.

    The import's row is locked while it is judged, so two workers cannot
    both take it. An import whose workers died :data:`MAX_ATTEMPTS` times
    is failed instead (its committed rows stay).
    """
    now = runtime.clock()
    with runtime.tenant_session(tenant_id) as session:
        imp = session.scalars(select(Import).where(Import.id == import_id).with_for_update()).first()
        if imp is None:
            raise NotFound(f"import {import_id} not found")
        stalled = imp.status == "running" and imp.lease_until is not None and imp.lease_until < now
        if imp.status != "queued" and not stalled:
            session.rollback()
            return False
        if stalled and imp.attempts >= MAX_ATTEMPTS:
            imp.status, imp.finished_at, imp.lease_token = "failed", now, None
            imp.error = (f"its worker stopped {imp.attempts} times (last at row {imp.resume_after_row}); "
                         "the rows before that are imported: upload the file again to finish it")
            session.commit()
            return False
        imp.status, imp.started_at = "running", imp.started_at or now
        imp.lease_until, imp.lease_token, imp.attempts = now + LEASE, token, imp.attempts + 1
        session.commit()
        return True


def _run(
    runtime: Runtime, tenant_id: int, import_id: int, progress: Progress | None, token: str
) -> dict[str, Any]:
    if not _when_free(runtime, "its claim", lambda: _claim(runtime, tenant_id, import_id, token)):
        return _summary(runtime, tenant_id, import_id)
    with runtime.tenant_session(tenant_id) as session:
        imp = session.get(Import, import_id)
        if imp is None:
            raise NotFound(f"import {import_id} not found")
        resume_after, total_known = imp.resume_after_row, imp.total_rows
        done_before, errors_before = imp.processed_rows, session.scalar(
            select(func.count()).select_from(ImportError_).where(ImportError_.import_id == import_id)) or 0
        content, sha, encoding = imp.content, imp.sha256, imp.encoding or "utf-8"
        mapping, options = dict(imp.mapping), dict(imp.options)
        actor = None
        if imp.created_by is not None:
            user = session.get(User, imp.created_by)
            if user is not None:
                actor = Actor(user.id, user.role, user.tenant_id, user.team_id, user.email)
        session.rollback()

    delimiter = options.get("delimiter") or ","
    route = bool(options.get("route", True))
    # A first pass counts the rows (for progress) and finds a broken file
    # before any row of it is imported; the second pass then cannot fail.
    total, row = total_known or 0, 0
    if total_known is None:  # a resumed import counted its rows the first time
        try:
            for row, record in enumerate(_records(content, encoding, delimiter)):
                total += 0 if _blank(record) or row == 0 else 1
        except csv.Error as exc:
            _finish(runtime, tenant_id, import_id, "failed",
                    f"row {row + 1} is not valid CSV ({_csv_problem(exc)}); nothing was imported", token)
            return _summary(runtime, tenant_id, import_id)
        def count() -> None:
            with runtime.tenant_session(tenant_id) as session:
                session.execute(update(Import).where(Import.id == import_id).values(total_rows=total))
                session.commit()

        _when_free(runtime, "its count", count)
    if progress:
        progress(done_before, total)

    reader = _records(content, encoding, delimiter)
    header = [h.strip() for h in next(reader)]
    rows = _Rows(header, mapping, options, sha, import_id)
    state: dict[str, Any] = {"done": done_before, "stored_errors": errors_before, "token": token,
                             "now": runtime.clock}
    batch = _Batch()
    for row, record in enumerate(reader, start=1):
        if _blank(record) or row <= resume_after:
            continue
        if not batch.first_row:
            batch.first_row = row
        batch.last_row = row
        rows.add(batch, row, record)
        if len(batch) >= BATCH:
            _apply(runtime, tenant_id, import_id, actor, batch, state, route)
            batch = _Batch()
            if progress:
                progress(state["done"], total)
    if len(batch):
        _apply(runtime, tenant_id, import_id, actor, batch, state, route)
        if progress:
            progress(state["done"], total)
    _finish(runtime, tenant_id, import_id, "done", None, token)
    return _summary(runtime, tenant_id, import_id)


def _raw_keys(header: list[str]) -> list[str]:
    """Keys of a row's raw record: the headers, made unique (``col``, ``col (2)``) and never empty."""
    seen: dict[str, int] = {}
    out = []
    for i, h in enumerate(header, start=1):
        name = h or f"column {i}"
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out


class _Rows:
    """Turns CSV records into submissions; the column positions are worked out once per file."""

    def __init__(self, header: list[str], mapping: Mapping[str, Any], options: Mapping[str, Any], sha: str,
                 import_id: int) -> None:
        first = {h: i for i, h in reversed(list(enumerate(header)))}  # a repeated header: its first column
        self.keys = _raw_keys(header)
        self.lead = [(name, first.get(mapping.get(name) or "")) for name in LEAD_FIELDS]
        self.touch = [(name, first.get(mapping.get(name) or "")) for name in TOUCH_FIELDS]
        self.attributes = [(attr, first.get(column)) for attr, column in (mapping.get("attributes") or {}).items()]
        self.source = options.get("source")
        self.channel = options.get("channel") or DEFAULT_CHANNEL
        self.prefix = f"import:{sha}:"
        self.import_id = import_id

    def add(self, batch: _Batch, row: int, record: list[str]) -> None:
        if "\x00" in "".join(record):
            batch.refused.append((row, "row", "contains the NUL character"))
            return
        width = len(record)

        def cell(i: int | None) -> str | None:
            return (record[i].strip() or None) if i is not None and i < width else None

        data: dict[str, Any] = {name: cell(i) for name, i in self.lead}
        data["source"] = data["source"] or self.source
        data["attributes"] = {attr: v for attr, i in self.attributes if (v := cell(i)) is not None}
        touch: dict[str, Any] = {name: cell(i) for name, i in self.touch}
        touch["channel"], touch["source"] = self.channel, data["source"]
        values: dict[str, Any] = dict(zip(self.keys, record, strict=False))
        if width > len(self.keys):
            values["_extra"] = record[len(self.keys):]
        raw = {"import_id": self.import_id, "row": row, "values": values}
        batch.subs.append(Submission(data=data, touch=touch, raw=raw, key=f"{self.prefix}{row}", row=row))


def _apply(
    runtime: Runtime, tenant_id: int, import_id: int, actor: Actor | None, batch: _Batch, state: dict[str, int],
    route: bool = True,
) -> None:
    """One batch in one transaction: intake, its row errors, the import's counters.

    A batch that lost a race on an idempotency key (the same file being
    imported twice at once) is retried once: the retry replays those rows.
    """
    def write() -> None:
        with runtime.tenant_context(tenant_id, actor) as ctx:
            outcomes = ingest(
                ctx, batch.subs, routing=route, origin={"import_id": import_id}
            ) if batch.subs else []
            _record(ctx, import_id, batch, outcomes, state)

    for attempt in (1, 2):
        try:
            _when_free(runtime, f"rows {batch.first_row}-{batch.last_row}", write)
            break
        except Conflict:
            if attempt == 2:
                raise Conflict(
                    f"rows {batch.first_row}-{batch.last_row} collided twice with a concurrent import of the "
                    "same file; run it again (rows already imported are replayed)"
                ) from None
    state["done"] += len(batch)


def _record(ctx: HookContext, import_id: int, batch: _Batch, outcomes: list[Outcome],
            state: dict[str, Any]) -> None:
    counts = {"created": 0, "merged": 0, "replayed": 0, "invalid": 0}
    errors: list[tuple[int, str, str]] = list(batch.refused)
    for sub, outcome in zip(batch.subs, outcomes, strict=True):
        counts[outcome.status] += 1
        for name, messages in (outcome.errors or {}).items():
            for message in messages:
                errors.append((sub.row or 0, name, message))
    counts["invalid"] += len({r for r, _, _ in batch.refused})
    room = MAX_STORED_ERRORS - state["stored_errors"]
    if errors and room > 0:
        errors.sort()
        ctx.session.execute(insert(ImportError_), [
            {"tenant_id": ctx.tenant.id, "import_id": import_id, "row": r, "field": f[:100], "message": m[:500]}
            for r, f, m in errors[:room]
        ])
        state["stored_errors"] += min(room, len(errors))
    # Fenced by the lease: a worker whose lease another took writes nothing (its batch rolls back).
    held = ctx.session.execute(  # type: ignore[attr-defined]  # a CursorResult
        update(Import).where(Import.id == import_id, Import.lease_token == state["token"]).values(
            processed_rows=Import.processed_rows + len(batch),
            created_leads=Import.created_leads + counts["created"],
            merged_rows=Import.merged_rows + counts["merged"],
            skipped_rows=Import.skipped_rows + counts["replayed"],
            failed_rows=Import.failed_rows + counts["invalid"],
            resume_after_row=batch.last_row, lease_until=state["now"]() + LEASE,
        )
    ).rowcount
    if not held:
        raise LeaseLost(f"import {import_id}")


def _finish(
    runtime: Runtime, tenant_id: int, import_id: int, status: str, error: str | None, token: str | None = None
) -> None:
    """End the import; with ``token``, only while this worker still holds its lease."""

    def write() -> None:
        with runtime.tenant_session(tenant_id) as session:
            stmt = update(Import).where(Import.id == import_id)
            if token is not None:  # only the worker holding the lease ends a running import
                stmt = stmt.where(Import.lease_token == token, Import.status == "running")
            session.execute(stmt.values(
                status=status, error=error[:1000] if error else None, finished_at=runtime.clock(),
                lease_until=None, lease_token=None,
            ))
            session.commit()

    _when_free(runtime, "its end", write)


def _summary(runtime: Runtime, tenant_id: int, import_id: int) -> dict[str, Any]:
    with runtime.tenant_session(tenant_id) as session:
        imp = session.get(Import, import_id)
        if imp is None:
            return {"id": import_id, "status": "missing"}
        return {name: getattr(imp, name) for name in (
            "id", "status", "total_rows", "processed_rows", "created_leads", "merged_rows", "skipped_rows",
            "failed_rows", "error",
        )}


def first_errors(runtime: Runtime, tenant_id: int, import_id: int, limit: int) -> list[tuple[int, str, str]]:
    """``(row, field, message)`` of the first row errors, for a command's report."""
    with runtime.tenant_session(tenant_id) as session:
        return [(e.row, e.field, e.message) for e in session.scalars(
            select(ImportError_).where(ImportError_.import_id == import_id)
            .order_by(ImportError_.row, ImportError_.id).limit(limit)
        )]
