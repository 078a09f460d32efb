"""Spend per day, channel and campaign, uploaded as CSV: checked whole, then written in one statement.

The file (UTF-8 with or without a BOM, or GB18030) has a header line with
``day``, ``channel``, ``amount`` and optionally ``campaign``: ``day`` an ISO
date (``2026-03-02``), ``amount`` a decimal (``1234.50``, never negative).
Every row is checked before anything is written, so one bad row refuses the
file with each bad row's errors and nothing changes. A row for a (day,
channel, campaign) that is already stored replaces its amount: uploading a
corrected export is how spend is fixed.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal
from typing import Any

from pelago.plugin import HookContext, InvalidInput, to_money, upsert

from .models import Spend

MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 100_000
REQUIRED = ("day", "channel", "amount")
MAX_ERRORS = 50


def _decode(content: bytes) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return content.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise InvalidInput("the file is neither UTF-8 nor GB18030", {"file": ["cannot be decoded"]})


def parse(content: bytes) -> list[dict[str, Any]]:
    """The rows of a spend CSV, or :class:`InvalidInput` with ``{"rows": {line: {field: [error]}}}``."""
    if len(content) > MAX_BYTES:
        raise InvalidInput("the file is too large", {"file": [f"at most {MAX_BYTES} bytes"]})
    reader = csv.reader(io.StringIO(_decode(content), newline=""), strict=True)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise InvalidInput("the file is empty", {"file": ["needs a header line: day,channel,campaign,amount"]}) \
            from None
    except csv.Error as exc:
        raise InvalidInput("not a CSV file", {"file": [str(exc)]}) from None
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise InvalidInput("columns missing", {"file": [f"the header has no {', '.join(missing)}"]})
    col = {name: header.index(name) for name in (*REQUIRED, "campaign") if name in header}
    rows: list[dict[str, Any]] = []
    errors: dict[str, dict[str, list[str]]] = {}
    seen: dict[tuple[date, str, str], int] = {}
    try:
        for line, cells in enumerate(reader, start=2):
            if not any(c.strip() for c in cells):
                continue
            if len(rows) >= MAX_ROWS:
                raise InvalidInput("too many rows", {"file": [f"at most {MAX_ROWS} rows"]})
            bad: dict[str, list[str]] = {}

            def cell(name: str, cells: list[str] = cells) -> str:
                i = col.get(name)
                return cells[i].strip() if i is not None and i < len(cells) else ""

            day: date | None = None
            try:
                day = date.fromisoformat(cell("day"))
            except ValueError:
                bad["day"] = ["not a date like 2026-03-02"]
            channel, campaign = cell("channel"), cell("campaign")
            if not channel or len(channel) > 100:
                bad["channel"] = ["required, at most 100 characters"]
            if len(campaign) > 200:
                bad["campaign"] = ["at most 200 characters"]
            amount: Decimal | None = None
            try:
                amount = to_money(cell("amount").replace(",", ""))
                if amount < 0:
                    bad["amount"] = ["must not be negative"]
            except ValueError:
                bad["amount"] = ["not an amount like 1234.50"]
            if not bad and day is not None:
                key = (day, channel, campaign)
                if key in seen:
                    bad["day"] = [f"line {seen[key]} has the same day, channel and campaign"]
                seen.setdefault(key, line)
            if bad:
                errors[str(line)] = bad
                if len(errors) >= MAX_ERRORS:
                    break
            else:
                rows.append({"day": day, "channel": channel, "campaign": campaign, "amount": amount})
    except csv.Error as exc:
        errors[str(reader.line_num)] = {"file": [str(exc)]}
    if errors:
        raise InvalidInput(f"{len(errors)} bad rows; nothing was stored", {"rows": errors})
    if not rows:
        raise InvalidInput("no rows", {"file": ["the file has a header and no rows"]})
    return rows


def store(ctx: HookContext, rows: list[dict[str, Any]]) -> int:
    """Upsert the rows (a stored day, channel and campaign takes the new amount); the number written."""
    now = ctx.now()
    written = 0
    for i in range(0, len(rows), 1000):
        written += upsert(ctx.session, Spend, [{**r, "uploaded_at": now} for r in rows[i:i + 1000]],
                          key=["tenant_id", "day", "channel", "campaign"], update=["amount", "uploaded_at"])
    return written
