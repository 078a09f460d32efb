"""One error body everywhere: flask-smorest's ``{code, status, message, errors}``."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from flask import Flask, jsonify
from flask_smorest import abort
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm.exc import StaleDataError
from webargs.flaskparser import FlaskParser

from pelago.core.errors import Busy, InvalidInput, PelagoError

from . import strict_input


def body(status: int, message: str, errors: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"code": status, "status": HTTPStatus(status).phrase, "message": message}
    if errors:
        out["errors"] = errors
    return out


class Parser(FlaskParser):
    """Malformed JSON is bad input like any other: 422, with the reason.

    Bodies are read with :func:`strict_input.loads` and query strings checked
    with :func:`strict_input.check_pairs`, so what a database cannot store
    never reaches it.
    """

    DEFAULT_VALIDATION_STATUS = 422

    def _raw_load_json(self, req: Any) -> Any:
        from webargs import core
        from webargs.flaskparser import is_json_request

        if not is_json_request(req):
            return core.missing
        try:
            text = req.get_data(cache=True).decode("utf-8")
        except UnicodeDecodeError:
            abort(422, message="malformed JSON body", errors={"json": {"_schema": ["body is not UTF-8"]}})
        try:
            return strict_input.loads(text)
        except strict_input.BadInput as exc:
            abort(422, message="invalid JSON body", errors={"json": {"_schema": [str(exc)]}})

    def _load_location_data(self, *, schema: Any, req: Any, location: str) -> Any:
        if location == "query":
            try:
                strict_input.check_pairs(req.args.items(multi=True))
            except strict_input.BadInput as exc:
                abort(422, message="invalid query string", errors={"query": {"_schema": [str(exc)]}})
        return super()._load_location_data(schema=schema, req=req, location=location)

    def _handle_invalid_json_error(self, error: Any, req: Any, *args: Any, **kwargs: Any) -> Any:
        abort(422, message="malformed JSON body", errors={"json": {"_schema": ["invalid JSON"]}})


#: SQLSTATE classes and codes of PostgreSQL that say "not now", not "wrong": a
#: lost or refused connection (08), operator intervention such as
#: ``pg_terminate_backend`` or a restart (57P), a serialization failure or
#: deadlock (40), a lock or statement timeout (55P03, 57014).
TRANSIENT_SQLSTATES = ("08", "57P", "40", "55P03", "57014")


def transient(err: OperationalError) -> str | None:
    """Why ``err`` is worth a retry (``"busy"``, ``"unavailable"``), or ``None`` for a real failure.

    A server that cannot be reached raises psycopg's own ``OperationalError``
    with no SQLSTATE. SQLAlchemy marks a connection lost mid-use with
    ``connection_invalidated`` and has already dropped it (and, with it, the pool's older connections, which
    the checkout check of ``core.db.ping_when_in_doubt`` replaces on their next checkout).
    """
    orig = err.orig
    if "database is locked" in str(orig):  # SQLite's lock held by another process past busy_timeout
        return "busy"
    if err.connection_invalidated:
        return "unavailable"
    sqlstate = getattr(orig, "sqlstate", None) or ""
    if not sqlstate and type(orig).__module__.startswith("psycopg") and type(orig).__name__ == "OperationalError":
        return "unavailable"  # raised by the client, not the server: no connection (refused, reset, timed out)
    if sqlstate.startswith(("40", "55P03", "57014")):
        return "busy"
    if sqlstate.startswith(TRANSIENT_SQLSTATES):
        return "unavailable"
    return None


def register(app: Flask) -> None:
    @app.errorhandler(PelagoError)
    def _domain(err: PelagoError) -> Any:
        from .console import html_error

        page = html_error(err)
        if page is not None:  # a console page gets an HTML error page
            return page
        errors: Any = err.errors or None
        if isinstance(err, InvalidInput) and errors:
            errors = {err.location: errors}
        headers = {"Retry-After": str(err.retry_after)} if isinstance(err, Busy) else {}
        return jsonify(body(err.status, err.message, errors)), err.status, headers

    @app.errorhandler(OperationalError)
    def _operational(err: OperationalError) -> Any:
        # Transient: the database went away or refused for now (see transient()).
        # The transaction was rolled back, so nothing of the request was written;
        # the caller may retry. Anything else is a real failure and stays a 500.
        reason = transient(err)
        if reason is None:
            raise err
        app.logger.warning("database %s, answered 503: %s", reason, " ".join(str(err.orig).split())[:300])
        return jsonify(body(503, f"the database is {reason}; try again")), 503, {"Retry-After": "5"}

    @app.errorhandler(IntegrityError)
    def _integrity(err: IntegrityError) -> Any:
        app.logger.info("integrity error answered as 409: %s", err.orig)
        return jsonify(body(409, "conflicts with existing data")), 409

    @app.errorhandler(StaleDataError)
    def _stale(err: StaleDataError) -> Any:
        return jsonify(body(409, "the object changed meanwhile; reload and retry")), 409
