"""What this repository's tests add to ``pelago.testing`` (the fixtures themselves live there).

``pelago.testing`` (loaded by pytest through its entry point) gives a real,
migrated database per run (``--pelago-db`` / ``PELAGO_TEST_DB``: ``sqlite`` or
``postgresql``), apps, runtimes, tenants and the clock: docs/testing.md. This
file installs the fake test plugins and chooses the plugin sets.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from pelago.testing import TenantHandle, new_tenant
from tests.demo_server import demo_servers
from tests.routes import DEFAULT_PLUGINS

__all__ = ["ALL_GOOD_PLUGINS", "DEFAULT_PLUGINS", "TenantHandle", "demo_servers", "new_tenant"]

# Test plugins are installed for real: a dist-info with entry points on sys.path.
TEST_PLUGINS = {
    "recorder": "tests.plugins.recorder:plugin",
    "failing": "tests.plugins.failing:plugin",
    "needs_recorder": "tests.plugins.needs_recorder:plugin",
    "broken": "tests.plugins.broken:plugin",
}
#: every installed plugin that loads (``broken`` does not): the database is migrated with them
ALL_GOOD_PLUGINS = ("pool", "scheduling", "sms_nurture", "settlement", "conversions", "lead_score",
                    "conversions_adapters",
                    "recorder", "failing", "needs_recorder")


def _write_once(path: Path, text: str) -> None:
    """Write ``path`` atomically, and only when it differs: pytest-xdist's workers configure at once."""
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sweep: a sweep of every route (tenant isolation); scripts/test runs it once, in the PostgreSQL "
                   "pass when there is one",
    )
    config.addinivalue_line("markers", "browser: drives headless Chromium (tests/test_console_browser.py)")
    dist = Path(config.rootpath) / ".pytest_plugins_dist"
    info = dist / "pelago_test_plugins-0.0.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    lines = ["[pelago.plugins]", *(f"{k} = {v}" for k, v in TEST_PLUGINS.items())]
    _write_once(info / "METADATA", "Metadata-Version: 2.1\nName: pelago-test-plugins\nVersion: 0.0.0\n")
    _write_once(info / "entry_points.txt", "\n".join(lines) + "\n")
    if str(dist) not in sys.path:
        sys.path.append(str(dist))
    if str(config.rootpath) not in sys.path:
        sys.path.insert(0, str(config.rootpath))
    importlib.invalidate_caches()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The README tour just before the docs' curl examples: a worker that runs both starts one demo
    server for them (the tour needs it fresh, the examples reuse it: tests/demo_server.py)."""
    tour = [item for item in items if item.nodeid.startswith("tests/test_readme_tour.py")]
    if not tour:
        return
    rest = [item for item in items if not item.nodeid.startswith("tests/test_readme_tour.py")]
    at = next((k for k, item in enumerate(rest) if item.nodeid.startswith("tests/test_docs_examples.py")), len(rest))
    items[:] = [*rest[:at], *tour, *rest[at:]]


@pytest.fixture(scope="session")
def pelago_migrated_plugins() -> Sequence[str]:
    return ALL_GOOD_PLUGINS


@pytest.fixture(scope="session")
def pelago_plugins() -> Sequence[str]:
    """``make_app()``'s plugins (``tests/routes.py`` builds the contract tests' spec with the same)."""
    return DEFAULT_PLUGINS


@pytest.fixture
def test_plugins_forget() -> Iterator[None]:
    """The test plugins' records (``recorder.CALLS``, ``failing.ATTEMPTS``) empty before and after a test."""
    from tests.plugins import failing, recorder

    recorder.CALLS.clear()
    failing.ATTEMPTS.clear()
    yield
    recorder.CALLS.clear()
    failing.ATTEMPTS.clear()
