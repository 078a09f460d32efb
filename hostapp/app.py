"""The Flask app factory: the core API plus every deployed plugin's blueprint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask, jsonify, redirect, send_from_directory
from flask_smorest import Api, abort

from pelago.core import __version__
from pelago.core.clock import Clock, system_clock
from pelago.core.db import make_engine
from pelago.core.host import PluginHost
from pelago.core.retention import Retention
from pelago.core.runtime import Runtime

from . import auth, console, errors, limits
from .api import core_blueprints
from .config import Settings

MAX_ID = 2**63 - 1


class PelagoApi(Api):
    """flask-smorest's Api; every error body also carries a ``message``."""

    def handle_http_exception(self, error: Any) -> Any:
        from .console import html_error

        page = html_error(error)
        if page is not None:  # the console answers with a page, not a JSON body
            return page
        payload, code, headers = super().handle_http_exception(error)
        if "message" not in payload:
            payload["message"] = "invalid input" if code == 422 else (error.description or error.name)
        return payload, code, headers


def build_runtime(
    settings: Settings, *, clock: Clock = system_clock, host: PluginHost | None = None, background: bool = False
) -> Runtime:
    """The runtime of an app, a worker or a command, from the same settings.

    ``background``: the embedded server's jobs run on a thread, off the request path.
    """
    host = host or PluginHost(settings.plugins, strict=settings.strict_plugins)
    engine = make_engine(settings.database_url, write_wait=settings.sqlite_write_wait)
    retention = Retention(done_days=settings.retention_days, failed_days=settings.retention_failed_days)
    return Runtime(host, engine, redis_url=settings.redis_url, clock=clock, background=background,
                   retention=retention)


class Readiness:
    """What ``/readyz`` checks: the database answers and is at the deployed heads; Redis answers if configured.

    Each problem is one line for an operator. Errors are named by type and
    the first line of their message only (no traceback, no URL).
    """

    def __init__(self, runtime: Runtime, settings: Settings) -> None:
        from pelago.core.migrate import SchemaCheck

        self.runtime = runtime
        self.schema = SchemaCheck(runtime.engine, runtime.host)
        self.redis_url = settings.redis_url
        self._redis: Any = None

    def problems(self) -> list[str]:
        out: list[str] = []
        try:
            missing = self.schema.pending()
        except Exception as exc:  # noqa: BLE001 - any failure to read the schema means not ready
            self.runtime.log.warning("readiness: database check failed: %s", exc)
            out.append(f"database unreachable: {_short(exc)}")
        else:
            if missing:
                out.append("database schema is not at head: " + ", ".join(self.schema.describe(missing))
                           + " not applied (run `pelago db upgrade`)")
        if self.redis_url:
            try:
                if self._redis is None:
                    from redis import Redis

                    self._redis = Redis.from_url(self.redis_url, socket_connect_timeout=2, socket_timeout=2)
                self._redis.ping()
            except Exception as exc:  # noqa: BLE001 - same: Redis configured but not answering
                self.runtime.log.warning("readiness: Redis check failed: %s", exc)
                out.append(f"redis unreachable: {_short(exc)}")
        return out


def _short(exc: BaseException) -> str:
    """``Type: first line of the driver's message`` (at most 200 characters); never the URL, so no password."""
    from sqlalchemy.exc import DBAPIError

    message = str(exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc)
    first = (message.strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}"[:200]


def create_app(
    settings: Settings | None = None, *, clock: Clock = system_clock, runtime: Runtime | None = None
) -> Flask:
    settings = settings or Settings.from_env()
    runtime = runtime or build_runtime(settings, clock=clock, background=True)
    root = Path(__file__).parent
    # Explicit paths: ``pelago`` is a namespace package, which Flask cannot locate.
    app = Flask("pelago.hostapp", root_path=str(root), instance_path=str(Path.cwd() / "instance"))
    app.config.update(
        API_TITLE="Pelago",
        API_VERSION=__version__,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        # Swagger UI's files come from the swagger-ui-bundle package: the docs
        # work on a machine with no internet access.
        OPENAPI_SWAGGER_UI_URL="/api/swagger-ui/",
        MAX_CONTENT_LENGTH=settings.max_content_length,
        JSON_SORT_KEYS=False,
        API_SPEC_OPTIONS={
            "info": {"description": "Pelago CRM core API. Authenticate with `Authorization: Bearer <key>`."},
            "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearerAuth": []}],
        },
    )
    app.extensions["pelago"] = runtime
    app.extensions["pelago_settings"] = settings
    api = PelagoApi(app)
    from .api.schemas import MoneyString

    api.ma_plugin.map_to_openapi_type(MoneyString, "string", "decimal")

    @app.url_value_preprocessor
    def _ids_fit(_endpoint: str | None, values: dict[str, Any] | None) -> None:
        # An id past BIGINT cannot exist: 404 here, not an overflow in the database.
        for value in (values or {}).values():
            if isinstance(value, int) and value > MAX_ID:
                abort(404, message="not found")
    for blp in core_blueprints():
        api.register_blueprint(blp)
    plugin_blueprints: dict[str, str] = {}
    for spec in runtime.host.specs.values():
        if spec.blueprint is not None:
            api.register_blueprint(spec.blueprint, url_prefix=f"/api/v1/{spec.name}")
            plugin_blueprints[spec.blueprint.name] = spec.name
    errors.register(app)
    auth.install(app, plugin_blueprints)
    console.install(app, runtime)
    limits.install(app, runtime, settings)

    app.json.ensure_ascii = False  # type: ignore[attr-defined]  # 张伟, not \u5f20\u4f1f

    @app.get("/api/swagger-ui/<path:filename>")
    def _swagger_ui(filename: str) -> Any:
        import swagger_ui_bundle

        return send_from_directory(swagger_ui_bundle.swagger_ui_path, filename, max_age=86400)

    @app.get("/")
    def _root() -> Any:
        return redirect("/api/docs")

    @app.get("/healthz")
    def _health() -> Any:
        """Liveness: the process is up (it asks nothing of the database or Redis)."""
        return jsonify({"status": "ok", "version": __version__, "plugins": list(runtime.host.specs)})

    readiness = Readiness(runtime, settings)

    @app.get("/readyz")
    def _ready() -> Any:
        """Readiness: 200 when requests can be served, else 503 with the reasons."""
        problems = readiness.problems()
        status = "ready" if not problems else "not ready"
        return jsonify({"status": status, "version": __version__, "problems": problems}), 503 if problems else 200

    return app
