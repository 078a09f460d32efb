"""Fixtures come from ``pelago.testing``: a throwaway database migrated with every installed plugin, apps, tenants,
a frozen clock. This run deploys sms_nurture and this provider."""

from __future__ import annotations

from collections.abc import Sequence

import pytest


@pytest.fixture(scope="session")
def pelago_plugins() -> Sequence[str]:
    return ("sms_nurture", "sms_aliyun")
