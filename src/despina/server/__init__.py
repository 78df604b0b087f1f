"""The Neptune-compatible HTTP server (``despina serve``): ``create_app(store, settings)``."""

from __future__ import annotations

from despina.server.app import create_app
from despina.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]
