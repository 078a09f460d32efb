"""bench/settlement_close still runs and checks its own work, at a tiny size (PostgreSQL only).

No timing is asserted: the figures come from ``python -m bench.settlement_close`` (docs/benchmarks.md).
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


def test_settlement_close_runs(tmp_path: Path) -> None:
    from bench import settlement_close

    record = settlement_close.measure(4400)  # 1,000 deals, one in ten refunded by a quarter
    assert record["figures"]["entries"] == 4400 and record["figures"]["deals"] == 1000 and record["ratio"] > 0
    assert (tmp_path / "settlement_close.json").exists()
