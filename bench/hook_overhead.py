"""hook_overhead: the intake import with four no-op plugins switched on versus none.

Both sides run the import of bench/intake_import.py (batches of 1,000,
routing on, one transaction per batch) in one runtime that deploys four
plugins, ``noop_a`` … ``noop_d``. Each implements every decision hook
(``choose_team``, ``exclude_candidates``, ``choose_owner``, ``check_assign``,
``check_stage_change``) returning ``None`` and every event hook as a no-op.
One fresh tenant has the four switched on, the other none; their batches
alternate. On PostgreSQL the tables are analysed (untimed) after the first
round, as in bench/intake_import.py. Events are delivered inline after each
commit (no Redis: the runtime's inline queue runs ``core.events.deliver``),
so with the plugins on every event hook is really called, once per (event,
plugin), and that time is part of the measure. ratio = with plugins / without.

    python -m bench.hook_overhead [--rows 100000] [--db postgresql|sqlite|both]
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from bench.common import (
    Stopwatch,
    arguments,
    bench_database,
    kinds,
    log,
    make_runtime,
    make_tenant,
    peak_rss_mb,
    result,
)
from bench.intake_import import BATCH, analyse, batches, check_pipeline, ingest_batch, run_import, submissions

GOAL = "<=1.05"
PLUGINS = ("noop_a", "noop_b", "noop_c", "noop_d")


def plugins() -> tuple[Any, ...]:
    """Four PluginSpecs, each with its own hooks object (pluggy registers an object once)."""
    from collections import Counter

    from pelago.core import PluginSpec, hookimpl
    from pelago.core.hookspecs import EVENTS

    class NoOpHooks:
        """Every hook of the contract, answering nothing (and counting the calls)."""

        def __init__(self) -> None:
            self.calls: Counter[str] = Counter()

        @hookimpl
        def choose_team(self, ctx: Any, leads: Any) -> None:
            self.calls["choose_team"] += 1

        @hookimpl
        def exclude_candidates(self, ctx: Any, team: Any, candidates: Any, leads: Any) -> None:
            self.calls["exclude_candidates"] += 1

        @hookimpl
        def choose_owner(self, ctx: Any, team: Any, candidates: Any, leads: Any) -> None:
            self.calls["choose_owner"] += 1

        @hookimpl
        def check_assign(self, ctx: Any, assignments: Any) -> None:
            self.calls["check_assign"] += 1

        @hookimpl
        def check_stage_change(self, ctx: Any, lead: Any, old: str, new: str) -> None:
            self.calls["check_stage_change"] += 1

    def event_hook(name: str) -> Any:
        def impl(self: NoOpHooks, ctx: Any, event: Any) -> None:
            self.calls[name] += 1

        impl.__name__ = name
        return hookimpl(impl)

    for name in EVENTS:
        setattr(NoOpHooks, name, event_hook(name))
    return tuple(
        PluginSpec(name=name, title=f"No-op {name[-1].upper()}", hooks=NoOpHooks(),
                   description="Implements every hook and does nothing (bench/hook_overhead.py).")
        for name in PLUGINS
    )


def measure(kind: str, n: int) -> dict[str, Any]:
    from pelago.core.hookspecs import DECISIONS, EVENTS

    specs = plugins()
    with bench_database(kind) as url:
        runtime = make_runtime(url, PLUGINS, extra=specs)
        with_tenant = make_tenant(runtime, reps=10, plugins=PLUGINS)
        without_tenant = make_tenant(runtime, reps=10)
        with_watch, without_watch = Stopwatch(), Stopwatch()
        without_batches = batches(submissions(n))

        def without_batch(k: int) -> None:  # before each batch with the plugins, one without
            if k == 2:  # both sides have written one batch: statistics, as on a live database
                analyse(runtime)
            with without_watch:
                ingest_batch(runtime, without_tenant.id, next(without_batches))

        log(f"{kind}: {n:,} leads, with {len(PLUGINS)} no-op plugins and without, batches alternating")
        run_import(runtime, with_tenant, n, with_watch, between=without_batch)
        for tenant in (with_tenant, without_tenant):
            check_pipeline(runtime, tenant, n)
        deliveries = _deliveries(runtime, with_tenant.id)
        runtime.engine.dispose()
    calls = {name: sum(spec.hooks.calls.get(name, 0) for spec in specs) for name in DECISIONS + EVENTS}
    missing = [name for name in ("choose_team", "exclude_candidates", "choose_owner", "check_assign",
                                 "lead_created", "lead_assigned") if not calls.get(name)]
    if missing:
        raise AssertionError(f"the no-op plugins were never asked {', '.join(missing)}")
    if deliveries.get("pending") or deliveries.get("failed"):
        raise AssertionError(f"undelivered events: {deliveries}")
    ratio = with_watch.seconds / without_watch.seconds
    return result(
        f"hook_overhead_{kind}", ratio,
        rows=n, batch=BATCH, plugins=len(PLUGINS), with_s=round(with_watch.seconds, 2),
        without_s=round(without_watch.seconds, 2), decision_calls=sum(calls[h] for h in DECISIONS),
        event_calls=sum(calls[h] for h in EVENTS), deliveries=deliveries.get("delivered", 0),
        peak_rss_mb=round(peak_rss_mb(), 1), goal=GOAL,
    )


def _deliveries(runtime: Any, tenant_id: int) -> dict[str, int]:
    from sqlalchemy import func, select

    from pelago.core.models import Delivery

    with runtime.tenant_session(tenant_id) as session:
        return {s: c for s, c in session.execute(select(Delivery.state, func.count()).group_by(Delivery.state))}


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__.split("\n", 1)[0], 100_000, db="postgresql").parse_args(argv)
    chosen = kinds(args.db)
    if len(chosen) == 1:
        measure(chosen[0], args.rows)
        return 0
    status = 0
    for kind in chosen:
        status |= subprocess.call([sys.executable, "-m", "bench.hook_overhead", "--db", kind, "--rows", str(args.rows)])
    return status


if __name__ == "__main__":
    sys.exit(main())
