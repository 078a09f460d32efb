"""docs/reference.md is generated from the code (scripts/reference.py) and must not go stale."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).parent.parent


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pelago_reference_script", ROOT / "scripts" / "reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


reference = _load_generator()


# Where each documented module's source lives (pyproject's package-dir).
SOURCE_DIRS = {"pelago.plugin": "plugin", "pelago.testing": "testing"}


def test_docs_reference_md_is_current():
    assert set(reference.DEFAULT_MODULES) == set(SOURCE_DIRS)
    assert (ROOT / SOURCE_DIRS["pelago.plugin"]).is_dir()
    broken = []
    for name in reference.DEFAULT_MODULES:
        if not (ROOT / SOURCE_DIRS[name]).is_dir():
            continue  # not written yet: the reference cannot document it, and says so by leaving it out
        try:
            importlib.import_module(name)
        except ImportError as exc:
            broken.append(f"{name} ({exc})")
    assert not broken, f"modules docs/reference.md must document cannot be imported (make venv?): {broken}"
    on_disk = reference.OUTPUT.read_text(encoding="utf-8") if reference.OUTPUT.exists() else ""
    diff = reference.stale(on_disk, reference.render(reference.DEFAULT_MODULES))
    assert diff is None, (
        f"docs/reference.md is stale: the public surface changed. Run `{reference.COMMAND}`, "
        f"review the diff, and add the change to docs/changelog.md.\n{diff}"
    )


def test_every_public_name_of_a_module_is_described():
    import pelago.core as module

    text = reference.render(["pelago.core"])
    for name in module.__all__:
        assert f"### `{name}`\n" in text, name
    assert text.count("### `") == len(module.__all__)
    # A dataclass with its fields, a method, an exception's constructor, a function, a constant.
    section = text.split("### `PluginSpec`")[1].split("\n### ")[0]
    assert "*dataclass (frozen)*" in section and "| `hookspecs` |" in section
    assert "- `secret_fields() -> frozenset[str]`" in section
    assert "The static half of a plugin" in section
    assert "`InvalidInput(message: str, errors: Mapping[str, Any] | None = None, location: str = 'json')`" in text
    assert "`system_clock() -> datetime`" in text
    assert f"`__version__ = {module.__version__!r}`" in text


def test_a_module_that_cannot_be_imported_is_skipped_with_a_message():
    said: list[str] = []
    text = reference.render(["pelago.no_such_module", "pelago.core"], said.append)
    assert len(said) == 1 and "pelago.no_such_module" in said[0] and "cannot be imported" in said[0]
    assert "## `pelago.no_such_module`" not in text and "## `pelago.core`" in text


@pytest.fixture
def sample_module(tmp_path, monkeypatch):
    """A module with section comments in its ``__all__``, written for the test."""
    (tmp_path / "ref_sample.py").write_text(textwrap.dedent('''
        """A sample module.

        Its second paragraph is not shown.
        """
        from __future__ import annotations

        from dataclasses import dataclass, field
        from typing import TypedDict

        import pytest

        __all__ = [
            # --- declaring ---
            "Spec",
            "make",
            # --- events ---
            "Item",
            "Undocumented",
            # constants
            "LIMIT",
            "NAMES",
            "Alias",
            # --- fixtures ---
            "sample_url",
        ]


        @dataclass(frozen=True)
        class Spec:
            """A spec.

            More.
            """

            name: str
            tags: list[str] = field(default_factory=list)

            def tagged(self, tag: str) -> bool:
                """Whether it has ``tag``; see :func:`~ref_sample.make`."""

            def named(self) -> str:
                """Its name, as :attr:`ref_sample.Spec.name` holds it."""
                return self.name
                return tag in self.tags


        def make(name: str, *, tags: tuple[str, ...] = ()) -> Spec:
            """Make a :class:`Spec`."""
            return Spec(name, list(tags))


        class Item(TypedDict):
            """An event item."""

            lead_id: int
            note: str | None


        class Undocumented:
            def __init__(self, x: int) -> None:
                self.x = x


        LIMIT = 200
        NAMES = frozenset({"b", "c", "a"})
        Alias = Spec


        @pytest.fixture(scope="session")
        def sample_url(tmp_path_factory) -> str:
            """A database URL for the whole run."""
            return "sqlite://"
    '''), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "ref_sample"
    sys.modules.pop("ref_sample", None)


def test_names_are_grouped_by_the_section_comments_of_all(sample_module):
    text = reference.render([sample_module])
    headings = [line for line in text.splitlines() if line.startswith("###")]
    assert headings == [
        "### declaring", "#### `Spec`", "#### `make`",
        "### events", "#### `Item`", "#### `Undocumented`",
        "### constants", "#### `LIMIT`", "#### `NAMES`", "#### `Alias`",
        "### fixtures", "#### `sample_url`",
    ]
    assert "A sample module." in text and "second paragraph" not in text
    assert "**declaring:** [`Spec`](#spec) · [`make`](#make)" in text


def test_each_kind_of_object_is_described(sample_module):
    text = reference.render([sample_module])
    assert "| `tags` | `list[str]` | `list()` |" in text
    assert "- `tagged(tag: str) -> bool`: Whether it has `tag`; see `make`." in text
    assert "- `named() -> str`: Its name, as `ref_sample.Spec.name` holds it." in text
    assert "`make(name: str, *, tags: tuple[str, ...] = ()) -> Spec`" in text and "Make a `Spec`." in text
    assert "*TypedDict*" in text and "| `note` | `str \\| None` | yes |" in text
    assert "`Undocumented(x: int)`" in text and "*(no docstring)*" in text
    assert "`LIMIT = 200`" in text and "`NAMES = frozenset({'a', 'b', 'c'})`" in text
    assert "*alias of [`Spec`](#spec)*" in text
    assert "*pytest fixture, scope `session`*" in text and "`sample_url(tmp_path_factory) -> str`" in text
    assert "A database URL for the whole run." in text


def test_without_section_comments_names_are_alphabetical(tmp_path, monkeypatch):
    (tmp_path / "ref_plain.py").write_text('__all__ = ["zeta", "Alpha", "beta"]\nzeta = 1\nAlpha = 2\nbeta = 3\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        text = reference.render(["ref_plain"])
    finally:
        sys.modules.pop("ref_plain", None)
    assert [line for line in text.splitlines() if line.startswith("###")] == [
        "### `Alpha`", "### `beta`", "### `zeta`",
    ]


def test_a_stale_file_is_reported_with_a_diff():
    assert reference.stale("same\n", "same\n") is None
    diff = reference.stale("a\nold line\n", "a\nnew line\n")
    assert diff is not None and "-old line" in diff and "+new line" in diff


def test_the_command_line_prints_and_checks():
    script = str(ROOT / "scripts" / "reference.py")
    out = subprocess.run([sys.executable, script, "pelago.core", "pelago.no_such_module"],
                         capture_output=True, text=True, check=True)
    assert "## `pelago.core`" in out.stdout and "skipped pelago.no_such_module" in out.stderr
    check = subprocess.run([sys.executable, script, "--check", "pelago.core"], capture_output=True, text=True)
    assert check.returncode == 1 and "--write" in check.stderr  # reference.md documents other modules
