"""Native writes endpoints (see the package docstring)."""

from __future__ import annotations

from despina.server.native.common import NativeRoute

__all__ = ["ROUTES"]

ROUTES: list[NativeRoute] = []
