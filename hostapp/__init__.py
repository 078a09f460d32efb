"""pelago.hostapp: the Flask app, its configuration, the CLI and the demo."""

from .app import build_runtime, create_app
from .config import Settings

__all__ = ["Settings", "build_runtime", "create_app"]
