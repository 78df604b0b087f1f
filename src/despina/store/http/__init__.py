"""The HTTP store: the store contract served by a ``despina serve`` over HTTP.

With an API token (``api_token=``, ``despina.query.set_api_token()``, ``DESPINA_API_TOKEN`` or
``NEPTUNE_API_TOKEN``), ``despina.Run``, ``despina.query`` and ``despina.init_project`` read and
write through the server the token names instead of a local store: reads as columnar batches
(Arrow IPC), writes through a durable local queue sent in batches (see ``docs/remote-api.md``).
"""

from __future__ import annotations

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
