"""The typed event items (``pelago.core.payloads``) match what the core emits.

Each core event is caused through the API with the recorder plugin on, which
records the items it is delivered; each item must have every required key of
its ``TypedDict``, no key the ``TypedDict`` does not declare, and values of
the declared JSON types. The code that emits is the truth: when this fails,
``payloads.py`` (and the docs generated from it) must change, or the emitter
was changed by mistake.
"""

from __future__ import annotations

import io
import types
import typing
from typing import Any

import pytest

from pelago.core import payloads
from pelago.core.hookspecs import EVENTS
from tests.conftest import TenantHandle, new_tenant
from tests.plugins import recorder
from tests.test_routing import add_team, routing_on

#: the item type of each core event
TYPES: dict[str, Any] = {
    "lead_created": payloads.LeadCreated,
    "lead_merged": payloads.LeadMerged,
    "lead_assigned": payloads.LeadAssigned,
    "lead_released": payloads.LeadReleased,
    "lead_stage_changed": payloads.LeadStageChanged,
    "activity_logged": payloads.ActivityLogged,
    "deal_won": payloads.DealWon,
    "deal_refunded": payloads.DealRefunded,
    "plugin_enabled": payloads.PluginSwitched,
    "plugin_disabled": payloads.PluginSwitched,
    "plugin_settings_changed": payloads.PluginSettingsChanged,
    "person_erased": payloads.PersonErased,
}


def problems(item: dict[str, Any], typed: Any) -> list[str]:
    """What is wrong with ``item`` as a ``typed`` (a ``TypedDict``): missing, unknown or mistyped keys."""
    hints = typing.get_type_hints(typed)
    found = [f"missing {k!r}" for k in sorted(typed.__required_keys__ - set(item))]
    found += [f"unknown {k!r}" for k in sorted(set(item) - set(hints))]
    found += [f"{k!r} = {item[k]!r} is not {hints[k]}" for k in sorted(set(item) & set(hints))
              if not _is(item[k], hints[k])]
    return found


def _is(value: Any, hint: Any) -> bool:
    """Whether the JSON ``value`` is of ``hint`` (``int``, ``str``, ``bool``, ``None``, ``list[X]``, unions)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return any(_is(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if typing.get_origin(hint) is list:
        (inner,) = typing.get_args(hint)
        return isinstance(value, list) and all(_is(v, inner) for v in value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def test_every_core_event_has_a_typed_item():
    assert set(TYPES) == set(EVENTS)
    assert payloads.LeadCreated.__optional_keys__ == {"import_id"}
    assert payloads.LeadAssigned.__optional_keys__ == payloads.LeadReleased.__optional_keys__ == {"pool_id"}


def test_the_checker_finds_missing_unknown_and_mistyped_keys():
    item = {"lead_id": 1, "old": "new", "new": 3, "surprise": True}
    assert problems(item, payloads.LeadStageChanged) == [
        "missing 'lost_reason'", "unknown 'surprise'", "'new' = 3 is not <class 'str'>",
    ]
    assert problems({"plugin": "x", "changed": ["a", 1]}, payloads.PluginSettingsChanged) == [
        "'changed' = ['a', 1] is not list[str]",
    ]
    assert problems({"plugin": "x"}, payloads.PluginSwitched) == []


@pytest.fixture
def driven(make_app) -> TenantHandle:
    """A tenant where every core event happened at least once, through the API, with the recorder on."""
    t = new_tenant(make_app(("recorder", "needs_recorder")))
    recorder.CALLS.clear()
    ok = (200, 201, 202)

    def check(r: Any) -> Any:
        assert r.status_code in ok, r.get_json()
        return r.get_json()

    check(t.put("/api/v1/plugins/recorder", json={"enabled": True}))
    check(t.put("/api/v1/plugins/recorder", json={"settings": {"threshold": 20}}))  # plugin_settings_changed
    check(t.put("/api/v1/plugins/needs_recorder", json={"enabled": True}))  # plugin_enabled, to the recorder
    check(t.put("/api/v1/plugins/needs_recorder", json={"enabled": False}))  # plugin_disabled
    plain = t.lead("13800138701", source="ads")  # lead_created, unowned
    t.lead("13800138701", email="x@example.com")  # lead_merged
    team, reps = add_team(t, "Payloads", reps=2)
    routing_on(t, team)
    routed = t.lead("13800138702", email="routed@example.com")  # lead_created and lead_assigned (created)
    assert routed["owner_id"] in reps
    check(t.post(f"/api/v1/leads/{plain['id']}/assign", "manager", json={"user_id": reps[0]}))  # lead_assigned
    check(t.post(f"/api/v1/leads/{plain['id']}/assign", "manager", json={"user_id": None}))  # lead_released
    check(t.post(f"/api/v1/leads/{plain['id']}/stage", json={"stage": "contacted"}))  # lead_stage_changed
    check(t.post(f"/api/v1/leads/{plain['id']}/stage", json={"stage": "lost", "lost_reason": "price"}))
    check(t.post(f"/api/v1/leads/{routed['id']}/activities", json={"kind": "call", "note": "hi"}))
    deal = check(t.post(f"/api/v1/leads/{routed['id']}/deals", json={"amount": "100.00", "product": "x"}))
    check(t.post(f"/api/v1/deals/{deal['id']}/refunds", json={"amount": "30.00", "reason": "partial"}))
    csv = b"name,phone\nImported,13800138703\n"
    check(t.post("/api/v1/imports", data={"file": (io.BytesIO(csv), "leads.csv")},
                 content_type="multipart/form-data"))  # lead_created with import_id
    erased = t.lead("13800138704", email="erase-me@example.com")
    done = check(t.post("/api/v1/privacy/erasures", json={"phone": "13800138704", "reason": "asked"}))
    assert done["lead_ids"] == [erased["id"]]  # person_erased
    return t


def test_emitted_items_match_their_typed_dicts(driven):
    t = driven
    seen: dict[str, list[dict[str, Any]]] = {}
    for name in EVENTS:
        seen[name] = [item for call in recorder.calls(name, t.id) for item in call["items"]]
    assert [name for name in EVENTS if not seen[name]] == []  # every event happened
    wrong = {
        f"{name}[{k}]": found
        for name, items in seen.items() for k, item in enumerate(items)
        if (found := problems(item, TYPES[name]))
    }
    assert wrong == {}
    # The optional keys are exercised too: an import's lead_created carries import_id.
    assert any("import_id" in item for item in seen["lead_created"])
    assert any(item["lost_reason"] == "price" for item in seen["lead_stage_changed"])


def test_erased_lead_ids_are_distinct_ints_in_order():
    """``pelago.plugin.erased_lead_ids``: what every plugin's person_erased works on, read one way."""
    from pelago.plugin import erased_lead_ids

    assert erased_lead_ids(({"lead_id": 9}, {"lead_id": 3}, {"lead_id": "9"}, {"lead_id": 12})) == [3, 9, 12]
    assert erased_lead_ids(()) == []
