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


def register(app: Flask) -> None:
    @app.errorhandler(PelagoError)
    def _domain(err: PelagoError) -> Any:
        errors: Any = err.errors or None
        if isinstance(err, InvalidInput) and errors:
            errors = {err.location: errors}
        headers = {"Retry-After": str(err.retry_after)} if isinstance(err, Busy) else {}
        return jsonify(body(err.status, err.message, errors)), err.status, headers

    @app.errorhandler(OperationalError)
    def _operational(err: OperationalError) -> Any:
        # SQLite's lock held by another process (a CLI import, say) past busy_timeout:
        # busy, not broken. Anything else is a real failure and stays a 500.
        if "database is locked" in str(err.orig):
            app.logger.warning("SQLite busy past its timeout: %s", err.orig)
            return jsonify(body(503, "the database is busy; try again")), 503, {"Retry-After": "5"}
        raise err

    @app.errorhandler(IntegrityError)
    def _integrity(err: IntegrityError) -> Any:
        app.logger.info("integrity error answered as 409: %s", err.orig)
        return jsonify(body(409, "conflicts with existing data")), 409

    @app.errorhandler(StaleDataError)
    def _stale(err: StaleDataError) -> Any:
        return jsonify(body(409, "the object changed meanwhile; reload and retry")), 409
