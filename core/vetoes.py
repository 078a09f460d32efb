"""Asking the ``check_*`` hooks, so that a refusal names the plugin that refused.

The plugins are asked in call order through :mod:`pelago.core.asking` (so
hook wrappers see each call); the first refusal wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .asking import answering, ask_in_order, refusals
from .context import HookContext
from .errors import Vetoed

if TYPE_CHECKING:  # pragma: no cover
    from .routing import Assignment


def first_veto(ctx: HookContext, hook: str, /, **kwargs: Any) -> tuple[str, str] | None:
    """``(plugin, message)`` of the first plugin that refuses (a hook answering a message), else ``None``."""
    veto: list[tuple[str, str]] = []

    def settle(plugin: str, items: list[int], message: Any) -> list[int]:
        if message:
            veto.append((plugin, str(message)))
            return items  # refused: nobody else is asked
        return []

    ask_in_order(ctx, hook, [0], lambda _: kwargs, settle)
    return veto[0] if veto else None


def refuse_if_vetoed(ctx: HookContext, hook: str, /, **kwargs: Any) -> None:
    """Raise :class:`~pelago.core.errors.Vetoed` (409) with the first refusal."""
    veto = first_veto(ctx, hook, **kwargs)
    if veto is not None:
        plugin, message = veto
        raise Vetoed(message, plugin)


def vetoes_needed(ctx: HookContext, skip: str | None = None) -> bool:
    """Whether any plugin on for the tenant (other than ``skip``) implements ``check_assign``."""
    return bool(answering(ctx, "check_assign", skip))


def vetoes(ctx: HookContext, assignments: Sequence[Assignment], skip: str | None = None) -> dict[int, tuple[str, str]]:
    """``{index: (plugin, message)}`` of the refused ``assignments``, asked as one batch.

    Each plugin, in call order, is called once with the assignments no earlier
    plugin refused and answers ``{index in what it was given: message}``.
    ``skip`` names a plugin not to ask: the one asking, when it has applied
    its own rules already.
    """
    if not assignments:
        return {}
    return refusals(
        ctx, "check_assign", range(len(assignments)),
        lambda items: {"assignments": [assignments[i] for i in items]}, skip=skip,
    )


def refuse_assignment_if_vetoed(ctx: HookContext, assignment: Assignment) -> None:
    """Raise :class:`~pelago.core.errors.Vetoed` (409) if any plugin refuses ``assignment``."""
    refused = vetoes(ctx, [assignment])
    if refused:
        plugin, message = refused[0]
        raise Vetoed(message, plugin)
