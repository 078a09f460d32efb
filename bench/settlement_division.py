"""settlement_division: the intake import with settlement dividing leads 60/40 between two branches, versus off.

One runtime deploys the settlement plugin; two fresh tenants in the same
database. Each has a default intake team of 10 reps and routing on. The
first has settlement on with two branches (Shanghai 60, Wuhan 40), each with
its own intake team of 10 reps, and one default distribution policy: every
batch of 1,000 leads asks the plugin's ``choose_team`` once, which locks the
policy's state row, takes 1,000 smooth weighted round robin steps, writes the
state and 1,000 allocation rows; the core then picks a rep in each branch's
team. After each commit the ``lead_created`` event is delivered inline, and
the plugin links the batch's allocations to their leads (one ``UPDATE``).
The second tenant has settlement off: the same import routes to its default
team. Batches alternate between the two, so both see the same table sizes
and the same machine; only the ``ingest`` calls (with their inline event
delivery) are timed. After each side's first batch (untimed) PostgreSQL
gets statistics, as ``intake_import`` does: before any, every index of a
table ties for the foreign-key checks and a connection keeps the plan it
chose until the next ``ANALYZE`` (autovacuum's, at a moment of its own).

Checked: every lead created on both sides; on the first exactly 60/40 of the
allocations per branch, every one linked to its lead, and the leads' teams
the branches' intake teams in the same proportion.

    python -m bench.settlement_division [--rows 100000] [--db postgresql|sqlite]
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from bench.common import (
    BenchTenant,
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

GOAL = "<=1.15"
WEIGHTS = {"Shanghai": 60, "Wuhan": 40}


def divide_between_branches(runtime: Any, tenant: BenchTenant) -> dict[str, int]:
    """Two branches with an intake team each (the tenant's team is Shanghai's) and a 60/40 policy."""
    from pelago.core.models import Team
    from pelago.core.services import admin
    from pelago.plugins.settlement.models import Branch, BranchTeam, DivisionState, Policy, PolicyEntry

    now = runtime.clock()
    teams: dict[str, int] = {}
    with runtime.tenant_context(tenant.id) as ctx:
        s = ctx.session
        wuhan_team = Team(tenant_id=tenant.id, name="Wuhan intake", description="", active=True,
                          strategy="round_robin", created_at=now)
        s.add(wuhan_team)
        s.flush()
        for k in range(10):
            admin.create_user(s, tenant_id=tenant.id, email=f"wh{k}@{tenant.slug}.test", role="rep",
                              name=f"Wuhan rep {k}", team_id=wuhan_team.id, now=now)
        teams = {"Shanghai": tenant.team_id, "Wuhan": wuhan_team.id}
        policy = Policy(tenant_id=tenant.id, source="", version=1, effective_from=now, effective_to=None, note="",
                        created_by=None, created_at=now)
        s.add(policy)
        s.flush()
        for name, team_id in teams.items():
            branch = Branch(tenant_id=tenant.id, name=name, timezone="Asia/Shanghai", currency="CNY", active=True,
                            created_at=now, updated_at=now)
            s.add(branch)
            s.flush()
            s.add(BranchTeam(tenant_id=tenant.id, team_id=team_id, branch_id=branch.id, created_at=now))
            s.add(PolicyEntry(tenant_id=tenant.id, policy_id=policy.id, branch_id=branch.id, team_id=team_id,
                              weight=WEIGHTS[name], daily_cap=None))
        s.add(DivisionState(tenant_id=tenant.id, policy_id=policy.id, current={}, seq=0, updated_at=now))
    return teams


def check_division(runtime: Any, tenant: BenchTenant, teams: dict[str, int], n: int) -> dict[str, int]:
    from sqlalchemy import func, select

    from pelago.core.models import Lead
    from pelago.plugins.settlement.models import Allocation, Branch

    with runtime.tenant_session(tenant.id) as session:
        leads = session.scalar(select(func.count()).select_from(Lead))
        by_branch = dict(session.execute(
            select(Branch.name, func.count()).join(Allocation, Allocation.branch_id == Branch.id).group_by(Branch.name)
        ).all())
        unlinked = session.scalar(select(func.count()).select_from(Allocation).where(Allocation.lead_id.is_(None)))
        by_team = dict(session.execute(select(Lead.team_id, func.count()).group_by(Lead.team_id)).all())
    expected = {name: n * w // sum(WEIGHTS.values()) for name, w in WEIGHTS.items()}
    if leads != n or by_branch != expected or unlinked:
        raise AssertionError(f"division is off: leads={leads} by_branch={by_branch} unlinked={unlinked}")
    if {name: by_team.get(team_id) for name, team_id in teams.items()} != expected:
        raise AssertionError(f"the leads' teams do not follow the division: {by_team}")
    return by_branch


def analyse_division(runtime: Any) -> None:
    """PostgreSQL: :func:`~bench.intake_import.analyse`'s tables, and the ones settlement writes."""
    analyse(runtime)
    if runtime.engine.dialect.name != "postgresql":
        return
    from sqlalchemy import text

    with runtime.engine.begin() as conn:
        conn.execute(text("ANALYZE settlement_allocation, settlement_division_state, settlement_branch_day"))


def measure(kind: str, n: int) -> dict[str, Any]:
    with bench_database(kind) as url:
        runtime = make_runtime(url, ("settlement",))
        on_tenant = make_tenant(runtime, reps=10, plugins=("settlement",))
        off_tenant = make_tenant(runtime, reps=10)
        teams = divide_between_branches(runtime, on_tenant)
        on_watch, off_watch = Stopwatch(), Stopwatch()
        off_batches = batches(submissions(n))

        def off_batch(k: int) -> None:  # before each batch with settlement on, one with it off
            if k == 2:  # both sides have written one batch: statistics, as on a live database
                analyse_division(runtime)
            with off_watch:
                ingest_batch(runtime, off_tenant.id, next(off_batches))

        log(f"{kind}: {n:,} leads, settlement dividing 60/40 and off, batches alternating")
        run_import(runtime, on_tenant, n, on_watch, between=off_batch)
        check_pipeline(runtime, off_tenant, n)
        by_branch = check_division(runtime, on_tenant, teams, n)
        runtime.engine.dispose()
    ratio = on_watch.seconds / off_watch.seconds
    return result(
        f"settlement_division_{kind}", ratio,
        rows=n, batch=BATCH, on_s=round(on_watch.seconds, 2), off_s=round(off_watch.seconds, 2),
        shanghai=by_branch["Shanghai"], wuhan=by_branch["Wuhan"], peak_rss_mb=round(peak_rss_mb(), 1), goal=GOAL,
    )


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__.split("\n", 1)[0], 100_000, db="postgresql").parse_args(argv)
    chosen = kinds(args.db)
    if len(chosen) == 1:
        measure(chosen[0], args.rows)
        return 0
    status = 0
    for kind in chosen:
        status |= subprocess.call(
            [sys.executable, "-m", "bench.settlement_division", "--db", kind, "--rows", str(args.rows)])
    return status


if __name__ == "__main__":
    sys.exit(main())
