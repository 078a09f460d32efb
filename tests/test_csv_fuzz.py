"""A fuzz of the CSV import (core/services/imports.py) with Hypothesis (issue 14, "Bad input").

Two generators:

* **tables**: a header and rows of hostile cells (quotes, every delimiter,
  line breaks, NUL, formulas, CJK, emoji, phones in many forms), written by
  ``csv.writer`` with a random delimiter, quoting and line ending, encoded as
  UTF-8, UTF-8 with a BOM or GB18030. The number of data rows is known.
* **bytes**: arbitrary bytes after a plausible header, and arbitrary text.

Whatever the input: no exception escapes ``create_import`` but
``InvalidInput`` (the file refused as a whole, with the reason), none escapes
``run_import`` (it ends ``done`` or ``failed``), and no row is lost silently:
a ``done`` import accounts for every data row of the file as created,
merged, replayed or failed (with its row number among the errors), and a
``failed`` one names the row and imported nothing.

Bounded: ``PELAGO_FUZZ_EXAMPLES`` (default 30) examples per generator,
derandomized (``PELAGO_CONTRACT_RANDOM=1`` explores new input), a few seconds.
"""

from __future__ import annotations

import csv
import io
import os
import re
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from pelago.core.errors import InvalidInput
from pelago.core.models import Import, ImportError_
from pelago.core.services import imports as svc

SETTINGS = settings(
    max_examples=int(os.environ.get("PELAGO_FUZZ_EXAMPLES", "30")),
    derandomize=os.environ.get("PELAGO_CONTRACT_RANDOM") != "1",
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)

SPECIAL = ['"', '""', ",", ";", "|", "\t", "\n", "\r\n", "\r", " ", "", "\x00", '="1+1"', "+SUM(A1)", "-", "@x",
           "13800138000", "+86 138 0013 8001", "0086-138-0013-8002", "8613800138003", "138 0013 8004",
           "not a phone", "a@example.com", "张三", "王\n五", '李"四"', "😀", "\ufeff", "\u2028", "a,b;c|d\te"]
CELL = st.one_of(
    st.sampled_from(SPECIAL),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=6),
    st.lists(st.sampled_from(SPECIAL), min_size=1, max_size=3).map("".join),
    st.integers(13_800_000_000, 13_800_009_999).map(str),
)
COLUMNS = ["phone", "手机", "手机号", "name", "姓名", "email", "source", "utm_source", "备注", "x", "", ' "q" ',
           "a,b", "c;d", "e|f", "g\th", "phone\nline"]


@st.composite
def tables(draw: Any) -> tuple[bytes, int, str]:
    header = draw(st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=6))
    if draw(st.booleans()):
        header.insert(draw(st.integers(0, len(header))), "phone")
    width = len(header)
    rows = draw(st.lists(st.lists(CELL, min_size=0, max_size=width + 2), max_size=8))
    delimiter = draw(st.sampled_from(svc.DELIMITERS))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]))
    ending = draw(st.sampled_from(["\r\n", "\n"]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "gb18030"]))
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, quoting=quoting, lineterminator=ending)
    writer.writerow(header)
    writer.writerows(rows)
    data_rows = sum(1 for r in rows if any(v.strip() for v in r))
    return out.getvalue().encode(encoding), data_rows, delimiter


def attempt(tenant: Any, content: bytes, delimiter: str | None = None) -> tuple[str, dict[str, Any] | None]:
    """Upload and run ``content``: ``("refused", None)`` or ``(status, the import's counts and errors)``."""
    runtime = tenant.runtime
    options = {"delimiter": delimiter} if delimiter else None
    try:
        with runtime.tenant_context(tenant.id) as ctx:
            import_id = svc.create_import(ctx, filename="fuzz.csv", content=content, options=options).id
    except InvalidInput as exc:
        assert exc.message and exc.errors, "a refusal says why"
        event(f"refused: {exc.message}")
        return "refused", None
    summary = svc.run_import(runtime, tenant.id, import_id)  # never raises: a failure is recorded
    with runtime.tenant_session(tenant.id) as s:
        imp = s.get(Import, import_id)
        error_rows = set(s.scalars(select(ImportError_.row).where(ImportError_.import_id == import_id)))
        stored = s.scalar(select(func.count()).select_from(ImportError_).where(ImportError_.import_id == import_id))
    summary.update(error_rows=error_rows, stored_errors=stored, status=imp.status, error=imp.error)
    event(f"{imp.status}" + (f", {summary['total_rows']} rows" if imp.status == "done" else ""))
    return imp.status, summary


def accounted(summary: dict[str, Any], expected_rows: int | None) -> None:
    """Every data row is created, merged, replayed or failed; or the whole file failed at a row, writing nothing."""
    if summary["status"] == "failed":
        assert re.search(r"\brow \d+\b", summary["error"] or ""), summary
        assert summary["created_leads"] == 0 and summary["processed_rows"] == 0, summary
        return
    assert summary["status"] == "done", summary
    total = summary["total_rows"]
    if expected_rows is not None:
        assert total == expected_rows, summary
    counted = summary["created_leads"] + summary["merged_rows"] + summary["skipped_rows"] + summary["failed_rows"]
    assert summary["processed_rows"] == total == counted, summary
    assert len(summary["error_rows"]) == summary["failed_rows"], summary  # each failed row is reported ...
    assert all(1 <= r <= total + 10_000 for r in summary["error_rows"]), summary  # ... with its row number


@given(table=tables(), name_the_delimiter=st.booleans())
@SETTINGS
def test_generated_tables_lose_no_row(tenant, table: tuple[bytes, int, str], name_the_delimiter: bool) -> None:
    content, data_rows, delimiter = table
    status, summary = attempt(tenant, content, delimiter if name_the_delimiter else None)
    if status == "refused":
        return
    assert summary is not None
    if name_the_delimiter or summary["status"] == "failed":
        accounted(summary, data_rows)
    else:
        # The delimiter was guessed from the header line: a guess other than the writer's
        # reads another table, but still accounts for every record it reads.
        accounted(summary, data_rows if _guess(content) == delimiter else None)


def _guess(content: bytes) -> str:
    encoding = svc.detect_encoding(content)
    return svc.detect_delimiter(svc._first_line(content, encoding))


@given(body=st.binary(max_size=300), header=st.sampled_from([b"phone\n", b"name,phone\r\n", b"\xe6\x89\x8b\xe6\x9c\xba;x\n",
                                                             b"phone|email\n", b""]))
@SETTINGS
def test_arbitrary_bytes_are_refused_or_accounted_for(tenant, body: bytes, header: bytes) -> None:
    status, summary = attempt(tenant, header + body)
    if status != "refused":
        assert summary is not None
        accounted(summary, None)


@given(text=st.text(st.characters(exclude_categories=("Cs",)), max_size=200),
       encoding=st.sampled_from(["utf-8", "gb18030", "utf-8-sig"]))
@SETTINGS
def test_arbitrary_text_is_refused_or_accounted_for(tenant, text: str, encoding: str) -> None:
    status, summary = attempt(tenant, ("phone,name\n" + text).encode(encoding))
    if status != "refused":
        assert summary is not None
        accounted(summary, None)
