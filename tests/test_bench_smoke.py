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
