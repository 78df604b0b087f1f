"""despina's own HTTP endpoints (``/api/despina/v1/...``): what the remote clients use where the
neptune protocol is too slow (columnar reads and writes; see ``docs/remote-api.md``).

Each submodule lists its routes; :data:`NATIVE_ROUTES` gathers them for :mod:`despina.server.app`.
Authentication, access checks and error bodies are the same as every other route
(:mod:`despina.server.native.common`).
"""

from __future__ import annotations

from despina.server.native import projects, reads, writes
from despina.server.native.common import NativeRoute

__all__ = ["NATIVE_ROUTES"]

NATIVE_ROUTES: list[NativeRoute] = [*reads.ROUTES, *writes.ROUTES, *projects.ROUTES]
"""Every native route: (method, path, handler)."""
