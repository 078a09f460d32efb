"""What every benchmark shares: throwaway databases, the RESULT line, memory, setup.

A benchmark is a module ``bench/<name>.py`` run as ``python -m bench.<name>``
(``bench/run`` does that). It measures the code under test against a baseline
doing the same work the simplest way, in the same run, and ends with
:func:`result`, which prints ``RESULT <name> ratio=<x> k=v ...`` and writes
``bench/results/<name>.json`` for the table in docs/benchmarks.md.

Environment: ``PELAGO_BENCH_PG`` is the PostgreSQL server to create throwaway
databases on (default ``postgresql://postgres@127.0.0.1:5432/postgres``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
PG_ADMIN_URL = os.environ.get("PELAGO_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
KINDS = ("postgresql", "sqlite")

# The database of the last bench_database() of this process, for result().
_database: dict[str, str] = {}


# --- databases ---------------------------------------------------------------------------


def _psycopg_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1) if url.startswith("postgresql://") else url


@contextmanager
def bench_database(kind: str = "postgresql") -> Iterator[str]:
    """The URL of a fresh database with every migration applied, dropped afterwards.

    PostgreSQL: a database ``pelago_bench_<random>`` on ``PELAGO_BENCH_PG``.
    SQLite: a file in a temporary folder. The schema comes from the Alembic
    migrations of the core and of every installed plugin, as in production.
    """
    from sqlalchemy import create_engine, text

    if kind not in KINDS:
        raise ValueError(f"database kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="pelago_bench_") as folder:
            url = f"sqlite:///{folder}/bench.db"
            migrate_in_subprocess(url)
            import sqlite3

            _database.update(version=f"SQLite {sqlite3.sqlite_version}")
            yield url
        return
    name = f"pelago_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(_psycopg_url(PG_ADMIN_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
        version = conn.execute(text("SHOW server_version")).scalar()
    url = f"{_psycopg_url(PG_ADMIN_URL).rsplit('/', 1)[0]}/{name}"
    try:
        migrate_in_subprocess(url)
        _database.update(version=f"PostgreSQL {version}")
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = :n AND pid <> pg_backend_pid()"),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def migrate_in_subprocess(url: str) -> None:
    """Apply every migration (core and installed plugins) to ``url``, in a process of its own.

    As in production (``pelago db upgrade`` is its own command): Alembic and
    the migration scripts then stay out of the benchmark's process, whose
    heap (and so the cost of each garbage collection) is a server's or a
    worker's, not a server's plus Alembic's.
    """
    code = (
        "import sys\n"
        "from pelago.core import migrate\n"
        "from pelago.core.db import make_engine\n"
        "from pelago.core.host import PluginHost\n"
        "engine = make_engine(sys.argv[1])\n"
        "migrate.upgrade(engine, PluginHost(None))\n"
        "engine.dispose()\n"
    )
    subprocess.run([sys.executable, "-c", code, url], check=True, cwd=ROOT)


# --- results -----------------------------------------------------------------------------


def _ram_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _postgresql_version() -> str | None:
    try:
        from sqlalchemy import create_engine, text

        engine = create_engine(_psycopg_url(PG_ADMIN_URL), connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as conn:
                return str(conn.execute(text("SHOW server_version")).scalar())
        finally:
            engine.dispose()
    except Exception:  # noqa: BLE001 - no server: the machine has none to report
        return None


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import sqlite3

    return {
        "cores": os.cpu_count(),
        "ram_gb": _ram_gb(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "postgresql": _postgresql_version(),
        "sqlite": sqlite3.sqlite_version,
        "os": f"{platform.system()} {platform.release()}",
    }


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value).replace(" ", "_")


def result(name: str, ratio: float, **figures: Any) -> dict[str, Any]:
    """Print ``RESULT <name> ratio=<x> k=v ...`` and write ``bench/results/<name>.json``.

    ``figures`` are the benchmark's own numbers (times, rates, memory, sizes);
    a ``goal`` figure (``"<=2"``, ``">=0.5"``) is what the ratio must meet,
    and ``met`` is added from it; a ``goal_sql`` figure is what ``ratio_sql``
    (against the minimal hand-written SQL making the same writes) must meet,
    giving ``met_sql`` (and ``met``, when there is no ``goal``). ``database`` defaults to the one of the last
    :func:`bench_database` of this process.
    """
    database = figures.pop("database", None) or _database.get("version")
    record: dict[str, Any] = {
        "name": name,
        "ratio": round(float(ratio), 4),
        "figures": figures,
        "machine": machine(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "database": database,
    }
    goal = figures.get("goal")
    if goal:
        record["met"] = goal_met(float(ratio), str(goal))
    goal_sql = figures.get("goal_sql")
    if goal_sql and figures.get("ratio_sql") is not None:
        record["met_sql"] = goal_met(float(figures["ratio_sql"]), str(goal_sql))
        record.setdefault("met", record["met_sql"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    parts = [f"RESULT {name} ratio={ratio:.3f}"] + [f"{k}={_format(v)}" for k, v in figures.items()]
    if goal or "met_sql" in record:
        parts.append(f"met={'yes' if record['met'] else 'NO'}")
    print(" ".join(parts), flush=True)
    return record


def goal_met(ratio: float, goal: str) -> bool:
    """Does ``ratio`` meet ``goal`` (``"<=2"``, ``">=0.5"``, ``"<1.1"`` …)?"""
    for op in ("<=", ">=", "<", ">"):
        if goal.startswith(op):
            bound = float(goal[len(op):])
            return {"<=": ratio <= bound, ">=": ratio >= bound, "<": ratio < bound, ">": ratio > bound}[op]
    raise ValueError(f"goal must start with <=, >=, < or >: {goal!r}")


# --- time and memory --------------------------------------------------------------------


def peak_rss_mb() -> float:
    """The highest resident set size of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def rss_mb() -> float:
    """The resident set size of this process now, in MiB (Linux; else the peak)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except (OSError, ValueError):
        return peak_rss_mb()


class Stopwatch:
    """Adds up the time spent inside ``with watch:`` blocks."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds += time.perf_counter() - self._start


def log(message: str) -> None:
    """Progress for the reader, on stderr (stdout carries the RESULT lines)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def arguments(description: str, rows: int, *, db: str = "postgresql") -> argparse.ArgumentParser:
    """A parser with the options every benchmark takes: ``--rows N`` and ``--db``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rows", type=int, default=rows, help=f"size of the run (default {rows:,})")
    parser.add_argument(
        "--db", choices=(*KINDS, "both"), default=db,
        help=f"database(s) to run on (default {db})",
    )
    return parser


def kinds(choice: str) -> tuple[str, ...]:
    return KINDS if choice == "both" else (choice,)


# --- data ---------------------------------------------------------------------------------

# Prefixes whose every 8-digit continuation is a valid CN mobile number.
CN_PREFIXES = ("138", "139", "150", "151", "158", "186", "187", "135", "136", "188")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"
SOURCES = ("douyin", "baidu", "wechat", "xiaohongshu", "website", "referral", "kuaishou")
CAMPAIGNS = ("spring", "summer_sale", "trial_class", "open_day", "brand")


def cn_mobile(i: int) -> str:
    """The ``i``-th of 10⁹ distinct valid CN mobile numbers, as 11 national digits."""
    rest = (i // 10 * 7919 + 1234567) % 10**8  # 7919 is prime to 10⁸: a permutation
    return CN_PREFIXES[i % 10] + f"{rest:08d}"


def cn_e164(i: int) -> str:
    return "+86" + cn_mobile(i)


def written(national: str, style: int) -> str:
    """``national`` as people type it: bare, spaced, dashed, with +86 or 0086."""
    a, b, c = national[:3], national[3:7], national[7:]
    return (
        national,
        f"{a} {b} {c}",
        f"{a}-{b}-{c}",
        f"+86 {a} {b} {c}",
        f"+86{national}",
        f"(+86) {a}-{b}-{c}",
        f"0086 {national}",
        f"86{national}",
    )[style % 8]


def lead_name(i: int) -> str:
    return SURNAMES[i % len(SURNAMES)] + GIVEN[(i // 7) % len(GIVEN)] + GIVEN[(i // 31) % len(GIVEN)]


def raw_lead(i: int) -> dict[str, Any]:
    """Lead ``i`` as an ad platform or a spreadsheet gives it: phone in mixed formats, some UTM."""
    row: dict[str, Any] = {
        "name": lead_name(i),
        "phone": written(cn_mobile(i), (i * 3) // 10),
        "source": SOURCES[i % len(SOURCES)],
    }
    if i % 10 == 3:
        row["email"] = f"lead{i}@example.com"
    if i % 3 == 0:
        row["utm_source"] = row["source"]
        row["utm_medium"] = "cpc"
        row["utm_campaign"] = CAMPAIGNS[i % len(CAMPAIGNS)]
    return row


def raw_leads(n: int) -> Iterator[dict[str, Any]]:
    """A stream of ``n`` distinct leads (nothing held in memory)."""
    for i in range(n):
        yield raw_lead(i)


# --- tenants --------------------------------------------------------------------------------


@dataclass
class BenchTenant:
    id: int
    slug: str
    team_id: int
    rep_ids: list[int] = field(default_factory=list)


class RecordingQueue:
    """Stands in for rq on a runtime (``runtime.queue = RecordingQueue()``): records what would go to the workers.

    For benchmarks whose event delivery happens in workers and is not what they time.
    """

    def __init__(self) -> None:
        self.jobs: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def enqueue(self, name: str, **kwargs: Any) -> None:
        with self._lock:
            self.jobs.append((name, kwargs))

    def events(self) -> int:
        """How many events were handed on for delivery."""
        return sum(len(kw["event_ids"]) for name, kw in self.jobs if name == "deliver")


def make_runtime(url: str, plugins: tuple[str, ...] = (), extra: tuple[Any, ...] = ()) -> Any:
    """A runtime on ``url`` with exactly ``plugins`` deployed (``extra`` PluginSpecs allowed).

    No Redis: jobs (event delivery) run inline right after each commit.
    """
    from pelago.core.db import make_engine
    from pelago.core.host import PluginHost
    from pelago.core.runtime import Runtime

    host = PluginHost(list(plugins), strict=True, extra=extra)
    return Runtime(host, make_engine(url))


def make_tenant(
    runtime: Any, *, reps: int = 10, auto_routing: bool = True,
    plugins: tuple[str, ...] = (),
) -> BenchTenant:
    """A fresh tenant with one team of ``reps`` reps, the tenant's default intake team.

    ``auto_routing`` turns routing on intake on; ``plugins`` are switched on
    for the tenant (they must be deployed in ``runtime``).
    """
    from pelago.core.models import RoutingSettings, Team
    from pelago.core.services import admin
    from pelago.core.services.plugins import configure

    slug = f"bench-{uuid.uuid4().hex[:10]}"
    now = runtime.clock()
    with runtime.sessions() as session:
        tenant = admin.create_tenant(session, slug=slug, name=slug, now=now)
        team = Team(tenant_id=tenant.id, name="Intake", description="", active=True, strategy="round_robin",
                    created_at=now)
        session.add(team)
        session.flush()
        handle = BenchTenant(tenant.id, slug, team.id)
        for k in range(reps):
            user = admin.create_user(session, tenant_id=tenant.id, email=f"rep{k}@{slug}.test", role="rep",
                                     name=f"Rep {k}", team_id=team.id, now=now)
            handle.rep_ids.append(user.id)
        session.add(RoutingSettings(tenant_id=tenant.id, auto_routing=auto_routing, default_team_id=team.id,
                                    updated_at=now))
        session.commit()
    for name in plugins:
        with runtime.tenant_context(handle.id) as ctx:
            configure(ctx, name, enabled=True)
    return handle
