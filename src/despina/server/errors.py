"""The one error shape of the server, and the handlers that produce it.

Every non-2xx answer has the JSON body ``{"code": <status>, "message": <text>}`` plus
``"errorType": "ACCESS_DENIED"`` for authorisation failures (wire-protocol.md §3). Clients call
``Message.FromString`` on any 2xx body, so an error is never sent with a 2xx status.

Bad input is always a 4xx: every handler validates what it reads and raises :class:`ApiError`
(or a :class:`despina.errors.DespinaError` with a 4xx ``status``). Only genuine server faults —
the store being unavailable, a bug — answer 5xx, which the clients retry.
"""

from __future__ import annotations

import json
import logging
from typing import Any, TypeVar

from google.protobuf.message import DecodeError, Message
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from despina.errors import AuthError, DespinaError, StoreBusy, StoreError

__all__ = [
    "ACCESS_DENIED",
    "ApiError",
    "access_denied",
    "bad_request",
    "error_response",
    "install_error_handlers",
    "parse_json_body",
    "parse_protobuf_body",
]

M = TypeVar("M", bound=Message)

logger = logging.getLogger("despina.server")
_RETRY = {"Retry-After": "1"}

ACCESS_DENIED = "ACCESS_DENIED"
"""The only ``errorType`` despina sends; neptune-query maps it to ``NeptuneProjectInaccessible``."""


class ApiError(DespinaError):
    """A request the server refuses, with its HTTP status and optional ``errorType``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.headers = headers or {}
        self.extra = extra or {}


def bad_request(message: str, **extra: Any) -> ApiError:
    """A 400 naming what was wrong with the request."""
    return ApiError(400, message, extra=extra)


def parse_json_body(body: bytes) -> Any:
    """A request body parsed as JSON; anything unparsable is a 400 that says why.

    Besides malformed text, ``json.loads`` raises ``ValueError`` for an integer of more digits
    than Python converts (4,300) and ``RecursionError`` for nesting deeper than the
    interpreter's stack: both are the client's input, never a server fault.

    Raises:
        ApiError: 400, naming the problem.
    """
    try:
        return json.loads(body)
    except RecursionError:
        raise bad_request("the request body is not valid JSON: it is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}") from None


def parse_protobuf_body(message_class: type[M], body: bytes) -> M:
    """A request body parsed as ``message_class``; bytes that are not one are a 400.

    Raises:
        ApiError: 400, naming the message type and the decoder's complaint.
    """
    message = message_class()
    try:
        message.ParseFromString(body)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise bad_request(f"the body is not a serialized {message_class.__name__}: {exc}") from None
    return message


def access_denied(message: str, status: int = 403) -> ApiError:
    """A 403 (or other 4xx) with ``errorType: ACCESS_DENIED``."""
    return ApiError(status, message, error_type=ACCESS_DENIED)


def error_response(
    status: int,
    message: str,
    *,
    error_type: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """The canonical error body."""
    body: dict[str, Any] = dict(extra or {})
    body["code"] = status
    body["message"] = message
    if error_type is not None:
        body["errorType"] = error_type
    return JSONResponse(body, status_code=status, headers=headers)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(
        exc.status, exc.message, error_type=exc.error_type, headers=exc.headers, extra=exc.extra
    )


async def _despina_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DespinaError)
    status = int(getattr(exc, "status", 500))
    if isinstance(exc, StoreBusy):  # the spec's throttle: clients back off and resend
        logger.warning("store busy for %s %s: %s", request.method, request.url.path, exc)
        return error_response(429, f"the store is busy, retry later: {exc}", headers=_RETRY)
    if isinstance(exc, StoreError) and status >= 500:
        logger.warning("store unavailable for %s %s: %s", request.method, request.url.path, exc)
        return error_response(503, f"the store is unavailable: {exc}", headers=_RETRY)
    error_type = ACCESS_DENIED if isinstance(exc, AuthError) and status == 403 else None
    if status >= 500:
        logger.exception("internal error in %s %s", request.method, request.url.path)
    return error_response(status, str(exc), error_type=error_type)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("internal error in %s %s", request.method, request.url.path)
    return error_response(500, f"internal server error: {type(exc).__name__}")


def install_error_handlers() -> dict[Any, Any]:
    """The ``exception_handlers`` mapping for the Starlette application."""
    return {
        ApiError: _api_error,
        DespinaError: _despina_error,
        HTTPException: _http_exception,
        Exception: _unexpected,
    }
