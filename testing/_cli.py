"""The ``pelago`` command line, run in-process on a test's runtime."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from click.testing import Result

    from pelago.core.runtime import Runtime


def invoke_cli(
    runtime: Runtime,
    *args: str,
    input: str | bytes | None = None,
    env: Mapping[str, str | None] | None = None,
    catch_exceptions: bool = False,
) -> Result:
    """Run ``pelago ARGS...`` with click's ``CliRunner`` against ``runtime``; returns click's ``Result``.

    Commands get ``runtime`` itself (its database, plugins, clock and queue).
    The environment is set to match it for the run (``DATABASE_URL``,
    ``PELAGO_PLUGINS`` = its plugins, ``PELAGO_STRICT_PLUGINS=1``, no
    ``REDIS_URL``), so a command that reads its settings from the environment
    sees the same deployment; ``env`` adds or overrides variables (``None``
    removes one). An exception other than a click error propagates
    (``catch_exceptions=False``), so a failing test shows its traceback.
    """
    from click.testing import CliRunner

    from pelago.hostapp.cli import main

    environment: dict[str, str | None] = {
        "DATABASE_URL": runtime.engine.url.render_as_string(hide_password=False),
        "PELAGO_PLUGINS": ",".join(runtime.host.specs),
        "PELAGO_STRICT_PLUGINS": "1",
        "REDIS_URL": None,
        **(env or {}),
    }
    return CliRunner().invoke(
        main, list(args), input=input, env=environment, catch_exceptions=catch_exceptions,
        obj={"runtime": runtime}, prog_name="pelago",
    )
