"""Domain errors: raised by services, mapped to HTTP statuses by the host app.

Services never import Flask; these exceptions carry just enough for the API
layer (and the CLI) to answer clearly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class PelagoError(Exception):
    """Base of every error a caller is meant to see."""

    status = 400

    def __init__(self, message: str, errors: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = dict(errors or {})


class InvalidInput(PelagoError):
    """Bad input: 422 with field errors, nothing written.

    ``location`` says where the fields were (``json`` body or ``query``), as
    in flask-smorest's own validation errors.
    """

    status = 422

    def __init__(self, message: str, errors: Mapping[str, Any] | None = None, location: str = "json") -> None:
        super().__init__(message, errors)
        self.location = location


class NotFound(PelagoError):
    """Unknown object, or another tenant's (which is the same thing to the caller)."""

    status = 404


class Conflict(PelagoError):
    """A lost race or a state that forbids the change (stale version, lost claim)."""

    status = 409


class Forbidden(PelagoError):
    """The caller's role is too low for this action."""

    status = 403


class Vetoed(Conflict):
    """A plugin's check_* hook refused the change; the message is the plugin's."""

    def __init__(self, message: str, plugin: str | None = None) -> None:
        super().__init__(message, {"plugin": plugin} if plugin else None)
        self.plugin = plugin


class Busy(PelagoError):
    """The database is busy past the wait the server allows: 503 with ``Retry-After``, nothing written."""

    status = 503

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(Busy):
    """Too many requests from one sender or for one channel in a window: 429 with ``Retry-After``."""

    status = 429


class PluginConfigError(RuntimeError):
    """The deployment's plugin set is unusable (unknown name, missing requirement)."""
