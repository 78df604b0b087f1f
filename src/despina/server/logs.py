"""Structured request logs: one JSON line per request on the ``despina.server.access`` logger.

Each line carries ``method``, ``path`` (without the query string: signed URLs carry their
signature there), ``status``, ``ms`` (wall time), ``in``/``out`` (body bytes) and ``client``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["AccessLogMiddleware", "JsonFormatter", "configure_logging"]

access_logger = logging.getLogger("despina.server.access")


class AccessLogMiddleware:
    """Pure ASGI middleware (no body buffering) that logs every HTTP request once."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not access_logger.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        state: dict[str, int] = {"status": 0, "in": 0, "out": 0}

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["in"] += len(message.get("body", b""))
            return message

        async def logging_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = int(message["status"])
            elif message["type"] == "http.response.body":
                state["out"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, logging_send)
        finally:
            client = scope.get("client")
            access_logger.info(
                "request",
                extra={
                    "fields": {
                        "method": scope.get("method", ""),
                        "path": scope.get("root_path", "") + scope.get("path", ""),
                        "status": state["status"] or 500,
                        "ms": round((time.perf_counter() - start) * 1000, 2),
                        "in": state["in"],
                        "out": state["out"],
                        "client": f"{client[0]}:{client[1]}" if client else None,
                    }
                },
            )


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...fields}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            data.update(fields)
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def configure_logging(level: int = logging.INFO, access: bool = True) -> None:
    """Send despina's and uvicorn's logs to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("despina", "uvicorn", "uvicorn.error"):
        target = logging.getLogger(name)
        target.handlers[:] = [handler]
        target.setLevel(level)
        target.propagate = False
    access_logger.setLevel(logging.INFO if access else logging.WARNING)
