"""The HTTP store: the store contract served by a ``despina serve`` over HTTP.

With an API token (``api_token=``, ``despina.query.set_api_token()``, ``DESPINA_API_TOKEN`` or
``NEPTUNE_API_TOKEN``), ``despina.Run``, ``despina.query`` and ``despina.init_project`` read and
write through the server the token names instead of a local store: reads as columnar batches
(Arrow IPC), writes through a durable local queue sent in batches (see ``docs/remote-api.md``).

The names below load on first use, so that a process using only a local store (or importing
the queue module) does not pay for the HTTP client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from despina.store.http.connection import (
        ServerConnection,
        ServerUnreachable,
        TokenRefused,
        connection_for,
        server_of_token,
        token_from_environment,
    )

__all__ = [
    "ServerConnection",
    "ServerUnreachable",
    "TokenRefused",
    "connection_for",
    "server_of_token",
    "token_from_environment",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("despina.store.http.connection"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
