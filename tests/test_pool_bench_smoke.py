"""The pool's benchmarks still run and check their own work, at a tiny size (PostgreSQL only).

No timing is asserted: the figures come from ``make bench`` (docs/benchmarks.md).
Results go to a temporary folder, not bench/results.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def _bench(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pelago_pg_url: str) -> None:
    from bench import common

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(common, "PG_ADMIN_URL", pelago_pg_url)


def test_pool_sweep_runs(tmp_path: Path) -> None:
    from bench import pool_sweep

    record = pool_sweep.measure(3000, batch=100, reps=20)
    figures = record["figures"]
    assert figures["released"] == 300 and figures["batches"] >= 3 and record["ratio"] > 0
    assert (tmp_path / "pool_sweep.json").exists()


def test_pool_claim_runs(tmp_path: Path) -> None:
    from bench import pool_claim

    record = pool_claim.measure(100)
    assert record["figures"]["double_claims"] == 0 and record["figures"]["events"] >= 100
    # both ratios side by side; the goal judges the one against pool_take on a bare connection
    assert record["figures"]["ratio_sql"] > 0 and record["figures"]["goal_sql"] == ">=0.8"
    assert record["met"] is record["met_sql"] is (record["figures"]["ratio_sql"] >= 0.8)
    assert (tmp_path / "pool_claim.json").exists()
