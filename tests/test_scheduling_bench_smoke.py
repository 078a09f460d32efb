"""The scheduling benchmarks still run and check their own work, at a tiny size (PostgreSQL only).

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


def test_scheduling_generate_runs(tmp_path: Path) -> None:
    from bench import scheduling_generate

    record = scheduling_generate.measure("postgresql", 400, students=2)  # 20 classes, their students checked too
    figures = record["figures"]
    assert figures["classes"] == 20 and figures["lessons"] == 20 * (20 - figures["skipped_per_class"])
    assert figures["busy_rows"] == 2 * figures["lessons"] and record["ratio"] > 0
    assert (tmp_path / "scheduling_generate.json").exists()


def test_scheduling_rollcall_runs(tmp_path: Path) -> None:
    from bench import scheduling_rollcall

    record = scheduling_rollcall.measure("postgresql", 400, per_txn=5)
    figures = record["figures"]  # the by-hand side's ledger equal to the roll-call's, or measure() raised
    assert figures["ledger_lines"] == 400 and record["ratio"] > 0 and figures["ratio_sql"] > 0
    assert (tmp_path / "scheduling_rollcall.json").exists()
