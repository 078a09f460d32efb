"""One error body everywhere: flask-smorest's ``{code, status, message, errors}``."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from flask import Flask, jsonify
from flask_smorest import abort
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from webargs.flaskparser import FlaskParser

from pelago.core.errors import InvalidInput, PelagoError


def body(status: int, message: str, errors: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"code": status, "status": HTTPStatus(status).phrase, "message": message}
    if errors:
        out["errors"] = errors
    return out


class Parser(FlaskParser):
    """Malformed JSON is bad input like any other: 422, with the reason."""

    DEFAULT_VALIDATION_STATUS = 422

    def _handle_invalid_json_error(self, error: Any, req: Any, *args: Any, **kwargs: Any) -> Any:
        abort(422, message="malformed JSON body", errors={"json": {"_schema": ["invalid JSON"]}})


def register(app: Flask) -> None:
    @app.errorhandler(PelagoError)
    def _domain(err: PelagoError) -> Any:
        errors: Any = err.errors or None
        if isinstance(err, InvalidInput) and errors:
            errors = {err.location: errors}
        return jsonify(body(err.status, err.message, errors)), err.status

    @app.errorhandler(IntegrityError)
    def _integrity(err: IntegrityError) -> Any:
        app.logger.info("integrity error answered as 409: %s", err.orig)
        return jsonify(body(409, "conflicts with existing data")), 409

    @app.errorhandler(StaleDataError)
    def _stale(err: StaleDataError) -> Any:
        return jsonify(body(409, "the object changed meanwhile; reload and retry")), 409
