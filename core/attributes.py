"""Limits on a lead's free-form ``attributes``: how many keys, how long a key, how big a value.

Every way attributes reach a lead (``POST`` and ``PATCH /api/v1/leads``,
channel webhooks, CSV imports, a merge into a known lead) is checked
against the same limits, so one lead row cannot grow without bound.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

#: keys a lead's attributes may have
MAX_KEYS = 50
#: characters in a key
MAX_KEY_LENGTH = 100
#: characters of one value written as JSON (``"abc"`` is 5)
MAX_VALUE_LENGTH = 1000


def attribute_errors(attributes: Mapping[str, Any]) -> list[str]:
    """What is wrong with ``attributes`` (empty when nothing is), as messages for the ``attributes`` field."""
    errors: list[str] = []
    if len(attributes) > MAX_KEYS:
        errors.append(f"at most {MAX_KEYS} keys (got {len(attributes)})")
    for key, value in attributes.items():
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_LENGTH:
            errors.append(f"key {str(key)[:40]!r}: keys are 1-{MAX_KEY_LENGTH} characters")
        elif len(json.dumps(value, ensure_ascii=False, default=str)) > MAX_VALUE_LENGTH:
            errors.append(f"key {key[:40]!r}: a value is at most {MAX_VALUE_LENGTH} characters as JSON")
        if len(errors) >= 10:
            errors.append("…")
            break
    return errors
