"""Fixtures come from ``pelago.testing``; this file says which plugins the run is about.

Run alone, the database is migrated with the core, ``conversions`` and this
plugin. (Run with Pelago's own suite, that suite's database is used.)
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest


@pytest.fixture(scope="session")
def pelago_migrated_plugins() -> Sequence[str]:
    return ("conversions", "conversions_adapters")


@pytest.fixture(scope="session")
def pelago_plugins() -> Sequence[str]:
    return ("conversions", "conversions_adapters")
