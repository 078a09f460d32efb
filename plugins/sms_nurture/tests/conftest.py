"""``sms_nurture``'s tests run on ``pelago.testing`` (docs/testing.md), with the pool deployed beside it."""

from __future__ import annotations

from collections.abc import Sequence

import pytest


@pytest.fixture(scope="session")
def pelago_plugins() -> Sequence[str]:
    """``make_app()``'s plugins: sms_nurture and the pool (for its release and "about to be recycled" triggers)."""
    return ("pool", "sms_nurture")
