"""The tests of ``conversions`` run on ``pelago.testing`` (docs/testing.md), with the bundled plugins deployed."""

from __future__ import annotations

from collections.abc import Sequence

import pytest


@pytest.fixture(scope="session")
def pelago_plugins() -> Sequence[str]:
    """``make_app()``'s plugins: conversions and the other bundled ones, as a deployment has them."""
    return ("pool", "scheduling", "sms_nurture", "settlement", "conversions")
