"""The cyclic garbage collector paused around one unit of batch work (an import batch, a delivery job).

A batch makes thousands of short-lived containers (rows, dicts, an event's
items) that all die by reference counting when it ends. With the collector
on, they outlive the young generations and are traversed again and again,
and their number sets off full collections of the whole heap: measured,
about a quarter of an import batch's Python time (bench/intake_import.py),
and four fifths of the time to parse an import batch's events for delivery
(bench/hook_overhead.py). Nothing of such a batch is cyclic garbage for
long, and the collector runs as usual once it is back on.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused() -> Iterator[None]:
    """The collector off while the block runs, back on (if it was) afterwards.

    Threads: only the block that found it on turns it back on (overlapping
    blocks may then see it on again before they end), and a process that
    turned it off for good keeps it off.
    """
    was_on = gc.isenabled()
    if was_on:
        gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()
