"""The client side of the HTTP store: one authenticated connection to a ``despina serve``.

An API token names its server (``api_url`` inside the base64 JSON, as ``despina token create``
prints it). :class:`ServerConnection` exchanges the token for a short-lived access token on first
use (the same exchange the neptune clients make), sends it as ``Authorization: Bearer`` and
exchanges again when the server answers 401 (an access token expires after an hour).

Errors name the server and the fix: :class:`ServerUnreachable` (nothing answered at the URL),
:class:`TokenRefused` (the server refused the token: revoked, expired or minted elsewhere),
and the server's own refusals of bad input raised as the same exception classes the in-process
call raises (``NqlError`` with its position, ``InvalidQuery``, ``ProjectNotFound``, …: the
server sends the class and its arguments in the error body, see :func:`error_extra`).
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from despina.errors import (
    AuthError,
    ConfigError,
    DespinaError,
    InvalidQuery,
    NqlError,
    ProjectNotFound,
    RunNotFound,
    StoreBusy,
    StoreError,
)
from despina.store.http.plain import PlainHttpTransport
from despina.store.http.tokens import token_from_environment

__all__ = [
    "NATIVE_PREFIX",
    "ServerConnection",
    "ServerUnreachable",
    "TokenRefused",
    "connection_for",
    "error_extra",
    "server_of_token",
    "token_from_environment",
]

NATIVE_PREFIX = "/api/despina/v1"
"""Where despina's own endpoints are (docs/remote-api.md); the neptune protocol is elsewhere."""

_EXCHANGE_PATH = "/api/backend/v1/authorization/oauth-token"
_RETRIES = 5
"""Attempts for a request that failed on the way (connection refused, 429, 503)."""
_CONNECT_SECONDS = 10.0
"""How long connecting to the server may take (at most, until a request's deadline)."""
_PATIENCE_SECONDS = 15.0
"""A request's deadline when its caller gives none: five connect timeouts to an address that
drops packets would hold a query (or the sender) for 50 s."""


class ServerUnreachable(StoreError):
    """Nothing answered at the server an API token names (or it kept answering 5xx)."""


class TokenRefused(AuthError):
    """The server refused the API token (revoked, expired, or minted by another server)."""


def server_of_token(token: str) -> str:
    """The server URL inside an API token (``api_url``, else ``api_address``), without a
    trailing slash.

    Raises:
        ConfigError: the token is not base64 JSON naming an http(s) server.
    """
    try:
        data = json.loads(base64.b64decode(token.strip().encode(), validate=False))
        url = str(data.get("api_url") or data.get("api_address") or "")
    except (ValueError, binascii.Error, TypeError, AttributeError, UnicodeDecodeError):
        raise ConfigError(
            "the API token is not valid: expected base64 JSON with an 'api_url' field, as "
            "printed by 'despina token create' (check DESPINA_API_TOKEN / NEPTUNE_API_TOKEN or "
            "the api_token= argument)"
        ) from None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"the API token names server {url!r}, which is not an http(s) URL: mint a token "
            "with 'despina token create --url http://HOST:PORT' on the server"
        )
    return url.rstrip("/")


# Exception classes a native endpoint may send back by name (error_extra), rebuilt client-side.
_REBUILT: dict[str, type[DespinaError]] = {
    cls.__name__: cls
    for cls in (ConfigError, InvalidQuery, ProjectNotFound, RunNotFound, StoreError, AuthError)
}


def error_extra(exc: BaseException) -> dict[str, Any]:
    """Fields a native endpoint adds to its error body so the client raises ``exc``'s class."""
    if isinstance(exc, NqlError):
        return {
            "exception": "NqlError",
            "nql_class": type(exc).__name__,  # NQLSyntaxError / NQLSemanticError / NqlError
            "nql": {
                "description": exc.description,
                "query": exc.query,
                "start": exc.start,
                "end": exc.end,
            },
        }
    if type(exc).__module__ == _QUERY_EXCEPTIONS:
        # the query API's own classes, message and fields as raised (neptune_query's names)
        fields = {k: v for k, v in vars(exc).items() if isinstance(v, str | int | list)}
        return {"exception": type(exc).__name__, "query_error": True, "fields": fields}
    for cls in type(exc).__mro__:
        if cls.__name__ in _REBUILT and _REBUILT[cls.__name__] is cls:
            return {"exception": cls.__name__}
    return {}


_QUERY_EXCEPTIONS = "despina.query.exceptions"


def _query_error(name: str, message: str, fields: Any) -> Exception | None:
    """The ``despina.query.exceptions`` class ``name`` raised with ``message`` as is."""
    import importlib

    module = importlib.import_module(_QUERY_EXCEPTIONS)
    cls = getattr(module, name, None)
    if not (isinstance(cls, type) and issubclass(cls, DespinaError)):
        return None
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    if isinstance(fields, Mapping):
        for key, value in fields.items():
            if isinstance(key, str) and not key.startswith("_"):
                setattr(exc, key, value)
    return exc


def _rebuilt(server: str, status: int, body: Any) -> Exception:
    """The exception an error answer stands for."""
    if not isinstance(body, Mapping):
        body = {}
    message = str(body.get("message") or f"HTTP {status}")
    name = body.get("exception")
    nql = body.get("nql")
    if name == "NqlError" and isinstance(nql, Mapping):
        from despina.nql import errors as nql_errors

        found = getattr(nql_errors, str(body.get("nql_class") or "NqlError"), NqlError)
        nql_cls = found if isinstance(found, type) and issubclass(found, NqlError) else NqlError
        return nql_cls(str(nql["description"]), str(nql["query"]), int(nql["start"]), nql["end"])
    if isinstance(name, str) and body.get("query_error") is True:
        # the in-process message, but for the server's own "this server"
        named = message.replace("this server", f"server {server}", 1)
        rebuilt = _query_error(name, named, body.get("fields"))
        if rebuilt is not None:
            return rebuilt
    if isinstance(name, str) and name in _REBUILT:
        cls = _REBUILT[name]
        if cls in (AuthError, ProjectNotFound, RunNotFound):  # refusals a token or URL fixes
            message = _naming(server, message)
        return AuthError(message, status) if cls is AuthError else cls(message)
    if status == 401:
        why = (
            ""
            if "revoked" in message or "expired" in message
            else ": it was revoked, expired or minted by another server"
        )
        return TokenRefused(
            f"server {server} refused the API token ({message}){why}; create a new one on "
            "the server with 'despina token create' and set it in DESPINA_API_TOKEN / "
            "NEPTUNE_API_TOKEN",
            401,
        )
    if status == 403:
        return AuthError(f"server {server}: {message}", 403)
    if status == 404:
        return ProjectNotFound(f"server {server}: {message}")
    if status == 429:
        return StoreBusy(f"server {server} is busy: {message}")
    if status >= 500:
        return ServerUnreachable(f"server {server} failed: {message}")
    return InvalidQuery(f"server {server} refused the request: {message}")


def _naming(server: str, message: str) -> str:
    """``message`` naming the server it came from (the server says "this server")."""
    if server in message:
        return message
    if "this server" in message:
        return message.replace("this server", f"server {server}", 1)
    return f"server {server}: {message}"


class ServerConnection:
    """An authenticated HTTP/1.1 connection pool to the server an API token names.

    Thread-safe; one per token per process (:func:`connection_for`).
    """

    def __init__(self, token: str, *, timeout: float = 60.0) -> None:
        self.token = token.strip()
        self.server = server_of_token(self.token)
        self._timeout = timeout
        https = self.server.startswith("https://")
        self._client = httpx.Client(
            base_url=self.server,
            timeout=httpx.Timeout(timeout, connect=_CONNECT_SECONDS),
            headers={"User-Agent": "despina"},
            # loading the CA bundle costs 50-100 ms of a first call; plain http never uses it
            verify=https,
            # nor httpcore, h2 and trio (25-30 ms of imports): see despina.store.http.plain
            transport=None if https else PlainHttpTransport(),
        )
        self._access: str | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    # -- authentication ------------------------------------------------------------------------

    def _access_token(self, *, renew: bool = False, deadline: float | None = None) -> str:
        with self._lock:
            if self._access is None or renew:
                answer = self._send(
                    "GET", _EXCHANGE_PATH, {"X-Neptune-Api-Token": self.token}, deadline=deadline
                )
                if answer.status_code != 200:
                    raise _rebuilt(self.server, answer.status_code, _json_or_none(answer))
                self._access = str(answer.json()["accessToken"])
            return self._access

    # -- requests ------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        deadline: float | None = None,
    ) -> httpx.Response:
        """Send an authenticated request and return a 2xx answer.

        Connection failures, 429 and 503 are retried (with back-off) up to five times; a 401
        exchanges the token again once. No attempt starts after the ``deadline``
        (``time.monotonic()``; default ``_PATIENCE_SECONDS`` from now) and connecting waits no
        longer than it: a server whose address drops packets would otherwise hold the caller
        for five connect timeouts (50 s). The answer itself may take longer (the timeout).

        Raises:
            ServerUnreachable: nothing answered, or the server kept failing.
            TokenRefused: the server refused the token.
            DespinaError: the server refused the request (the in-process call's class).
        """
        if deadline is None:
            deadline = time.monotonic() + _PATIENCE_SECONDS
        renewed = False
        while True:
            bearer = {"Authorization": f"Bearer {self._access_token(deadline=deadline)}"}
            answer = self._send(
                method,
                path,
                {**bearer, **(headers or {})},
                json_body=json_body,
                content=content,
                params=params,
                deadline=deadline,
            )
            if answer.status_code == 401 and not renewed:
                renewed = True
                self._access_token(renew=True, deadline=deadline)
                continue
            if answer.status_code >= 300:
                raise _rebuilt(self.server, answer.status_code, _json_or_none(answer))
            return answer

    def post_json(self, path: str, body: Any, *, deadline: float | None = None) -> Any:
        """POST ``body`` as JSON to a native endpoint and return the JSON answer."""
        return self.request("POST", NATIVE_PREFIX + path, json_body=body, deadline=deadline).json()

    def post_batch(self, body: bytes, *, deadline: float | None = None) -> Any:
        """POST a ``/runs/batch`` body (:func:`despina.store.http.batches.batch_request`) and
        return the JSON answer."""
        return self.request(
            "POST",
            NATIVE_PREFIX + "/runs/batch",
            content=body,
            headers={"Content-Type": "application/octet-stream"},
            deadline=deadline,
        ).json()

    def upload_file(
        self, project: str, sha256: str, data: bytes, *, deadline: float | None = None
    ) -> str:
        """Store a file's content in the server's blob store (``/files``); the server's receipt,
        which a batch that references the content must carry."""
        answer = self.request(
            "POST",
            NATIVE_PREFIX + "/files",
            content=data,
            params={"project": project, "sha256": sha256},
            headers={"Content-Type": "application/octet-stream"},
            deadline=deadline,
        ).json()
        return str(answer["receipt"])

    def download(self, path: str, body: Any, target: Path, *, block: int = 1 << 20) -> bool:
        """POST ``body`` to the native endpoint ``path`` and stream the answer into ``target``
        (a block at a time: files may be larger than memory). ``False`` when the server answers
        404 with ``{"missing": true}`` (nothing stored under the name); nothing is written then.

        Raises:
            ServerUnreachable: nothing answered, or the connection broke mid-download.
            TokenRefused, DespinaError: as :meth:`request`.
        """
        for renew in (False, True):
            headers = {"Authorization": f"Bearer {self._access_token(renew=renew)}"}
            try:
                with self._client.stream(
                    "POST", NATIVE_PREFIX + path, json=body, headers=headers
                ) as answer:
                    if answer.status_code == 401 and not renew:
                        continue
                    if answer.status_code >= 300:
                        answer.read()
                        refusal = _json_or_none(answer)
                        if answer.status_code == 404 and _marked_missing(refusal):
                            return False
                        raise _rebuilt(self.server, answer.status_code, refusal)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with target.open("wb") as out:
                        for chunk in answer.iter_bytes(block):
                            out.write(chunk)
                    return True
            except httpx.TransportError as exc:
                raise ServerUnreachable(
                    f"server {self.server} (named by the API token) broke off a download: "
                    f"{type(exc).__name__}: {exc}; check that it is running"
                ) from None
        raise AssertionError("unreachable")  # the second pass returns or raises

    def _send(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        *,
        json_body: Any = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        deadline: float | None = None,
    ) -> httpx.Response:
        delay = 0.2
        for attempt in range(_RETRIES):
            connect = _CONNECT_SECONDS
            if deadline is not None:  # at least a second: a reachable server connects in it
                connect = min(connect, max(1.0, deadline - time.monotonic()))
            try:
                answer = self._client.request(
                    method,
                    path,
                    headers=dict(headers),
                    json=json_body,
                    content=content,
                    params=params,
                    timeout=httpx.Timeout(self._timeout, connect=connect),
                )
            except httpx.TransportError as exc:
                late = deadline is not None and time.monotonic() + delay >= deadline
                if attempt == _RETRIES - 1 or late:
                    raise ServerUnreachable(
                        f"server {self.server} (named by the API token) did not answer: "
                        f"{type(exc).__name__}: {exc}; start it with 'despina serve', check the "
                        "URL inside the token, or unset DESPINA_API_TOKEN / NEPTUNE_API_TOKEN "
                        "to log to the local store"
                    ) from None
            else:
                late = deadline is not None and time.monotonic() + delay >= deadline
                if answer.status_code not in (429, 502, 503, 504) or attempt == _RETRIES - 1:
                    return answer
                if late:  # no time for another attempt: the caller hears of this answer
                    return answer
                retry_after = answer.headers.get("retry-after", "")
                if retry_after.isdigit():
                    delay = max(delay, float(retry_after))
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")  # the loop returns or raises


def _marked_missing(body: Any) -> bool:
    return isinstance(body, Mapping) and body.get("missing") is True


def _json_or_none(answer: httpx.Response) -> Any:
    try:
        return answer.json()
    except ValueError:
        return None


_connections: dict[str, ServerConnection] = {}
_connections_lock = threading.Lock()


def connection_for(token: str) -> ServerConnection:
    """The process's connection for ``token`` (created on first use).

    Raises:
        ConfigError: the token does not name an http(s) server.
    """
    token = token.strip()
    with _connections_lock:
        found = _connections.get(token)
        if found is None:
            found = _connections[token] = ServerConnection(token)
        return found
