"""Asking decision hooks plugin by plugin, through pluggy.

Batch decision hooks are asked in call order (the first plugin listed in
``PELAGO_PLUGINS`` first, the core's ``trylast`` answers last), each plugin
with only the items no earlier plugin answered, so that an answer can be
traced to the plugin that gave it. Each plugin is still called *through*
pluggy — a subset hook caller holding that plugin's implementation and every
wrapper — so hook wrappers and ``add_hookcall_monitoring`` see every call,
exactly as they see ``ctx.hooks.<name>(...)``.

Every ordered question the core asks (``choose_team``, ``choose_owner``,
``check_assign``, ``check_stage_change``) goes through :func:`ask_in_order`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .context import HookContext

CORE_PLUGIN = "core"  # the core's own answers (pelago.core.default_plugin), always on
KwargsFor = Callable[[list[int]], Mapping[str, Any]]
#: ``settle(plugin, items asked, answer) -> items settled``
Settle = Callable[[str, list[int], Any], Sequence[int]]


def answering(ctx: HookContext, hook: str, skip: str | None = None) -> list[str]:
    """Plugins on for the tenant that answer ``hook`` (wrappers excluded), in call order."""
    enabled = ctx.tenant.enabled
    return [n for n in ctx.host.answering(hook) if n != skip and (n == CORE_PLUGIN or n in enabled)]


def ask_in_order(
    ctx: HookContext, hook: str, pending: Sequence[int], kwargs_for: KwargsFor, settle: Settle, *,
    skip: str | None = None,
) -> None:
    """Ask ``hook`` plugin by plugin, each about the items no earlier plugin settled.

    ``pending`` are the caller's item indexes; ``kwargs_for(items)`` gives the
    hook's arguments for those items (``ctx`` is added). Each answer goes to
    ``settle(plugin, items asked, answer)``, which returns the items that
    answer settles; later plugins are asked only about the rest, and asking
    stops when none is left. A plugin answering ``None`` is skipped. ``skip``
    names a plugin not to ask (the one asking).
    """
    left = list(pending)
    disabled = ctx.host.disabled_for(ctx.tenant)
    for plugin in answering(ctx, hook, skip):
        if not left:
            return
        results = ctx.host.asker(hook, plugin, disabled)(ctx=ctx, **kwargs_for(left))
        if not results:  # pluggy leaves out a None answer
            continue
        done = set(settle(plugin, left, results[0]))
        if done:
            left = [i for i in left if i not in done]


def first_answers(
    ctx: HookContext, hook: str, pending: Sequence[int], kwargs_for: KwargsFor,
) -> list[tuple[int, Any]]:
    """For batch ``choose_*`` hooks: one answer per item asked (``None`` = no opinion); the first wins.

    Returns ``(item, answer)`` pairs. A plugin returning a list of the wrong
    length is a bug in that plugin and raises ``ValueError`` naming it.
    """
    answers: list[tuple[int, Any]] = []

    def settle(plugin: str, items: list[int], result: Any) -> list[int]:
        result = list(result)
        if len(result) != len(items):
            raise ValueError(f"{plugin}.{hook} returned {len(result)} answers for {len(items)} leads")
        given = [(item, answer) for item, answer in zip(items, result, strict=True) if answer is not None]
        answers.extend(given)
        return [item for item, _ in given]

    ask_in_order(ctx, hook, pending, kwargs_for, settle)
    return answers


def refusals(
    ctx: HookContext, hook: str, pending: Sequence[int], kwargs_for: KwargsFor, *, skip: str | None = None,
) -> dict[int, tuple[str, str]]:
    """For batch ``check_*`` hooks answering ``{index in what it was given: message}``.

    Returns ``{item: (plugin, message)}``; the first refusal of an item wins
    and later plugins are not asked about it.
    """
    refused: dict[int, tuple[str, str]] = {}

    def settle(plugin: str, items: list[int], answer: Any) -> list[int]:
        now = {items[int(k)]: (plugin, str(message)) for k, message in (answer or {}).items()
               if message and 0 <= int(k) < len(items)}
        refused.update(now)
        return list(now)

    ask_in_order(ctx, hook, pending, kwargs_for, settle, skip=skip)
    return refused
