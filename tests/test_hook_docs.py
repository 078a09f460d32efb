"""Meta-tests (as Datasette does): every hook is documented and tested."""

from __future__ import annotations

import re
from pathlib import Path

from pelago.core import hookspecs

ROOT = Path(__file__).parent.parent


def hook_names() -> set[str]:
    return {name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "pelago_spec")}


def test_hookspec_list_is_complete():
    assert hook_names() == set(hookspecs.DECISIONS) | set(hookspecs.EVENTS)


def test_every_hook_has_a_section_in_docs_hooks_md():
    text = (ROOT / "docs" / "hooks.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^### `([a-z_]+)`", text, flags=re.M))
    missing = hook_names() - documented
    assert not missing, f"hooks without a section in docs/hooks.md: {sorted(missing)}"
    stale = documented - hook_names()
    assert not stale, f"docs/hooks.md documents hooks that do not exist: {sorted(stale)}"


def test_every_hook_has_its_own_test():
    from tests import test_hooks

    untested = {name for name in hook_names() if not hasattr(test_hooks, f"test_hook_{name}")}
    assert not untested, f"hooks without a test_hook_<name> in tests/test_hooks.py: {sorted(untested)}"
