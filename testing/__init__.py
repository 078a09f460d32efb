"""``pelago.testing``: test a Pelago plugin against a real, migrated database.

A pytest plugin (installed with Pelago, loaded by pytest automatically) with
fixtures for the database of the run, apps and runtimes with chosen plugins,
tenants with a client per role, a frozen clock and the CLI, plus the helpers
below. docs/testing.md describes the fixtures and options.
"""

from __future__ import annotations

from ._cli import invoke_cli as invoke_cli
from ._console import ConsoleClient as ConsoleClient
from ._console import csrf_of as csrf_of
from ._jobs import deliver_events as deliver_events
from ._jobs import run_periodic as run_periodic
from ._jobs import scheduler_tick as scheduler_tick
from ._routes import check_routes as check_routes
from ._schema import assert_models_match_migrations as assert_models_match_migrations
from ._schema import assert_tenant_distributable as assert_tenant_distributable
from ._tenants import TenantHandle as TenantHandle
from ._tenants import new_tenant as new_tenant

__all__ = [
    # tenants and their clients
    "new_tenant",
    "TenantHandle",
    # the web console, signed in
    "ConsoleClient",
    "csrf_of",
    # running now what a worker, the scheduler or a shell would run
    "deliver_events",
    "run_periodic",
    "scheduler_tick",
    "invoke_cli",
    # checks
    "assert_models_match_migrations",
    "assert_tenant_distributable",
    "check_routes",
]
