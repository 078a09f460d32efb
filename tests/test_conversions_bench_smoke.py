"""The conversions funnel benchmark still runs and checks its own work, at a tiny size (PostgreSQL only).

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


def test_conversions_funnel_runs(tmp_path: Path) -> None:
    from bench import conversions_funnel

    record = conversions_funnel.measure(2000)  # raises if the report disagrees with the baseline
    assert record["figures"]["leads"] == 2000 and record["figures"]["groups"] == 5 and record["ratio"] > 0
    assert (tmp_path / "conversions_funnel.json").exists()
