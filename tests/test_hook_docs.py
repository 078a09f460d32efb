"""Meta-tests (as Datasette does): every hook is documented with its exact signature, and tested.

The convention (docs/hooks.md, "How each hook is documented"): a hook's
section is a ``### `name` `` heading, and the first fenced code block of the
section is a ``python`` block holding one ``def name(...) -> ...: ...``, the
hookspec's signature with the same argument names, in the same order, with
the same annotations and return annotation. The core's hooks are documented
in docs/hooks.md; the hooks a plugin of this repository declares for others
(``PluginSpec.hookspecs``, such as the pool's ``pool_recycle_due``) in
docs/plugins/<plugin>.md, with the same kind of section. In those pages a
``### `identifier` `` heading is reserved for hooks. Each core event's
section has a line ``- **Items** (`<TypedDict>`): …`` naming the type of its
items in ``pelago.plugin`` and listing every key each item has.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pluggy
import pytest

from pelago.core import hookspecs
from pelago.core.host import PluginHost
from pelago.core.markers import PROJECT

ROOT = Path(__file__).parent.parent
CORE_DOC = ROOT / "docs" / "hooks.md"
HOOK_HEADING = re.compile(r"^###[ \t]+`([A-Za-z_][A-Za-z0-9_]*)`[ \t]*$")
ANY_HEADING = re.compile(r"^#{1,3}[ \t]", re.M)
FENCE = re.compile(r"^```([A-Za-z0-9_+-]*)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
QUALIFIED = re.compile(r"\b(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*)")


# --- reading the hookspecs ------------------------------------------------------


def declared(namespace: Any) -> dict[str, Any]:
    """``{hook name: pluggy HookSpec}`` of the ``@hookspec`` functions in a module or class."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(namespace)
    return {name: caller.spec for name, caller in vars(pm.hook).items() if getattr(caller, "spec", None)}


def hook_names() -> set[str]:
    return set(declared(hookspecs))


SHIPPED = (ROOT / "plugins", ROOT / "examples")


def _shipped(target: str) -> bool:
    """Whether an entry point (``pkg.mod:attr``) is a plugin this repository ships (``plugins/``, ``examples/``).

    Plugins installed from elsewhere document their hooks in their own
    repository; the test plugins of ``tests/plugins`` (one is broken on
    purpose) document nothing.
    """
    try:
        found = importlib.util.find_spec(target.split(":")[0])
    except ImportError:
        return False
    origin = Path(found.origin).resolve() if found and found.origin else None
    return origin is not None and any(origin.is_relative_to(d.resolve()) for d in SHIPPED)


def plugin_hookspecs() -> dict[str, dict[str, Any]]:
    """``{plugin: {hook: HookSpec}}`` for the plugins this repository ships that declare hooks."""
    host = PluginHost(None)
    broken = {name: f.error for name, f in host.failures.items() if _shipped(f.target)}
    assert not broken, f"plugins of this repository failed to load: {broken}"
    return {
        name: declared(spec.hookspecs)
        for name, spec in sorted(host.specs.items())
        if spec.hookspecs is not None and _shipped(host.installed.get(name, ""))
    }


# --- reading the docs -------------------------------------------------------------


def sections(text: str) -> dict[str, str]:
    """``{hook: the section's text}`` for every ``### `hook` `` heading of a page.

    A section runs to the next heading of level 1 to 3; lines inside fenced
    code blocks (a ``# comment``) are never headings.
    """
    found: dict[str, str] = {}
    current: str | None = None
    fenced = False
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and ANY_HEADING.match(line):
            m = HOOK_HEADING.match(line)
            current = m.group(1) if m else None
            if current is not None:
                found[current] = ""
            continue
        if current is not None:
            found[current] += line
    return found


@dataclass(frozen=True)
class Signature:
    """A signature reduced to what the docs must match: names, annotations, return."""

    args: tuple[tuple[str, str | None], ...]
    returns: str | None

    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.args)

    def __str__(self) -> str:
        args = ", ".join(name if ann is None else f"{name}: {ann}" for name, ann in self.args)
        return f"({args})" + ("" if self.returns is None else f" -> {self.returns}")


def _normal(annotation: Any) -> str | None:
    """An annotation as comparable text: parsed and unparsed, module qualifications dropped."""
    if annotation is inspect.Parameter.empty or annotation is None:
        return None
    text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
    text = ast.unparse(ast.parse(text, mode="eval"))
    return QUALIFIED.sub(r"\1", text)


def spec_signature(spec: Any) -> Signature:
    """The hookspec's signature: the arguments pluggy passes (``argnames``), with their annotations."""
    params = inspect.signature(spec.function).parameters
    names = (*spec.argnames, *spec.kwargnames)
    return Signature(
        tuple((n, _normal(params[n].annotation)) for n in names),
        _normal(inspect.signature(spec.function).return_annotation),
    )


def doc_signature(name: str, section: str) -> Signature:
    """The signature shown by the first code block of a hook's section; ``AssertionError`` if there is none."""
    block = FENCE.search(section)
    assert block is not None, f"the section of {name!r} has no code block: start it with its signature"
    lang, code = block.groups()
    assert lang == "python", f"the first code block of {name!r}'s section must be ```python (its signature)"
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        raise AssertionError(f"the signature block of {name!r} is not valid Python: {exc}") from None
    assert len(tree.body) == 1 and isinstance(tree.body[0], ast.FunctionDef), (
        f"the first code block of {name!r}'s section must hold only `def {name}(...) -> ...: ...`"
    )
    fn = tree.body[0]
    assert fn.name == name, f"the section of {name!r} shows the signature of {fn.name!r}"
    assert not fn.decorator_list, f"the signature block of {name!r} must be the bare `def` (no decorator)"
    a = fn.args
    assert not (a.vararg or a.kwarg), f"the signature of {name!r} in the docs has *args or **kwargs"

    def ann(node: ast.expr | None) -> str | None:
        return None if node is None else _normal(ast.unparse(node))

    args = (*a.posonlyargs, *a.args, *a.kwonlyargs)
    return Signature(tuple((x.arg, ann(x.annotation)) for x in args), ann(fn.returns))


def mismatch(name: str, documented: Signature, declared_: Signature) -> str | None:
    """Why the documented signature differs from the declared one, or ``None``."""
    if documented.names() != declared_.names():
        return (f"{name}: the docs name the arguments {list(documented.names())}, "
                f"the hookspec {list(declared_.names())}")
    if documented != declared_:
        return f"{name}: the docs show {name}{documented}, the hookspec declares {name}{declared_}"
    return None


# --- the documented hooks ---------------------------------------------------------


@dataclass(frozen=True)
class Documented:
    hook: str
    spec: Any
    page: Path


def documented_hooks() -> Iterator[Documented]:
    for name, spec in sorted(declared(hookspecs).items()):
        yield Documented(name, spec, CORE_DOC)
    for plugin, specs in plugin_hookspecs().items():
        for name, spec in sorted(specs.items()):
            yield Documented(name, spec, ROOT / "docs" / "plugins" / f"{plugin}.md")


DOCUMENTED = list(documented_hooks())


# --- the tests ----------------------------------------------------------------------


def test_hookspec_list_is_complete():
    assert hook_names() == set(hookspecs.DECISIONS) | set(hookspecs.EVENTS) | set(hookspecs.QUERIES)


def test_every_hook_has_a_section_in_docs_hooks_md():
    documented = set(sections(CORE_DOC.read_text(encoding="utf-8")))
    missing = hook_names() - documented
    assert not missing, f"hooks without a section in docs/hooks.md: {sorted(missing)}"
    stale = documented - hook_names()
    assert not stale, f"docs/hooks.md documents hooks that do not exist: {sorted(stale)}"


def test_the_pool_declares_hooks_and_the_test_finds_them():
    # Guards the discovery below: if it found no plugin hookspecs, the doc checks would pass vacuously.
    assert "pool_recycle_due" in plugin_hookspecs().get("pool", {})


@pytest.mark.parametrize("plugin", sorted(plugin_hookspecs()))
def test_every_plugin_hook_has_a_section_in_its_plugin_page(plugin: str):
    page = ROOT / "docs" / "plugins" / f"{plugin}.md"
    assert page.exists(), f"plugin {plugin!r} declares hooks: document them in docs/plugins/{plugin}.md"
    declared_here = set(plugin_hookspecs()[plugin])
    documented = set(sections(page.read_text(encoding="utf-8")))
    missing = declared_here - documented
    assert not missing, f"hooks of {plugin!r} without a section in {page.relative_to(ROOT)}: {sorted(missing)}"
    stale = documented - declared_here
    assert not stale, f"{page.relative_to(ROOT)} has hook sections for hooks {plugin!r} does not declare: {sorted(stale)}"


@pytest.mark.parametrize("doc", DOCUMENTED, ids=lambda d: d.hook)
def test_the_docs_show_each_hooks_signature(doc: Documented):
    found = sections(doc.page.read_text(encoding="utf-8")) if doc.page.exists() else {}
    if doc.hook not in found:
        pytest.fail(f"{doc.hook} has no section in {doc.page.relative_to(ROOT)} (see the test above)")
    problem = mismatch(doc.hook, doc_signature(doc.hook, found[doc.hook]), spec_signature(doc.spec))
    assert problem is None, f"{doc.page.relative_to(ROOT)}: {problem}"


def test_every_hook_has_its_own_test():
    from tests import test_hooks

    untested = {name for name in hook_names() if not hasattr(test_hooks, f"test_hook_{name}")}
    assert not untested, f"hooks without a test_hook_<name> in tests/test_hooks.py: {sorted(untested)}"


# --- the checks themselves can fail ----------------------------------------------------


class _Specs:
    """A stand-in hookspec namespace for checking the checks."""

    @pluggy.HookspecMarker(PROJECT)
    def sample_hook(self, ctx: Any, leads: list[int]) -> int | None:  # type: ignore[empty-body]
        """A hook for the tests of the checks."""


def _check(page: str) -> str | None:
    spec = declared(_Specs)["sample_hook"]
    return mismatch("sample_hook", doc_signature("sample_hook", sections(page)["sample_hook"]), spec_signature(spec))


def _page(block: str, lang: str = "python") -> str:
    return f"# Page\n\n### `sample_hook`\n\n```{lang}\n{block}\n```\n\nProse.\n\n### `other`\n\n```python\nx = 1\n```\n"


def test_a_matching_section_passes_and_qualified_names_are_equal():
    assert _check(_page("def sample_hook(ctx: Any, leads: list[int]) -> int | None: ...")) is None
    assert _check(_page("def sample_hook(ctx: typing.Any, leads: list[int]) -> int | None: ...")) is None


@pytest.mark.parametrize(("block", "expected"), [
    ("def sample_hook(ctx: Any, lead_ids: list[int]) -> int | None: ...", "name the arguments"),
    ("def sample_hook(leads: list[int], ctx: Any) -> int | None: ...", "name the arguments"),
    ("def sample_hook(ctx: Any) -> int | None: ...", "name the arguments"),
    ("def sample_hook(ctx: Any, leads: list[str]) -> int | None: ...", "hookspec declares"),
    ("def sample_hook(ctx: Any, leads: list[int]) -> int: ...", "hookspec declares"),
    ("def sample_hook(ctx, leads): ...", "hookspec declares"),
])
def test_a_section_that_differs_from_the_hookspec_is_reported(block: str, expected: str):
    problem = _check(_page(block))
    assert problem is not None and expected in problem


@pytest.mark.parametrize(("page", "expected"), [
    (_page("def other_hook(ctx: Any, leads: list[int]) -> int | None: ..."), "signature of 'other_hook'"),
    (_page("@hookimpl\ndef sample_hook(ctx: Any, leads: list[int]) -> int | None: ..."), "no decorator"),
    (_page("def sample_hook(ctx: Any, leads: list[int]) -> int | None: ...", lang="text"), "must be ```python"),
    ("### `sample_hook`\n\nNo block here.\n\n### `other`\n\n```python\nx = 1\n```\n", "no code block"),
])
def test_a_section_without_a_signature_block_is_reported(page: str, expected: str):
    with pytest.raises(AssertionError, match=re.escape(expected)):
        _check(page)


# --- event items --------------------------------------------------------------------------


ITEMS_LINE = re.compile(r"^- \*\*Items\*\* \(`([A-Za-z_]\w*)`\):", re.M)


def _required_keys(typed: Any) -> list[str]:
    """Keys of a TypedDict that every item has (``NotRequired`` ones are added by some emitters only)."""
    keys = []
    for key, ann in typed.__annotations__.items():
        text = ann if isinstance(ann, str) else getattr(ann, "__forward_arg__", repr(ann))
        if not re.match(r"(typing\.)?NotRequired\[", text) and key in typed.__required_keys__:
            keys.append(key)
    return keys


@pytest.mark.parametrize("hook", hookspecs.EVENTS)
def test_each_event_section_names_its_item_type_and_lists_its_keys(hook: str):
    import pelago.plugin

    section = sections(CORE_DOC.read_text(encoding="utf-8"))[hook]
    named = ITEMS_LINE.findall(section)
    assert len(named) == 1, f"the section of {hook} needs one line `- **Items** (`<TypedDict>`): …`"
    typed = getattr(pelago.plugin, named[0], None)
    assert typed is not None and named[0] in pelago.plugin.__all__, (
        f"{hook}'s items are typed as {named[0]}, which pelago.plugin does not export")
    items = section[section.index("- **Items**"):]
    end = re.compile(r"^(- \*\*|```)", re.M).search(items, 1)  # the next bullet of the section, or its example
    items = items[: end.start()] if end else items
    missing = [key for key in _required_keys(typed) if f"`{key}`" not in items]
    assert not missing, f"docs/hooks.md: the Items of {hook} do not list {missing} (keys of {named[0]})"
