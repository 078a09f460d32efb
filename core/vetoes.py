"""Asking the ``check_*`` hooks, so that a refusal names the plugin that refused."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .context import HookContext
from .errors import Vetoed

if TYPE_CHECKING:  # pragma: no cover
    from .routing import Assignment


def first_veto(ctx: HookContext, hook: str, /, **kwargs: Any) -> tuple[str, str] | None:
    """``(plugin, message)`` of the first plugin that refuses, in call order, else ``None``.

    The implementations of the tenant's plugins are asked one by one (pluggy's
    order: first listed in ``PELAGO_PLUGINS`` first, the core's ``trylast``
    last) and the first non-empty answer wins. Asking them one by one rather
    than through ``pm.hook`` is what lets the refusal say who refused.
    """
    kwargs = {"ctx": ctx, **kwargs}
    for impl in _answering(ctx, hook):
        message = impl.function(*(kwargs[name] for name in impl.argnames))
        if message:
            return impl.plugin_name, str(message)
    return None


def refuse_if_vetoed(ctx: HookContext, hook: str, /, **kwargs: Any) -> None:
    """Raise :class:`~pelago.core.errors.Vetoed` (409) with the first refusal."""
    veto = first_veto(ctx, hook, **kwargs)
    if veto is not None:
        plugin, message = veto
        raise Vetoed(message, plugin)


def _answering(ctx: HookContext, hook: str, skip: str | None = None) -> list[Any]:
    """The implementations of ``hook`` that answer it, in call order (wrappers wrap; ``skip`` is not asked)."""
    return [impl for impl in reversed(getattr(ctx.hooks, hook).get_hookimpls())
            if not (impl.hookwrapper or impl.wrapper) and impl.plugin_name != skip]


def vetoes_needed(ctx: HookContext, skip: str | None = None) -> bool:
    """Whether any plugin on for the tenant (other than ``skip``) implements ``check_assign``."""
    return bool(_answering(ctx, "check_assign", skip))


def vetoes(ctx: HookContext, assignments: Sequence[Assignment], skip: str | None = None) -> dict[int, tuple[str, str]]:
    """``{index: (plugin, message)}`` of the refused ``assignments``, asked as one batch.

    Each plugin, in call order, is called once with the assignments no earlier
    plugin refused and answers ``{index in what it was given: message}``.
    ``skip`` names a plugin not to ask: the one asking, when it has applied
    its own rules already.
    """
    refused: dict[int, tuple[str, str]] = {}
    pending = list(range(len(assignments)))
    for impl in _answering(ctx, "check_assign", skip):
        if not pending:
            break
        kwargs = {"ctx": ctx, "assignments": [assignments[i] for i in pending]}
        answer = impl.function(*(kwargs[name] for name in impl.argnames)) or {}
        for k, message in answer.items():
            if message and 0 <= int(k) < len(pending):
                refused[pending[int(k)]] = (impl.plugin_name, str(message))
        pending = [i for i in pending if i not in refused]
    return refused


def refuse_assignment_if_vetoed(ctx: HookContext, assignment: Assignment) -> None:
    """Raise :class:`~pelago.core.errors.Vetoed` (409) if any plugin refuses ``assignment``."""
    refused = vetoes(ctx, [assignment])
    if refused:
        plugin, message = refused[0]
        raise Vetoed(message, plugin)
