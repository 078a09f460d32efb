"""The benchmarks still run: each at a tiny size, on the database of this pass.

Only that they run and check their own work (every benchmark asserts that the
pipeline stored what it should): no timing is asserted here, ever. The
numbers live in docs/benchmarks.md, from ``make bench``. Results go to a
temporary folder, not bench/results. intake_http is left out: starting two
gunicorn servers takes longer than the rest of this file.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _bench(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pelago_pg_url: str) -> None:
    from bench import common

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(common, "PG_ADMIN_URL", pelago_pg_url)


def test_intake_import_runs(tmp_path: Path, pelago_db: str) -> None:
    from bench import intake_import

    record = intake_import.measure(pelago_db, 300)
    assert record["figures"]["rows"] == 300 and record["ratio"] > 0
    assert (tmp_path / f"intake_import_{pelago_db}.json").exists()


def test_hook_overhead_runs(pelago_db: str) -> None:
    from bench import hook_overhead

    record = hook_overhead.measure(pelago_db, 200)
    assert record["figures"]["event_calls"] > 0 and record["figures"]["decision_calls"] > 0


def test_load_runs_in_the_embedded_mode(tmp_path: Path, pelago_db: str, db_url: str, engine: object) -> None:
    """bench/load.py for 2 s with 8 clients against ``pelago serve``: it runs and checks its leads.

    The embedded mode is SQLite: this runs in the SQLite pass, on the run's
    migrated database (a fresh one would spend most of the time migrating).
    """
    if pelago_db != "sqlite":
        pytest.skip("the embedded mode runs on SQLite: the SQLite pass runs this")
    from bench import load

    record = load.measure("embedded", clients=8, seconds=2, max_requests=10**6, url=db_url)
    f = record["figures"]
    assert f["requests"] > 0 and f["create_n"] > 0
    assert (f["http_5xx"], f["lost"], f["duplicated"], f["unexplained"]) == (0, 0, 0, 0)
    assert f["acked_phones"] == f["leads"]
    assert (tmp_path / "load_embedded.json").exists()
