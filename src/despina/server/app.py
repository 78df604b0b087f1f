"""The despina server: the Neptune HTTP API over the embedded store (wire-protocol.md).

:func:`create_app` builds a Starlette application; every route is listed once in :data:`ROUTES`.
Handlers stay thin: authenticate, read and bound the body, call a service in a worker thread
(the store is synchronous SQLite), encode the answer. Writes (ingest, uploads, tokens, projects)
run on their own worker threads, reads (query API, web UI) on the default ones: see
:mod:`despina.server.limits`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from despina.config import parse_project
from despina.errors import AuthError, ConfigError, StoreError
from despina.server.auth import CLIENT_ID, Authenticator, Principal, load_server_key, realm_url
from despina.server.errors import (
    ApiError,
    access_denied,
    bad_request,
    install_error_handlers,
    parse_json_body,
)
from despina.server.ingest import IngestService
from despina.server.jobs import (
    JOB_PACK_IDLE_RUNS,
    JOB_PRUNE_STATUSES,
    JOB_SWEEP_UPLOADS,
    Housekeeping,
    Job,
)
from despina.server.limits import LimitsMiddleware, ServerLimits
from despina.server.logs import AccessLogMiddleware
from despina.server.native import NATIVE_ROUTES
from despina.server.retrieval import RetrievalService
from despina.server.settings import ServerSettings
from despina.server.storage import BLOB_ROUTE, BlobStorage
from despina.server.ui import UI_ROUTES
from despina.store import Store
from despina.store.access import ProjectInfo, find_api_key, find_project, list_project_infos
from despina.store.sql.attribute_packs import pack_idle_runs

__all__ = ["ROUTES", "ServerState", "create_app"]

logger = logging.getLogger("despina.server")

PROTOBUF = "application/x-protobuf"
PROJECT_VERSION = 2


@dataclass(slots=True)
class ServerState:
    """Everything the handlers share; one per application."""

    store: Store
    settings: ServerSettings
    auth: Authenticator
    ingest: IngestService
    storage: BlobStorage
    retrieval: RetrievalService
    limits: ServerLimits
    jobs: Housekeeping


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.despina
    return state


def base_url(request: Request) -> str:
    """The externally reachable base URL: the configured one, else the request's own."""
    configured = _state(request).settings.public_url
    if configured:
        return configured.rstrip("/")
    return str(request.base_url).rstrip("/")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes (413) without reading it all.

    Raises:
        ApiError: the body is larger than ``limit``.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body of {declared} bytes is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request) -> Any:
    """The JSON body (bounded by ``max_json_bytes``).

    Raises:
        ApiError: the body is too large (413) or not JSON (400).
    """
    body = await read_body(request, _state(request).settings.max_json_bytes)
    return parse_json_body(body)


async def principal_of(request: Request) -> Principal:
    """The authenticated caller (401 without a valid bearer token), checked on a read thread."""
    auth = _state(request).auth
    return await run_in_threadpool(auth.principal, request.headers.get("authorization"))


async def writer_of(request: Request) -> Principal:
    """:func:`principal_of` checked on a write thread: busy reads never delay a write."""
    state = _state(request)
    return await state.limits.run_write(state.auth.principal, request.headers.get("authorization"))


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def protobuf(data: bytes) -> Response:
    return Response(data, media_type=PROTOBUF)


# -- authentication ------------------------------------------------------------------------------


async def client_config(request: Request) -> Response:
    base = base_url(request)
    return JSONResponse(
        {
            "apiUrl": base,
            "applicationUrl": base,
            "pyLibVersions": {},
            "security": {
                "clientId": CLIENT_ID,
                "openIdDiscovery": realm_url(base) + "/.well-known/openid-configuration",
            },
        }
    )


async def openid_configuration(request: Request) -> Response:
    realm = realm_url(base_url(request))
    return JSONResponse(
        {
            "issuer": realm,
            "authorization_endpoint": realm + "/protocol/openid-connect/auth",
            "token_endpoint": realm + "/protocol/openid-connect/token",
            "grant_types_supported": ["refresh_token"],
        }
    )


async def exchange_token(request: Request) -> Response:
    token = request.headers.get("x-neptune-api-token")
    if not token:
        raise AuthError("missing X-Neptune-Api-Token header: send the API token to exchange")
    state = _state(request)
    state.limits.check_auth_rate(_client_address(request))
    pair = await state.limits.run_write(state.auth.exchange, token, base_url(request))
    return JSONResponse(
        {
            "accessToken": pair.access_token,
            "refreshToken": pair.refresh_token,
            "username": pair.username,
        }
    )


async def refresh_token(request: Request) -> Response:
    state = _state(request)
    state.limits.check_auth_rate(_client_address(request))
    body = await read_body(request, 64 * 1024)
    try:
        form = parse_qs(body.decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        raise bad_request("the token request must be form-encoded UTF-8") from None
    grant = form.get("grant_type", [""])[0]
    if grant != "refresh_token":
        raise bad_request(f"grant_type must be 'refresh_token', got {grant!r:.60}")
    pair = await state.limits.run_write(
        state.auth.refresh, form.get("refresh_token", [""])[0], base_url(request)
    )
    return JSONResponse(
        {
            "access_token": pair.access_token,
            "refresh_token": pair.refresh_token,
            "token_type": "Bearer",
            "expires_in": state.auth.access_seconds,
        }
    )


# -- ingestion -----------------------------------------------------------------------------------


async def ingest(request: Request) -> Response:
    principal = await writer_of(request)
    state = _state(request)
    body = await read_body(request, state.settings.max_ingest_bytes)
    return protobuf(await state.limits.run_write(state.ingest.submit, principal, body))


async def ingest_check(request: Request) -> Response:
    principal = await writer_of(request)
    state = _state(request)
    project = request.query_params.get("projectIdentifier", "")
    body = await read_body(request, 4 * 1024 * 1024)
    # neptune-scale's lag checker needs Neptune's status timing (IngestService.check)
    settle = request.headers.get("user-agent", "").startswith("neptune-scale/")
    return protobuf(
        await state.limits.run_write(state.ingest.check, principal, project, body, settle)
    )


# -- storage bridge ------------------------------------------------------------------------------


async def signed_url(request: Request) -> Response:
    principal = await writer_of(request)
    body = await read_json(request)
    state = _state(request)
    answer = await state.limits.run_write(
        state.storage.signed_urls, principal, body, base_url(request)
    )
    return JSONResponse(answer)


async def complete_multipart(request: Request) -> Response:
    principal = await writer_of(request)
    body = await read_json(request)
    state = _state(request)
    await state.limits.run_write(state.storage.complete_multipart, principal, body)
    return Response(status_code=204)


async def blob(request: Request) -> Response:
    state = _state(request)
    return await state.storage.handle(request, state.limits.run_write)


# -- projects ------------------------------------------------------------------------------------


def _organization_id(workspace: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"despina-workspace:{workspace}"))


def project_json(info: ProjectInfo) -> dict[str, Any]:
    """A project as the backend API shows it (``ProjectDTO`` and friends)."""
    return {
        "id": info.uuid,
        "name": info.name,
        "organizationName": info.workspace,
        "organizationId": _organization_id(info.workspace),
        "projectKey": info.project_key,
        "version": PROJECT_VERSION,
        "description": info.description,
        "visibility": info.visibility,
        "timeOfCreation": info.created_ms,
    }


def _create_project(state: ServerState, principal: Principal, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("expected a JSON object {organizationIdentifier, name, visibility}")
    workspace = body.get("organizationIdentifier")
    name = body.get("name")
    if not isinstance(workspace, str) or not isinstance(name, str):
        raise bad_request(
            f"organizationIdentifier and name must be strings, got {workspace!r:.60} and "
            f"{name!r:.60}"
        )
    full = f"{workspace}/{name}"
    try:
        parse_project(full)
    except ConfigError as exc:
        raise bad_request(str(exc)) from None
    if not principal.may_create_in(workspace):
        raise access_denied(
            f"this API token (scope {principal.key.scope}) may not create projects in workspace "
            f"{workspace!r}; use a workspace token ('despina token create --workspace "
            f"{workspace}')"
        )
    visibility = body.get("visibility") or "priv"
    if visibility not in ("priv", "pub", "workspace"):
        raise bad_request(
            f"visibility must be 'priv', 'pub' or 'workspace', got {visibility!r:.40}"
        )
    description = body.get("description") or ""
    key = body.get("projectKey") or None
    if not isinstance(description, str):
        raise bad_request("description must be a string")
    if key is not None and (
        not isinstance(key, str) or not key.isalnum() or not key.isupper() or len(key) > 20
    ):
        raise bad_request(f"projectKey must be 1-20 upper-case letters or digits, got {key!r:.40}")
    if find_project(state.store, full) is not None:
        raise ApiError(409, f"project {full!r} already exists")
    if key is not None and any(
        p.project_key == key for p in list_project_infos(state.store, workspace)
    ):
        raise ApiError(409, f"project key {key!r} is already used in workspace {workspace!r}")
    try:
        state.store.create_project(full, key=key, description=description, visibility=visibility)
    except StoreError as exc:
        if "already exists" in str(exc):
            raise ApiError(409, f"project {full!r} already exists") from None
        raise
    info = find_project(state.store, full)
    assert info is not None
    return project_json(info)


async def create_project(request: Request) -> Response:
    principal = await writer_of(request)
    body = await read_json(request)
    state = _state(request)
    answer = await state.limits.run_write(_create_project, state, principal, body)
    return JSONResponse(answer, status_code=200)


async def get_project(request: Request) -> Response:
    principal = await writer_of(request)
    name = request.query_params.get("projectIdentifier", "")
    principal.require(name)
    state = _state(request)
    info = await state.limits.run_write(find_project, state.store, name)
    if info is None:
        raise ApiError(404, f"project {name!r} does not exist")
    return JSONResponse(project_json(info))


async def list_projects(request: Request) -> Response:
    principal = await writer_of(request)
    state = _state(request)
    infos = await state.limits.run_write(list_project_infos, state.store, principal.key.workspace)
    entries = [project_json(i) for i in infos if principal.reaches(i.full_name)]
    return JSONResponse({"entries": entries, "matchingItemCount": len(entries)})


# -- retrieval -----------------------------------------------------------------------------------


_SERIES_RETRIEVALS = frozenset({"float_series", "series"})


def _retrieval(name: str) -> Callable[[Request], Awaitable[Response]]:
    """A handler calling ``RetrievalService.<name>(principal, body, query params)``."""

    # the clients' series requests name up to 10,000 series of 1,024-byte paths each
    series = name in _SERIES_RETRIEVALS

    async def handler(request: Request) -> Response:
        principal = await principal_of(request)
        state = _state(request)
        settings = state.settings
        limit = settings.max_series_request_bytes if series else settings.max_json_bytes
        body = await read_body(request, limit)
        method = getattr(state.retrieval, name)
        response: Response = await run_in_threadpool(
            method, principal, body, dict(request.query_params)
        )
        return response

    handler.__name__ = name
    return handler


ROUTES: list[tuple[str, str, Callable[[Request], Awaitable[Response]]]] = [
    # authentication (wire-protocol.md §2)
    ("GET", "/api/backend/v1/clients/config", client_config),
    ("GET", "/auth/realms/neptune/.well-known/openid-configuration", openid_configuration),
    ("GET", "/api/backend/v1/authorization/oauth-token", exchange_token),
    ("POST", "/auth/realms/neptune/protocol/openid-connect/token", refresh_token),
    # ingestion (§5)
    ("POST", "/api/client/v1/ingest", ingest),
    ("POST", "/api/client/v1/ingest/check", ingest_check),
    # storage bridge (§7)
    ("POST", "/api/storagebridge/v1/signedUrl", signed_url),
    ("POST", "/api/storagebridge/v1/s3/completeMultipartUpload", complete_multipart),
    ("GET", BLOB_ROUTE + "/{workspace}/{project}/{path:path}", blob),
    ("PUT", BLOB_ROUTE + "/{workspace}/{project}/{path:path}", blob),
    # retrieval (§6)
    ("POST", "/api/leaderboard/v1/proto/leaderboard/entries/search/", _retrieval("search")),
    (
        "POST",
        "/api/leaderboard/v1/proto/leaderboard/entries/global/search/",
        _retrieval("global_search"),
    ),
    (
        "POST",
        "/api/leaderboard/v1/leaderboard/attributes/definitions/query",
        _retrieval("definitions"),
    ),
    ("POST", "/api/leaderboard/v1/proto/leaderboard/attributes/query", _retrieval("attributes")),
    ("POST", "/api/leaderboard/v1/proto/attributes/series/float", _retrieval("float_series")),
    ("POST", "/api/leaderboard/v1/proto/attributes/series", _retrieval("series")),
    ("POST", "/api/leaderboard/v1/proto/attributes/timeseries/buckets", _retrieval("buckets")),
    # projects (§8)
    ("POST", "/api/backend/v1/projects", create_project),
    ("GET", "/api/backend/v1/projects/get", get_project),
    ("GET", "/api/backend/v1/projects", list_projects),
    # despina's own endpoints (columnar reads and writes of the remote clients)
    *NATIVE_ROUTES,
    # web UI (pages, their .json twins, static files)
    *UI_ROUTES,
]
"""Every route of the server: (method, path, handler)."""


def _warm_up(state: ServerState) -> None:
    """Open this worker thread's store connection and run the key lookup every request makes,
    so that the first request does not pay for them: the thread pool hands the most recently
    idle thread to the next request. Milliseconds whatever the store's size; a store that
    cannot be read is left to the requests to report."""
    try:
        find_api_key(state.store, "")
    except StoreError as exc:
        logger.warning("the store could not be read at start-up: %s", exc)


def create_app(store: Store, settings: ServerSettings | None = None) -> Starlette:
    """The ASGI application serving ``store``.

    The application caps requests in progress, bounds body reads and keeps writes on their own
    worker threads by itself; ``despina serve`` adds what only the server can do: uvicorn with
    :func:`despina.server.limits.guarded_h11_protocol` (connection cap, header deadline) and a
    store opened with ``busy_timeout_ms`` from ``settings.store_busy_seconds``.

    Raises:
        ConfigError: the server secret in the store is damaged.
        StoreError: the store cannot be read or written.
    """
    settings = settings or ServerSettings()
    server_key = load_server_key(store)
    ingest = IngestService(store, settings)
    storage = BlobStorage(store, server_key, settings)
    state = ServerState(
        store=store,
        settings=settings,
        auth=Authenticator(
            store,
            server_key,
            access_seconds=settings.access_token_seconds,
            refresh_seconds=settings.refresh_token_seconds,
        ),
        ingest=ingest,
        storage=storage,
        retrieval=RetrievalService(store, settings),
        limits=ServerLimits(settings),
        # each runs on one replica at a time (a lease in the store); see despina.server.jobs
        jobs=Housekeeping(
            store,
            [
                Job(JOB_PRUNE_STATUSES, 3600, ingest.prune_statuses),
                Job(JOB_SWEEP_UPLOADS, 600, storage.sweep_abandoned_uploads),
                Job(JOB_PACK_IDLE_RUNS, 60, lambda: pack_idle_runs(store)),
            ],
        ),
    )
    routes = [Route(path, handler, methods=[method]) for method, path, handler in ROUTES]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.limits.configure_reads()
        # before the server listens: the worker thread that will serve the first request
        await run_in_threadpool(_warm_up, state)
        state.jobs.start()
        logger.info("despina server ready", extra={"fields": {"home": str(store.home)}})
        yield
        logger.info("despina server stopping")
        await run_in_threadpool(state.jobs.stop)
        store.close()

    app = Starlette(
        routes=routes,
        exception_handlers=install_error_handlers(),
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False
    app.state.despina = state
    app.add_middleware(LimitsMiddleware, limits=state.limits)
    app.add_middleware(AccessLogMiddleware)  # outermost: logs the limits' answers too
    return app
