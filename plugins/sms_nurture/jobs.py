"""``sms_nurture``'s jobs: the dispatch and the trigger scan, periodic for each tenant with the plugin on.

Both are idempotent: the dispatch only ever takes what is due and holds no
lease past its own run; the scan's inserts ignore enrolments that exist.
``sms_nurture.dispatch`` is also a named job, to enqueue a run now.
"""

from __future__ import annotations

from typing import Any

from pelago.plugin import JobContext

from . import dispatch as dispatching
from . import enrolling


def dispatch(ctx: JobContext, **_: Any) -> dict[str, int]:
    """Plan, reconcile, claim and send everything due (see :mod:`.dispatch`)."""
    return dispatching.run(ctx).as_dict()


def scan(ctx: JobContext) -> dict[str, int]:
    """Enrol the leads no rep contacted within their sequences' hours."""
    return {"enrolled": enrolling.scan_not_contacted(ctx)}
