"""Asking the ``check_*`` hooks, so that a refusal names the plugin that refused."""

from __future__ import annotations

from typing import Any

from .context import HookContext
from .errors import Vetoed


def first_veto(ctx: HookContext, hook: str, /, **kwargs: Any) -> tuple[str, str] | None:
    """``(plugin, message)`` of the first plugin that refuses, in call order, else ``None``.

    The implementations of the tenant's plugins are asked one by one (pluggy's
    order: first listed in ``PELAGO_PLUGINS`` first, the core's ``trylast``
    last) and the first non-empty answer wins. Asking them one by one rather
    than through ``pm.hook`` is what lets the refusal say who refused.
    """
    kwargs = {"ctx": ctx, **kwargs}
    caller = getattr(ctx.hooks, hook)
    for impl in reversed(caller.get_hookimpls()):
        if impl.hookwrapper or impl.wrapper:
            continue  # wrappers wrap the call; they do not answer it
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
