"""What every native endpoint shares: authentication, bounded bodies, access checks and errors
the client rebuilds as the in-process exception (:func:`despina.store.http.connection.error_extra`).

A native call is a plain function ``call(state, principal, body, params)`` run on a worker
thread (a write thread for writes, see :mod:`despina.server.limits`); it returns a Starlette
``Response`` or a JSON-able value.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from despina.config import parse_project
from despina.errors import (
    AuthError,
    ConfigError,
    DespinaError,
    ProjectNotFound,
    StoreBusy,
    StoreError,
)
from despina.server.auth import Principal
from despina.server.errors import ACCESS_DENIED, bad_request, error_response, parse_json_body
from despina.store.access import find_project
from despina.store.http.connection import NATIVE_PREFIX, error_extra

__all__ = [
    "ARROW_STREAM",
    "NativeCall",
    "NativeRoute",
    "arrow_response",
    "native_endpoint",
    "project_in",
]

ARROW_STREAM = "application/vnd.apache.arrow.stream"

NativeCall = Callable[[Any, Principal, Any, Mapping[str, str]], Any]
NativeRoute = tuple[str, str, Callable[[Request], Awaitable[Response]]]


def project_in(principal: Principal, body: Any, field: str = "project") -> str:
    """The project a request names, checked against the caller's token.

    Raises:
        ApiError: the field is missing or not a string (400).
        AuthError: the project is outside the token's scope (403).
    """
    project = body.get(field) if isinstance(body, Mapping) else None
    if not isinstance(project, str) or not project:
        raise bad_request(f"the request must name a project in {field!r} ('workspace/project')")
    principal.require(project)
    return project


def arrow_response(data: bytes) -> Response:
    return Response(data, media_type=ARROW_STREAM)


def native_endpoint(
    path: str,
    call: NativeCall,
    *,
    write: bool = False,
    body: str = "json",
    limit: str = "max_json_bytes",
) -> NativeRoute:
    """The route ``POST /api/despina/v1<path>`` running ``call``.

    ``body`` is ``"json"`` (parsed) or ``"bytes"`` (raw); ``limit`` names the server setting
    bounding it.
    """
    from despina.server import app as server_app  # the app imports this package

    async def handler(request: Request) -> Response:
        if write:
            principal = await server_app.writer_of(request)
        else:
            principal = await server_app.principal_of(request)
        state = request.app.state.despina
        raw = await server_app.read_body(request, int(getattr(state.settings, limit)))
        parsed = parse_json_body(raw) if body == "json" else raw
        params = dict(request.query_params)
        try:
            if write:
                result = await state.limits.run_write(call, state, principal, parsed, params)
            else:
                result = await run_in_threadpool(call, state, principal, parsed, params)
        except StoreBusy:
            raise  # the shared handler answers 429 with Retry-After
        except DespinaError as raised:
            exc = _as_told_to(raised, state, principal, parsed)
            status = int(getattr(exc, "status", 500))
            if isinstance(exc, StoreError) and status >= 500:
                raise
            denied = ACCESS_DENIED if isinstance(exc, AuthError) and status == 403 else None
            return error_response(status, str(exc), error_type=denied, extra=error_extra(exc))
        if isinstance(result, Response):
            return result
        return JSONResponse(result)

    handler.__name__ = call.__name__
    return ("POST", NATIVE_PREFIX + path, handler)


def _as_told_to(exc: DespinaError, state: Any, principal: Principal, body: Any) -> DespinaError:
    """``exc`` as the caller may hear it: a project that does not exist is refused without
    the store's location and the other workspaces' projects, which the in-process message
    names (``Store.project_id``); it lists the projects the token reaches instead. The client
    puts the server's URL in place of "this server"."""
    from despina.query.exceptions import NeptuneProjectInaccessible

    missing = isinstance(exc, ProjectNotFound | NeptuneProjectInaccessible)
    if not missing or "this server" in str(exc):
        return exc  # another refusal, or one worded for a server's caller already
    name = body.get("project") if isinstance(body, Mapping) else None
    if not isinstance(name, str):
        return exc
    try:
        parse_project(name)
    except ConfigError:
        return exc  # a malformed name: the message names only what the caller sent
    if find_project(state.store, name) is not None:
        return exc
    reached = [p for p in state.store.list_projects() if principal.reaches(p)]
    hint = f" (projects this token reaches there: {', '.join(reached)})" if reached else ""
    detail = (
        f"no project {name!r} on this server{hint}; create it there with "
        f"'despina project create {name}'"
    )
    if isinstance(exc, NeptuneProjectInaccessible):
        return NeptuneProjectInaccessible(detail)
    return ProjectNotFound(detail)
