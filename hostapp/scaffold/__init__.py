"""``pelago plugin new NAME``: a new plugin distribution in the standard shape.

The files are rendered from ``templates/`` (shipped as package data) with
:class:`string.Template`: ``${name}`` is the plugin's name, ``${package}``
its import package (``pelago_<name>``), ``${dist}`` its distribution
(``pelago-<name>``) and so on (see :func:`variables`). In paths,
``__package__`` becomes the package, ``__name__`` the plugin's name and
``dot-`` a leading dot; the ``.tmpl`` suffix is dropped. What it writes
imports only ``pelago.plugin`` (and ``pelago.testing`` in its tests), installs
as is and passes its own tests on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from importlib.metadata import entry_points
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from string import Template

from packaging.version import Version

from pelago.core import __version__
from pelago.core.errors import InvalidInput
from pelago.core.host import CORE_PLUGIN, ENTRY_POINT_GROUP
from pelago.core.spec import NAME_PATTERN

SUFFIX = ".tmpl"


def core_specifier(version: str = __version__) -> str:
    """The core versions a new plugin accepts: this minor series before 1.0, this major after."""
    v = Version(version)
    if v.major == 0:
        return f">=0.{v.minor},<0.{v.minor + 1}"
    return f">={v.major}.{v.minor},<{v.major + 1}"


def check_name(name: str) -> None:
    """Refuse a name that is not a valid plugin name or is already an installed plugin's."""
    if not re.match(NAME_PATTERN, name) or name == CORE_PLUGIN:
        raise InvalidInput(
            f"{name!r} is not a valid plugin name: it must match {NAME_PATTERN} "
            "(lower case, digits and _, 2 to 31 characters; it is a table prefix and a URL segment)"
            + (" and must not be 'core'" if name == CORE_PLUGIN else ""),
            {"name": [f"must match {NAME_PATTERN}"]},
        )
    installed = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if name in installed:
        raise InvalidInput(
            f"a plugin called {name!r} is already installed ({installed[name]}); choose another name",
            {"name": ["taken by an installed plugin"]},
        )


def variables(name: str, title: str | None = None) -> dict[str, str]:
    from pelago.core import migrate

    specifier = core_specifier()
    return {
        "name": name,
        "package": f"pelago_{name}",
        "dist": f"pelago-{name.replace('_', '-')}",
        "title": title or name.replace("_", " ").capitalize(),
        "core_specifier": specifier,
        "core_requirement": f"pelago-crm{specifier}",
        "core_head": migrate.core_head(),
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
    }


def default_target(name: str) -> Path:
    return Path.cwd() / f"pelago-{name.replace('_', '-')}"


def new_plugin(name: str, target: Path | None = None, title: str | None = None) -> list[Path]:
    """Write the distribution of a new plugin ``name`` into ``target``; returns the files written.

    ``target`` (default ``./pelago-<name>``) must not exist or be empty.
    Raises :class:`~pelago.core.errors.InvalidInput` for a bad or taken name,
    a title that is not one line, or a non-empty target.
    """
    check_name(name)
    if title is not None and (not title.strip() or "\n" in title or '"' in title or "\\" in title):
        raise InvalidInput("the title must be one line of text without quotes or backslashes",
                           {"title": ["one line, no quotes or backslashes"]})
    target = (target or default_target(name)).resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InvalidInput(
            f"{target} already exists and is not an empty folder; choose another with --dir",
            {"dir": ["exists and is not empty"]},
        )
    values = variables(name, title.strip() if title else None)
    rendered = list(_render(files("pelago.hostapp.scaffold") / "templates", Path(), values))
    written = []
    for relative, text in rendered:
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def _render(folder: Traversable, relative: Path, values: dict[str, str]) -> list[tuple[Path, str]]:
    out: list[tuple[Path, str]] = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name == "__pycache__":
            continue
        name = entry.name.replace("__package__", values["package"]).replace("__name__", values["name"])
        if name.startswith("dot-"):
            name = "." + name[len("dot-"):]
        if entry.is_dir():
            out += _render(entry, relative / name, values)
        elif name.endswith(SUFFIX):
            text = Template(entry.read_text(encoding="utf-8")).substitute(values)
            out.append((relative / name[: -len(SUFFIX)], text))
    return out
