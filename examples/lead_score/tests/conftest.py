"""Fixtures come from ``pelago.testing`` (loaded by pytest automatically): a
throwaway database per run, migrated once (``--pelago-db=sqlite`` by default,
``--pelago-db=postgresql`` for PostgreSQL), apps, tenants with a client per
role and a frozen clock (docs/testing.md).

This file only says which plugins the run is about: run alone, the database
is migrated with the core and lead_score. (Run with Pelago's own suite, the
database that suite migrated, which includes lead_score, is used.)
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest


@pytest.fixture(scope="session")
def pelago_migrated_plugins() -> Sequence[str]:
    return ("lead_score",)
