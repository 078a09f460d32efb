"""``/api/v1/routing``: the tenant's routing settings and rules, and the preview."""

from __future__ import annotations

from typing import Any

from pelago.core.services import routing as svc

from ..auth import commit, ctx, requires
from . import Blueprint
from . import schemas as s

blp = Blueprint(
    "routing", __name__, url_prefix="/api/v1/routing",
    description="Which team and rep get a new lead: settings, rules, and a preview that writes nothing",
)


@blp.route("/settings", methods=["GET"])
@blp.response(200, s.RoutingSettings)
@requires("manager")
def show_settings() -> Any:
    """Read the tenant's routing settings (managers).

    `auto_routing`, `default_team_id`, `handoff_enabled` and
    `repurchase_team_id`; all off by default.
    """
    return svc.get_settings(ctx())


@blp.route("/settings", methods=["PATCH"])
@blp.arguments(s.RoutingSettingsPatch)
@blp.response(200, s.RoutingSettings)
@requires("admin")
def patch_settings(data: dict[str, Any]) -> Any:
    """Change the tenant's routing settings (admins).

    Teams must be the tenant's (else 422); hand-off needs a repurchase team.
    """
    row = svc.update_settings(ctx(), data)
    commit()
    return row


@blp.route("/rules", methods=["GET"])
@blp.response(200, s.RuleList)
@requires("manager")
def list_rules() -> Any:
    """List the routing rules in the order they run (managers).

    By `priority`, then age. The first matching rule picks the team.
    """
    return {"items": svc.list_rules(ctx())}


@blp.route("/rules", methods=["POST"])
@blp.arguments(s.RuleArgs)
@blp.response(201, s.Rule)
@requires("admin")
def create_rule(data: dict[str, Any]) -> Any:
    """Create a routing rule (admins).

    `match` lists values of `channel`, `source`, `region` or `product`; a lead
    matching every listed field goes to `team_id`. A duplicate name is a 409.
    """
    rule = svc.save_rule(ctx(), data)
    commit()
    return rule


@blp.route("/rules/<int:rule_id>", methods=["GET"])
@blp.response(200, s.Rule)
@requires("manager")
def show_rule(rule_id: int) -> Any:
    """Read one routing rule (managers).

    Another tenant's rule is a 404.
    """
    return svc.get_rule(ctx(), rule_id)


@blp.route("/rules/<int:rule_id>", methods=["PATCH"])
@blp.arguments(s.RulePatch)
@blp.response(200, s.Rule)
@requires("admin")
def patch_rule(data: dict[str, Any], rule_id: int) -> Any:
    """Change a routing rule (admins).

    Any of `name`, `priority`, `active`, `match` and `team_id`; a duplicate
    name is a 409.
    """
    c = ctx()
    rule = svc.save_rule(c, data, svc.get_rule(c, rule_id))
    commit()
    return rule


@blp.route("/rules/<int:rule_id>", methods=["DELETE"])
@blp.response(204)
@requires("admin")
def delete_rule(rule_id: int) -> None:
    """Delete a routing rule (admins).

    `204`. Ledger rows that name the rule keep its name.
    """
    c = ctx()
    svc.delete_rule(c, svc.get_rule(c, rule_id))
    commit()


@blp.route("/preview", methods=["POST"])
@blp.arguments(s.PreviewArgs)
@blp.response(200, s.Preview)
@requires("manager")
def preview(data: dict[str, Any]) -> Any:
    """Route a hypothetical lead exactly as intake would, and write nothing.

    Answers the duplicate it would merge into, or the team, owner and rule
    routing would choose, with the explanation of every step (managers).
    """
    return svc.preview(ctx(), data)
