"""The pool's periodic job: the sweep, once per period for each tenant that has the pool on."""

from __future__ import annotations

from typing import Any

from pelago.plugin import JobContext

from . import sweep as sweeping


def sweep(ctx: JobContext) -> dict[str, Any]:
    """``pool.sweep``: recycle what the rules say, send due reminders (see :mod:`.sweep`)."""
    report = sweeping.run(ctx, trigger="periodic")
    return {"released": report.released, "reminded": report.reminded, "vetoed": report.vetoed,
            "batches": report.batches}
