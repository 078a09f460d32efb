"""Hooks ``conversions`` adds for adapter plugins (registered through ``PluginSpec.hookspecs``).

An adapter turns one conversion into the request its platform documents
and reads the platform's answer; ``conversions`` does everything else (the
outbox, leases, retries, the guarded HTTP call with ``post_json``). Adapters
are plain plugins: they import only ``pelago.plugin`` and exchange plain
dicts, so a third-party distribution can add a platform (see
``examples/conversions_adapters``). The contract, with every key, is in
docs/plugins/conversions.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pelago.plugin import hookspec

if TYPE_CHECKING:  # pragma: no cover
    from pelago.plugin import HookContext


@hookspec
def conversions_adapters(ctx: HookContext) -> Sequence[Mapping[str, Any]]:
    """The adapters a plugin provides: ``{name, title, config, needs_secret, idempotent}`` each."""


@hookspec(firstresult=True)
def conversions_build_request(
    ctx: HookContext, adapter: str, conversion: Mapping[str, Any], account: Mapping[str, Any]
) -> Mapping[str, Any] | None:
    """The request for one conversion, ``{url, body, headers}``; ``None`` if ``adapter`` is not yours."""


@hookspec(firstresult=True)
def conversions_parse_answer(
    ctx: HookContext, adapter: str, conversion: Mapping[str, Any], status: int, body: bytes
) -> Mapping[str, Any] | None:
    """What the platform answered, ``{outcome, message}``; ``None`` if ``adapter`` is not yours."""
