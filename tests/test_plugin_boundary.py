"""The import boundary: plugins and examples import only Pelago's public surface.

Bundled plugins (``plugins/<name>/``) and ``examples/`` may import, of Pelago,
only ``pelago.plugin``; their tests (``plugins/<name>/tests/``,
``examples/<name>/tests/``) also ``pelago.testing``. Anything else under
``pelago.*`` is internal and may move, so a plugin that reaches for it breaks
on the next release (CKAN's warning: a facade erodes unless a test guards it).
A plugin's own package is always fine: relative imports, ``pelago.plugins.<name>``
for a bundled plugin, the example's own top-level package.

Imports are read with :mod:`ast`, so every form is seen (``import pelago.core``,
``from pelago.core.db import X``, ``from pelago import core``, imports inside
functions or ``TYPE_CHECKING`` blocks) and nothing in strings or comments is.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = ("pelago.plugin",)
PUBLIC_IN_TESTS = ("pelago.plugin", "pelago.testing")


def _allowed(module: str, allowed: tuple[str, ...], own: str | None) -> bool:
    """Whether ``module`` (a dotted name) may be imported: a public module, or the plugin's own package."""
    if module != "pelago" and not module.startswith("pelago."):
        return True  # not Pelago's: third-party libraries, the example's own package, ``tests``
    names = (*allowed, own) if own else allowed
    return any(module == n or module.startswith(n + ".") for n in names)


def violations(source: str, filename: str, *, tests: bool = False, own: str | None = None) -> list[str]:
    """``file:line: import`` for each import of Pelago outside the public surface in ``source``.

    ``tests``: the file is a plugin's test (``pelago.testing`` is allowed too).
    ``own``: the plugin's own dotted package (``pelago.plugins.pool``), which it may import.
    """
    allowed = PUBLIC_IN_TESTS if tests else PUBLIC
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level or node.module is None:
                continue  # relative: within the plugin's own package
            if node.module == "pelago":  # ``from pelago import core``: each name is a module
                modules = [f"pelago.{alias.name}" for alias in node.names]
            else:
                modules = [node.module]
        else:
            continue
        for module in modules:
            if not _allowed(module, allowed, own):
                found.append(f"{filename}:{node.lineno}: {module}")
    return found


def plugin_files() -> Iterator[tuple[Path, bool, str | None]]:
    """Every ``.py`` of the bundled plugins and the examples: ``(path, is a test, own package)``."""
    for path in sorted((ROOT / "plugins").rglob("*.py")):
        parts = path.relative_to(ROOT / "plugins").parts
        if len(parts) == 1:  # plugins/__init__.py: the namespace of the bundled plugins
            yield path, False, None
            continue
        yield path, parts[1] == "tests", f"pelago.plugins.{parts[0]}"
    for path in sorted((ROOT / "examples").rglob("*.py")):
        parts = path.relative_to(ROOT / "examples").parts
        yield path, len(parts) > 2 and parts[1] == "tests", None


def _check(paths: list[tuple[Path, bool, str | None]]) -> list[str]:
    found: list[str] = []
    for path, is_test, own in paths:
        found += violations(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)), tests=is_test, own=own)
    return found


def _group(name: str) -> list[tuple[Path, bool, str | None]]:
    """The files of ``name``: ``examples`` or one bundled plugin, ``plugins/<name>``."""
    return [f for f in plugin_files() if f[0].is_relative_to(ROOT / name)]


def test_there_is_something_to_check():
    files = list(plugin_files())
    assert any(p.is_relative_to(ROOT / "examples/lead_score/pelago_lead_score") for p, _, _ in files)
    assert any(test for _, test, _ in files)
    for name in ("scheduling", "settlement", "sms_nurture", "conversions"):
        assert ROOT / "plugins" / name / "__init__.py" in [p for p, _, _ in files]


@pytest.mark.parametrize("group", [
    "examples",
    *sorted(f"plugins/{p.name}" for p in (ROOT / "plugins").iterdir() if (p / "__init__.py").exists()),
])
def test_plugins_and_examples_import_only_the_public_surface(group):
    found = _check(_group(group))
    assert not found, (
        "Plugins and examples import only pelago.plugin (and pelago.testing in their tests); "
        "extend pelago.plugin instead of importing internals:\n" + "\n".join(found)
    )


def test_the_namespace_of_the_bundled_plugins_imports_nothing_internal():
    found = _check([(ROOT / "plugins" / "__init__.py", False, None)])
    assert not found, "\n".join(found)


# --- the checker itself ------------------------------------------------------------------


BAD = """\
import os
import pelago.core.db
from pelago.hostapp.auth import ctx
from pelago import core, plugin
from pelago.plugins.pool.models import Pool


def later():
    from pelago.core.vetoes import vetoes  # inside a function: still an import
    return vetoes

TEXT = "from pelago.core import X"  # a string, not an import
"""

GOOD = """\
import sqlalchemy
import pelago.plugin
from pelago.plugin import PluginSpec, hookimpl
from pelago import plugin
from . import models
from .jobs import rescore
from ..other import thing
from pelago.plugins.sms_nurture.models import Message
from pelago_lead_score import jobs
"""


def test_the_checker_names_each_internal_import_with_its_line():
    assert violations(BAD, "plugins/sms_nurture/x.py", own="pelago.plugins.sms_nurture") == [
        "plugins/sms_nurture/x.py:2: pelago.core.db",
        "plugins/sms_nurture/x.py:3: pelago.hostapp.auth",
        "plugins/sms_nurture/x.py:4: pelago.core",
        "plugins/sms_nurture/x.py:5: pelago.plugins.pool.models",  # another plugin's internals
        "plugins/sms_nurture/x.py:9: pelago.core.vetoes",
    ]


def test_the_checker_allows_the_public_surface_and_the_plugins_own_code():
    assert violations(GOOD, "plugins/sms_nurture/x.py", own="pelago.plugins.sms_nurture") == []


def test_pelago_testing_is_allowed_in_tests_only():
    source = "from pelago.testing import new_tenant\nimport pelago.testing\n"
    assert violations(source, "examples/x/tests/test_x.py", tests=True) == []
    assert violations(source, "examples/x/x/api.py") == [
        "examples/x/x/api.py:1: pelago.testing", "examples/x/x/api.py:2: pelago.testing",
    ]


def test_a_plugin_file_that_imports_internals_is_found(tmp_path, monkeypatch):
    plugin = tmp_path / "plugins" / "demo"
    (plugin / "tests").mkdir(parents=True)
    (plugin / "__init__.py").write_text("from pelago.core import PluginSpec\n")
    (plugin / "tests" / "test_demo.py").write_text("from pelago.testing import new_tenant\n")
    (tmp_path / "examples" / "ex" / "ex").mkdir(parents=True)
    (tmp_path / "examples" / "ex" / "ex" / "api.py").write_text("\n\nfrom pelago.hostapp.api import Blueprint\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    assert _check(list(plugin_files())) == [
        "plugins/demo/__init__.py:1: pelago.core",
        "examples/ex/ex/api.py:3: pelago.hostapp.api",
    ]
