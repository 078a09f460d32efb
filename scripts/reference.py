"""Write docs/reference.md, the reference of Pelago's public surface, from the code.

For every name in the ``__all__`` of the given modules (by default
``pelago.plugin`` and ``pelago.testing``, the two modules plugins may import)
it writes the kind of object, its signature (a dataclass's fields, a
``TypedDict``'s keys, a class's public methods, a table's columns) and the
first paragraph of its docstring, grouped by the section comments of the
module's ``__all__`` (alphabetical when it has none).

    .venv/bin/python scripts/reference.py > docs/reference.md
    .venv/bin/python scripts/reference.py --write     # the same
    .venv/bin/python scripts/reference.py --check     # exit 1 and a diff if docs/reference.md is stale
    .venv/bin/python scripts/reference.py pelago.core # other modules, to stdout

A module that cannot be imported is skipped with a message on stderr.
``tests/test_reference_docs.py`` regenerates the file and fails when it is
stale, so the reference cannot drift from the code.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import functools
import importlib
import inspect
import io
import re
import sys
import tokenize
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "reference.md"
DEFAULT_MODULES = ("pelago.plugin", "pelago.testing")
COMMAND = ".venv/bin/python scripts/reference.py --write"
_OURS = {"pelago"}  # top-level packages whose classes are described in full; grows per module

HEADER = f"""# Reference: the public surface

<!-- Generated from the code by scripts/reference.py: do not edit by hand.
     Regenerate with `{COMMAND}`; tests/test_reference_docs.py fails when this file is stale. -->

Every name a plugin may import, with its signature and the first paragraph
of its docstring, generated from the code. What is public, and how it
changes between versions, is in [versioning.md](versioning.md); the hooks
are in [hooks.md](hooks.md).
"""

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`(~?)([^`]+)`")


# --- finding the names and their groups ----------------------------------------------


@dataclass
class Group:
    title: str | None
    names: list[str] = field(default_factory=list)


def groups_of(module: ModuleType) -> list[Group]:
    """The module's ``__all__`` in groups named by its section comments (in ``__all__`` order).

    Without section comments (or without a literal ``__all__`` in the source),
    one untitled group in alphabetical order. Names of ``__all__`` missing from
    the source's list land in a last group, "Other".
    """
    public = list(getattr(module, "__all__", ()))
    parsed = _parse_all(module)
    if parsed is None or all(g.title is None for g in parsed):
        return [Group(None, sorted(public, key=str.casefold))]
    wanted = set(public)
    groups = [Group(g.title, [n for n in g.names if n in wanted]) for g in parsed]
    seen = {n for g in groups for n in g.names}
    rest = [n for n in public if n not in seen]
    if rest:
        groups.append(Group("Other", rest))
    return [g for g in groups if g.names]


def _parse_all(module: ModuleType) -> list[Group] | None:
    """Read ``__all__ = [...]`` from the module's source, with the comments between its names."""
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return None
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    for i, tok in enumerate(tokens):
        if tok.type != tokenize.NAME or tok.string != "__all__" or tok.start[1] != 0:
            continue
        j = i + 1
        while j < len(tokens) and tokens[j].string not in ("=", "\n"):
            j += 1  # an annotation: __all__: list[str] = [...]
        if j + 1 >= len(tokens) or tokens[j].string != "=" or tokens[j + 1].string not in ("[", "("):
            return None
        groups = [Group(None)]
        depth = 0
        for tok in tokens[j + 1:]:
            if tok.type == tokenize.OP and tok.string in "[(":
                depth += 1
            elif tok.type == tokenize.OP and tok.string in "])":
                depth -= 1
                if depth == 0:
                    return groups
            elif tok.type == tokenize.COMMENT:
                title = tok.string.lstrip("#").strip().strip("-=—").strip()
                if title:
                    groups.append(Group(title))
            elif tok.type == tokenize.STRING and depth == 1:
                groups[-1].names.append(ast.literal_eval(tok.string))
        return None
    return None


# --- describing one object --------------------------------------------------------------


class _Text:
    """Shown as its text, unquoted (an annotation kept as a string, a default)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _annotation(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, typing.ForwardRef):
        return value.__forward_arg__
    return inspect.formatannotation(value)


def _default(value: Any) -> str:
    if isinstance(value, (set, frozenset)):
        items = ", ".join(sorted(repr(v) for v in value))
        return f"{type(value).__name__}({{{items}}})" if value else f"{type(value).__name__}()"
    if callable(value) and hasattr(value, "__qualname__"):
        return value.__qualname__
    return _ADDRESS.sub("", repr(value))


def signature(obj: Callable[..., Any], *, drop_first: bool = False, returns: bool = True) -> str:
    """``(a: int, b: str = 'x') -> T``, annotations as written in the source."""
    sig = inspect.signature(obj)
    params = list(sig.parameters.values())[1 if drop_first else 0:]
    shown = [
        p.replace(
            annotation=p.annotation if p.annotation is p.empty else _Text(_annotation(p.annotation)),
            default=p.default if p.default is p.empty else _Text(_default(p.default)),
        )
        for p in params
    ]
    ret = sig.return_annotation if returns else inspect.Signature.empty
    return str(sig.replace(
        parameters=shown, return_annotation=ret if ret is sig.empty else _Text(_annotation(ret)),
    ))


def first_paragraph(doc: str | None) -> str | None:
    """The first paragraph of a docstring, on one line, with reST roles turned into Markdown code."""
    if not doc or not doc.strip():
        return None
    paragraph = inspect.cleandoc(doc).split("\n\n")[0]
    text = " ".join(line.strip() for line in paragraph.splitlines())
    # :class:`~a.b.C` shows `C`, as Sphinx does; :func:`a.b.f` shows `a.b.f`.
    text = _ROLE.sub(lambda m: f"`{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}`", text)
    return text.replace("``", "`")


def _own_doc(obj: Any) -> str | None:
    """The object's own docstring: not a base class's, not the one dataclasses make up."""
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    if inspect.isclass(obj) and dataclasses.is_dataclass(obj) and doc and doc.startswith(f"{obj.__name__}("):
        return None
    return doc


def _ours(cls: type) -> bool:
    """Defined by Pelago (or by the package being documented), not by a library it builds on."""
    return cls.__module__.split(".")[0] in _OURS


def _qualified(cls: type) -> str:
    if _ours(cls) or cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _members(cls: type) -> list[str]:
    """Public methods and properties defined by Pelago's classes in ``cls``'s MRO, in definition order."""
    lines: list[str] = []
    seen: set[str] = set()
    for klass in cls.__mro__:
        if klass is object or not _ours(klass):
            continue
        for name, raw in vars(klass).items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            line = _member(cls, name, raw)
            if line:
                lines.append(line)
    return lines


def _member(cls: type, name: str, raw: Any) -> str | None:
    if isinstance(raw, functools.cached_property):  # a property computed once per object
        raw = property(raw.func, doc=raw.__doc__)
    if isinstance(raw, property):
        ret = inspect.signature(raw.fget).return_annotation if raw.fget else inspect.Signature.empty
        kind = "property" + ("" if ret is inspect.Signature.empty else f" → `{_annotation(ret)}`")
        doc = first_paragraph(raw.__doc__)
        return f"- `{name}` ({kind})" + (f": {doc}" if doc else "")
    if isinstance(raw, classmethod):
        shown, func, prefix = signature(getattr(cls, name)), raw.__func__, "classmethod "
    elif isinstance(raw, staticmethod):
        shown, func, prefix = signature(raw.__func__), raw.__func__, "staticmethod "
    elif inspect.isfunction(raw):
        shown, func, prefix = signature(raw, drop_first=True), raw, ""
    else:
        return None
    doc = first_paragraph(func.__doc__)
    return f"- {prefix}`{name}{shown}`" + (f": {doc}" if doc else "")


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return out


def _code(text: str) -> str:
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def describe(name: str, obj: Any) -> tuple[str, list[str], str | None]:
    """``(kind, body lines, docstring's first paragraph)`` of one public object.

    The paragraph is ``None`` for a missing docstring, ``""`` where none can be
    (a constant, a type alias).
    """
    kind_of = type(obj)
    if kind_of.__name__ == "LocalProxy":  # touching it outside a request would raise
        return f"context-local proxy (`{kind_of.__module__}.LocalProxy`)", [], ""
    if getattr(obj, "_fixture_function_marker", None) is not None:
        marker = obj._fixture_function_marker
        wrapped = obj._get_wrapped_function() if hasattr(obj, "_get_wrapped_function") else obj
        shown = [f"`{name}{signature(wrapped)}`"]
        return f"pytest fixture, scope `{marker.scope}`", shown, first_paragraph(wrapped.__doc__)
    if inspect.ismodule(obj):
        return "module", [], first_paragraph(obj.__doc__)
    if inspect.isclass(obj):
        return _describe_class(name, obj)
    if inspect.isroutine(obj):
        target = inspect.unwrap(obj)
        kind = "context manager" if (
            target is not obj and inspect.isgeneratorfunction(target) and not inspect.isgeneratorfunction(obj)
        ) else "function"
        return kind, [f"`{name}{signature(obj)}`"], first_paragraph(obj.__doc__)
    if kind_of in (str, int, float, bool, bytes, tuple, list, dict, set, frozenset, type(None)):
        return "constant", [f"`{name} = {_default(obj)}`"], ""
    if isinstance(obj, typing.TypeVar):
        return "type variable", [f"`{obj!r}`"], ""
    if kind_of.__module__ in ("typing", "types") or isinstance(obj, type(list[int])):
        return "type alias", [f"`{name} = {_ADDRESS.sub('', _annotation(obj))}`"], ""
    body: list[str] = []
    if callable(obj):
        try:
            body.append(f"`{name}{signature(kind_of.__call__, drop_first=True)}`")
        except (TypeError, ValueError):
            pass
    else:
        text = _ADDRESS.sub("", repr(obj))
        if len(text) <= 120:
            body.append(f"`{name} = {text}`")
    # A library's docstring says what its class is for; for a callable (the pluggy markers) that is
    # what the name is for, for a plain value (a column type) it is not.
    doc = first_paragraph(_own_doc(kind_of)) if callable(obj) or _ours(kind_of) else ""
    return f"instance of `{_qualified(kind_of)}`", body, doc


def _describe_class(name: str, cls: type) -> tuple[str, list[str], str | None]:
    doc = first_paragraph(_own_doc(cls))
    body: list[str] = []
    if typing.is_typeddict(cls):
        return "TypedDict", _table(("key", "type", "required"), _typeddict_rows(cls)), doc
    bases = [b for b in cls.__bases__ if b not in (object, typing.Generic, typing.Protocol)]
    if dataclasses.is_dataclass(cls):
        params = cls.__dataclass_params__  # type: ignore[attr-defined]
        kind = "dataclass" + (" (frozen)" if params.frozen else "")
        rows = []
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                default = _code(_default(f.default))
            elif f.default_factory is not dataclasses.MISSING:
                default = _code(f"{_default(f.default_factory)}()")
            else:
                default = "required"
            rows.append((f"`{f.name}`", _code(_annotation(f.type)), default))
        body += _table(("field", "type", "default"), rows)
    elif hasattr(cls, "__table__") and hasattr(cls, "__mapper__"):
        table = cls.__table__  # type: ignore[attr-defined]
        kind = f"table `{table.name}`"
        rows = [(f"`{c.name}`", type(c.type).__name__, "primary key" if c.primary_key else
                 ("null" if c.nullable else "not null")) for c in table.columns]
        body += _table(("column", "type", ""), rows)
    else:
        kind = "exception" if issubclass(cls, BaseException) else "class"
        if isinstance(vars(cls).get("_declared_fields", getattr(cls, "_declared_fields", None)), dict):
            kind = "marshmallow schema"
            body += _table(("field", "type", "load default"), _schema_rows(cls))
            body.append("")
        init = next((k for k in cls.__mro__ if "__init__" in vars(k) or "__new__" in vars(k)), object)
        if init is not object and _ours(init):
            body.append(f"`{name}{signature(cls, returns=False)}`")
        elif init is not object and init is not cls and not issubclass(cls, BaseException):
            body.append(f"Constructor: see `{_qualified(init)}`.")
    if bases:
        kind += ", subclass of " + ", ".join(f"`{_qualified(b)}`" for b in bases)
    members = _members(cls)
    if members:
        body += ["", *members]
    return kind, body, doc


def _typeddict_rows(cls: type) -> list[tuple[str, str, str]]:
    """Keys, types and whether each is required; a string ``NotRequired[...]`` counts as not required."""
    required: frozenset[str] = getattr(cls, "__required_keys__", frozenset())
    rows = []
    for key, ann in cls.__annotations__.items():
        text = _annotation(ann)
        wrapper = re.fullmatch(r"(?:typing\.)?(NotRequired|Required)\[(.*)\]", text)
        if wrapper:
            needed, text = wrapper.group(1) == "Required", wrapper.group(2)
        else:
            needed = key in required
        rows.append((f"`{key}`", _code(text), "yes" if needed else "no"))
    return rows


def _schema_rows(cls: type) -> list[tuple[str, str, str]]:
    """A marshmallow schema's fields: name (its ``data_key`` if any), field class, default or "required"."""
    rows = []
    for name, f in cls._declared_fields.items():  # type: ignore[attr-defined]
        default = f.load_default
        if f.required:
            shown = "required"
        elif type(default).__name__ == "_Missing":
            shown = "—"
        else:
            shown = _code(f"{default.__name__}()" if callable(default) and hasattr(default, "__name__")
                          else _default(default))
        rows.append((f"`{f.data_key or name}`", type(f).__name__, shown))
    return rows


# --- the page -------------------------------------------------------------------------------


def _anchor(name: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "", name.lower())


def render_module(module: ModuleType) -> str:
    """The reference section of one module."""
    _OURS.add(module.__name__.split(".")[0])
    out = [f"## `{module.__name__}`", ""]
    intro = first_paragraph(module.__doc__)
    if intro:
        out += [intro, ""]
    groups = groups_of(module)
    level = "####" if any(g.title for g in groups) else "###"
    exported = {name: getattr(module, name) for g in groups for name in g.names}
    for g in groups:
        links = " · ".join(f"[`{n}`](#{_anchor(n)})" for n in g.names)
        out += [f"**{g.title}:** {links}" if g.title else links, ""]
    for g in groups:
        if g.title:
            out += [f"### {g.title}", ""]
        for name in g.names:
            obj = exported[name]
            target = getattr(obj, "__name__", None) if inspect.isclass(obj) or inspect.isroutine(obj) else None
            if target and target != name and exported.get(target) is obj:
                out += [f"{level} `{name}`", "", f"*alias of [`{target}`](#{_anchor(target)})*", ""]
                continue
            try:
                kind, body, doc = describe(name, obj)
            except Exception as exc:  # noqa: BLE001 - one bad name must not hide the others
                kind, body, doc = "could not be described", [f"`{type(exc).__name__}: {exc}`"], None
            out += [f"{level} `{name}`", "", f"*{kind}*", ""]
            if doc != "":
                out += [doc or "*(no docstring)*", ""]
            if body:
                out += [*body, ""]
    return "\n".join(out)


def render(modules: Sequence[str], warn: Callable[[str], Any] = lambda _: None) -> str:
    """The whole page for ``modules``; a module that cannot be imported is skipped, with ``warn(message)``."""
    parts = [HEADER]
    for name in modules:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - any failure to import is reported the same way
            warn(f"skipped {name}: it cannot be imported ({type(exc).__name__}: {exc})")
            continue
        if not hasattr(module, "__all__"):
            warn(f"skipped {name}: it has no __all__, so nothing in it is declared public")
            continue
        parts.append(render_module(module))
    return _ADDRESS.sub("", "\n".join(parts)).rstrip("\n") + "\n"


def stale(current: str, generated: str, path: str = "docs/reference.md") -> str | None:
    """A unified diff from ``current`` to ``generated``, or ``None`` when they are the same."""
    if current == generated:
        return None
    return "".join(difflib.unified_diff(
        current.splitlines(keepends=True), generated.splitlines(keepends=True),
        fromfile=f"{path} (on disk)", tofile=f"{path} (from the code)",
    ))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", default=list(DEFAULT_MODULES),
                        help=f"modules to document (default: {' '.join(DEFAULT_MODULES)})")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help=f"write {OUTPUT.relative_to(ROOT)}")
    mode.add_argument("--check", action="store_true",
                      help=f"exit 1 with a diff if {OUTPUT.relative_to(ROOT)} is stale")
    args = parser.parse_args(argv)

    def warn(message: str) -> None:
        print(f"reference.py: {message}", file=sys.stderr)

    text = render(args.modules, warn)
    if args.write:
        OUTPUT.write_text(text, encoding="utf-8")
        print(f"reference.py: wrote {OUTPUT.relative_to(ROOT)}", file=sys.stderr)
    elif args.check:
        diff = stale(OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else "", text)
        if diff:
            sys.stdout.write(diff)
            print(f"reference.py: {OUTPUT.relative_to(ROOT)} is stale; run {COMMAND}", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
