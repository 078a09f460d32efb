"""Test plugin: a hook wrapper (``@hookimpl(wrapper=True)``) on the five decision hooks.

It answers nothing; it counts the calls it sees, to prove that the core asks
decision hooks through pluggy (so wrappers see every call, as they would
``ctx.hooks.<name>(...)``). Not an installed entry point: tests hand its spec
to ``PluginHost(..., extra=[plugin])``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator
from typing import Any

from pelago.plugin import PluginSpec, hookimpl

DECISION_HOOKS = ("choose_team", "exclude_candidates", "choose_owner", "check_assign", "check_stage_change")
SEEN: Counter[str] = Counter()
#: the objects each hook was given, to check they are snapshots: ``{hook: [arguments]}``
GIVEN: dict[str, list[Any]] = {}


class Hooks:
    @hookimpl(wrapper=True)
    def choose_team(self, ctx: Any, leads: Any) -> Generator[None, Any, Any]:
        SEEN["choose_team"] += 1
        return (yield)

    @hookimpl(wrapper=True)
    def exclude_candidates(self, ctx: Any, team: Any, candidates: Any, leads: Any) -> Generator[None, Any, Any]:
        SEEN["exclude_candidates"] += 1
        GIVEN.setdefault("exclude_candidates", []).extend([team, *candidates, *leads])
        return (yield)

    @hookimpl(wrapper=True)
    def choose_owner(self, ctx: Any, team: Any, candidates: Any, leads: Any) -> Generator[None, Any, Any]:
        SEEN["choose_owner"] += 1
        GIVEN.setdefault("choose_owner", []).extend([team, *candidates, *leads])
        return (yield)

    @hookimpl(wrapper=True)
    def check_assign(self, ctx: Any, assignments: Any) -> Generator[None, Any, Any]:
        SEEN["check_assign"] += 1
        GIVEN.setdefault("check_assign", []).extend(
            [x for a in assignments for x in (a, a.lead, a.user) if x is not None])
        return (yield)

    @hookimpl(wrapper=True)
    def check_stage_change(self, ctx: Any, lead: Any, old: str, new: str) -> Generator[None, Any, Any]:
        SEEN["check_stage_change"] += 1
        GIVEN.setdefault("check_stage_change", []).append(lead)
        return (yield)


plugin = PluginSpec(
    name="wrapper",
    title="Wrapper (test)",
    description="Counts the decision hook calls it wraps.",
    hooks=Hooks(),
)
