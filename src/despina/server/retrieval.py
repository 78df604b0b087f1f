"""Retrieval endpoints (placeholder while the query service is written)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from despina.server.auth import Principal
from despina.server.errors import ApiError
from despina.server.settings import ServerSettings
from despina.store.sqlite import Store

__all__ = ["RetrievalService"]


class RetrievalService:
    def __init__(self, store: Store, settings: ServerSettings) -> None:
        self.store = store
        self.settings = settings

    def __getattr__(self, name: str) -> Any:
        def missing(principal: Principal, body: bytes, query: dict[str, str]) -> Response:
            raise ApiError(501, f"{name} is not implemented yet")

        return missing
