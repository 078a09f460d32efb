"""Pytest at the repository root: the bundled plugins' own tests import as the installed package.

pytest names a test module after its folders, so ``plugins/pool/tests/test_pool.py``
becomes ``plugins.pool.tests.test_pool`` and its parents ``plugins`` and
``plugins.pool`` would be imported from the source tree a second time, beside
the installed ``pelago.plugins.pool`` (whose tables would then be defined
twice). Those folder names are made to mean the installed packages before any
plugin's tests are collected.
"""

import importlib
import pkgutil
import sys
from pathlib import Path

import pelago.plugins

sys.modules.setdefault("plugins", pelago.plugins)
for found in pkgutil.iter_modules(pelago.plugins.__path__):
    if found.ispkg and (Path(pelago.plugins.__path__[0]) / found.name / "tests").is_dir():
        sys.modules.setdefault(f"plugins.{found.name}", importlib.import_module(f"pelago.plugins.{found.name}"))
