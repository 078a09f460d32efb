"""Hook wrappers and pluggy's call monitoring see every decision hook call.

The core asks ``choose_team``, ``choose_owner``, ``check_assign`` and
``check_stage_change`` plugin by plugin (``pelago.core.asking``), each call
through pluggy, and ``exclude_candidates`` as one ordinary hook call; either
way a wrapper (``@hookimpl(wrapper=True)``) and ``pm.add_hookcall_monitoring``
see each call. The ground truth is a count of the calls that reach each
answering implementation, taken below pluggy.
"""

from __future__ import annotations

import functools
import uuid
from collections import Counter
from typing import Any

import pytest

from pelago.core.host import PluginHost
from pelago.core.runtime import Runtime
from pelago.hostapp import Settings, create_app
from tests.conftest import TenantHandle, new_tenant
from tests.plugins import wrapper
from tests.plugins.wrapper import DECISION_HOOKS
from tests.test_routing import add_team, routing_on

ORDERED = ("choose_team", "choose_owner", "check_assign", "check_stage_change")  # asked plugin by plugin


@pytest.fixture
def wrapped(engine, clock, db_url):
    """A tenant on an app whose host has the recorder (answering) and the wrapper plugin, both on.

    Yields the tenant, the host and the implementation calls: ``{(hook, plugin): n}``.
    """
    host = PluginHost(("recorder", "wrapper"), strict=True, extra=[wrapper.plugin])
    reached: Counter[tuple[str, str]] = Counter()
    for hook in DECISION_HOOKS:
        for impl in getattr(host.pm.hook, hook).get_hookimpls():
            if impl.wrapper or impl.hookwrapper:
                continue
            impl.function = _counting(impl.function, reached, hook, impl.plugin_name)
    runtime = Runtime(host, engine, clock=clock, queue_name=f"pelago-test-{uuid.uuid4().hex[:8]}")
    app = create_app(Settings(database_url=db_url), runtime=runtime)
    app.config["TESTING"] = True
    t = new_tenant(app)
    for name in ("recorder", "wrapper"):
        r = t.put(f"/api/v1/plugins/{name}", json={"enabled": True})
        assert r.status_code == 200, r.get_json()
    wrapper.SEEN.clear()
    wrapper.GIVEN.clear()
    return t, host, reached


def _counting(func: Any, reached: Counter[tuple[str, str]], hook: str, plugin: str) -> Any:
    @functools.wraps(func)
    def counted(*args: Any, **kwargs: Any) -> Any:
        reached[(hook, plugin)] += 1
        return func(*args, **kwargs)

    return counted


def _exercise(t: TenantHandle) -> int:
    """Create a routed lead through the API, reassign it, change its stage; returns the lead id."""
    team, reps = add_team(t, "Wrapped", reps=2)
    routing_on(t, team)
    lead = t.lead("13900009901")
    assert lead["owner_id"] in reps
    other = reps[1] if lead["owner_id"] == reps[0] else reps[0]
    r = t.post(f"/api/v1/leads/{lead['id']}/assign", "manager", json={"user_id": other})
    assert r.status_code == 200 and r.get_json()["owner_id"] == other, r.get_json()
    r = t.post(f"/api/v1/leads/{lead['id']}/stage", json={"stage": "contacted"})
    assert r.status_code == 200, r.get_json()
    return lead["id"]


def test_a_wrapper_sees_every_decision_hook_call(wrapped):
    t, _, reached = wrapped
    reached.clear()
    _exercise(t)
    for hook in DECISION_HOOKS:
        assert wrapper.SEEN[hook] > 0, f"the wrapper never saw {hook}"
    for hook in ORDERED:
        # One pluggy call per plugin asked, each wrapped: the recorder answers
        # nothing, so the core is asked after it every time.
        asked = {plugin: n for (h, plugin), n in reached.items() if h == hook}
        assert set(asked) == {"recorder", "core"}, (hook, asked)
        assert wrapper.SEEN[hook] == sum(asked.values()), (hook, asked, wrapper.SEEN[hook])
    # exclude_candidates is one ordinary call that reaches every plugin at once.
    assert wrapper.SEEN["exclude_candidates"] == reached[("exclude_candidates", "core")]
    assert reached[("exclude_candidates", "recorder")] == reached[("exclude_candidates", "core")]
    assert wrapper.SEEN["check_assign"] >= 2 * 2  # routing's assignment and the reassignment, two plugins each


def test_a_wrapper_sees_only_the_calls_of_tenants_that_have_it_on(wrapped):
    t, _, _ = wrapped
    r = t.put("/api/v1/plugins/wrapper", json={"enabled": False})
    assert r.status_code == 200
    _exercise(t)
    assert sum(wrapper.SEEN.values()) == 0


def test_call_monitoring_sees_every_decision_hook_call(wrapped):
    t, host, reached = wrapped
    seen: list[tuple[str, list[str]]] = []

    def before(hook_name: str, hook_impls: Any, kwargs: Any) -> None:
        if hook_name in DECISION_HOOKS:
            seen.append((hook_name, [i.plugin_name for i in hook_impls if not (i.wrapper or i.hookwrapper)]))

    def after(outcome: Any, hook_name: str, hook_impls: Any, kwargs: Any) -> None:
        pass

    undo = host.pm.add_hookcall_monitoring(before, after)
    try:
        reached.clear()
        _exercise(t)
    finally:
        undo()
    for hook in ORDERED:
        calls = [plugins for name, plugins in seen if name == hook]
        # each call reaches one plugin, and the calls are exactly those that reached a plugin
        assert all(len(p) == 1 for p in calls), (hook, calls)
        assert Counter(p[0] for p in calls) == Counter(
            {plugin: n for (h, plugin), n in reached.items() if h == hook}
        ), hook
    excluded = [plugins for name, plugins in seen if name == "exclude_candidates"]
    assert excluded and all(sorted(p) == ["core", "recorder"] for p in excluded)
    assert len(excluded) == reached[("exclude_candidates", "core")]



def test_decision_hooks_are_given_frozen_snapshots_not_orm_objects(wrapped):
    import dataclasses

    from pelago.plugin import Assignment, LeadInfo, TeamInfo, UserInfo

    t, _, _ = wrapped
    _exercise(t)
    kinds = {hook: {type(x) for x in given} for hook, given in wrapper.GIVEN.items()}
    assert kinds == {
        "exclude_candidates": {TeamInfo, UserInfo, LeadInfo},
        "choose_owner": {TeamInfo, UserInfo, LeadInfo},
        "check_assign": {Assignment, LeadInfo, UserInfo},
        "check_stage_change": {LeadInfo},
    }
    for given in wrapper.GIVEN.values():
        for x in given:
            with pytest.raises(dataclasses.FrozenInstanceError):
                x.id = 0  # type: ignore[misc]
