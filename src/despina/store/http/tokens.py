"""Which API token a call uses, read without loading the HTTP client: a process working on a
local store decides it is local here and never imports ``httpx``."""

from __future__ import annotations

import os
import sys

__all__ = ["TOKEN_VARIABLES", "remote_token", "token_from_environment"]

TOKEN_VARIABLES = ("DESPINA_API_TOKEN", "NEPTUNE_API_TOKEN")
"""Environment variables holding an API token, in the order they are read."""


def token_from_environment() -> str | None:
    """The API token of ``DESPINA_API_TOKEN``, else ``NEPTUNE_API_TOKEN`` (None: neither)."""
    for name in TOKEN_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def remote_token(api_token: str | None, home: object = None, store: object = None) -> str | None:
    """The token a logging object uses, or ``None`` for the local store (the rule of
    docs/remote-logging.md): an ``api_token=`` argument; else none when ``home=``/``store=``
    (or ``despina.query.set_home``/``set_store``) names a local store; else a token set with
    ``despina.query.set_api_token`` or found in the environment."""
    if api_token:
        return api_token
    if home is not None or store is not None:
        return None
    # set_home / set_store / set_api_token live there: not imported, none was called (and a
    # training script's first Run does not pay for importing pandas)
    api = sys.modules.get("despina.query.api")
    if api is None:
        return token_from_environment()
    if getattr(api, "_home", None) is not None or getattr(api, "_store_url", None) is not None:
        return None
    explicit = getattr(api, "explicit_api_token", None)
    if callable(explicit):
        found = explicit()
        if found:
            return str(found)
    return token_from_environment()
