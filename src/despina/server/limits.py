"""Limits that keep one client, a slow connection or a busy store from taking the server down.

* **Connections**: at most ``max_connections`` open at once; one beyond is closed at once. A
  connection must deliver a request's line and headers within ``header_timeout_seconds`` of its
  first byte (a new connection: of being opened), else it is closed (slowloris): see
  :func:`guarded_h11_protocol`, the HTTP/1.1 protocol ``despina serve`` runs uvicorn with.
* **Bodies**: a body must keep arriving: ``body_timeout_seconds`` of grace plus one second per
  ``body_min_rate`` bytes received; one that falls behind is answered 408 and its connection
  closed (:class:`LimitsMiddleware`).
* **Two classes of requests**, each with its own cap on requests in progress (beyond it: 429 +
  ``Retry-After``, the spec's throttle, which both official clients honour) and its own worker
  threads: *writes* (ingest, uploads, tokens, projects: what a training script needs) and
  *reads* (query API, web UI, downloads). Heavy reads wait for read threads only and never
  delay ingest; a write that cannot get a thread within ``write_queue_seconds`` is answered 429.
* **Token requests** (exchange, refresh) are rate-limited per client address
  (:class:`RateLimiter`), since they need no access token.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from despina.server.errors import ApiError, error_response
from despina.server.settings import ServerSettings

__all__ = [
    "LimitsMiddleware",
    "RateLimiter",
    "ServerLimits",
    "guarded_h11_protocol",
    "is_write",
    "throttled",
]

logger = logging.getLogger("despina.server")
T = TypeVar("T")

READ = "read"
WRITE = "write"
_WRITE_PREFIXES = ("/api/client/", "/api/storagebridge/", "/api/backend/", "/auth/")


def is_write(method: str, path: str) -> bool:
    """Whether a request belongs to the write class (ingest, uploads, tokens, projects)."""
    return method == "PUT" or path.startswith(_WRITE_PREFIXES)


def throttled(message: str, retry_after: float = 1.0) -> ApiError:
    """A 429 with ``Retry-After`` (whole seconds, at least 1)."""
    seconds = max(1, int(retry_after + 0.999))
    return ApiError(429, message, headers={"Retry-After": str(seconds)})


class RateLimiter:
    """Token buckets per key (a client address): ``rate`` per second, ``burst`` at once.

    Used from the event loop only (no lock). Keeps the ``max_keys`` most recent keys.
    """

    def __init__(self, rate: float, burst: int, max_keys: int = 10_000) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def wait(self, key: str) -> float:
        """Take one token for ``key``: 0 when allowed, else the seconds until one is free."""
        now = time.monotonic()
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


class ServerLimits:
    """The limits' state for one application: requests in progress, write threads, buckets."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.in_progress = {READ: 0, WRITE: 0}
        self.caps = {READ: settings.max_read_requests, WRITE: settings.max_write_requests}
        self.auth_rate = RateLimiter(settings.auth_rate, settings.auth_burst)
        # created in the event loop on first use (anyio 3 binds them to a running backend)
        self._write_slots: anyio.Semaphore | None = None
        self._write_threads: anyio.CapacityLimiter | None = None

    def configure_reads(self) -> None:
        """Size the default worker pool (reads, the web UI) to ``read_threads``; call from the
        running event loop (the application's start-up)."""
        anyio.to_thread.current_default_thread_limiter().total_tokens = self.settings.read_threads

    async def run_write(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` on a write worker thread; 429 when none is free in time.

        Raises:
            ApiError: no write thread became free within ``write_queue_seconds`` (429).
        """
        if self._write_slots is None or self._write_threads is None:
            self._write_slots = anyio.Semaphore(self.settings.write_threads)
            self._write_threads = anyio.CapacityLimiter(self.settings.write_threads)
        slots, threads = self._write_slots, self._write_threads
        acquired = False
        with anyio.move_on_after(self.settings.write_queue_seconds):
            await slots.acquire()
            acquired = True
        if not acquired:
            raise throttled(
                f"every write worker ({self.settings.write_threads}) stayed busy for "
                f"{self.settings.write_queue_seconds:g} s; retry later"
            )
        try:
            return await anyio.to_thread.run_sync(func, *args, limiter=threads)
        finally:
            slots.release()

    def check_auth_rate(self, client: str) -> None:
        """Refuse a token request from ``client`` beyond its rate (429 + Retry-After).

        Raises:
            ApiError: the client sent more than ``auth_burst`` requests faster than
                ``auth_rate`` per second.
        """
        wait = self.auth_rate.wait(client)
        if wait > 0:
            raise throttled(
                f"too many token requests from {client}: at most "
                f"{self.settings.auth_rate:g} per second (bursts of {self.settings.auth_burst})",
                wait,
            )


class LimitsMiddleware:
    """Caps requests in progress per class (429) and enforces the body deadline (408)."""

    def __init__(self, app: ASGIApp, limits: ServerLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limits = self.limits
        kind = WRITE if is_write(scope.get("method", ""), scope.get("path", "")) else READ
        if limits.in_progress[kind] >= limits.caps[kind]:
            response = error_response(
                429,
                f"the server has {limits.caps[kind]} {kind} requests in progress, its limit; "
                "retry later",
                headers={"Retry-After": "1"},
            )
            await response(scope, receive, send)
            return
        limits.in_progress[kind] += 1
        try:
            await self.app(scope, _BodyDeadline(receive, limits.settings), send)
        finally:
            limits.in_progress[kind] -= 1


class _BodyDeadline:
    """``receive`` with the body deadline: grace plus one second per ``body_min_rate`` bytes."""

    def __init__(self, receive: Receive, settings: ServerSettings) -> None:
        self.receive = receive
        self.grace = settings.body_timeout_seconds
        self.rate = settings.body_min_rate
        self.start = time.monotonic()
        self.received = 0
        self.complete = False

    async def __call__(self) -> Message:
        if self.complete:  # later calls only wait for a disconnect
            return await self.receive()
        remaining = self.start + self.grace + self.received / self.rate - time.monotonic()
        message: Message | None = None
        if remaining > 0:
            with anyio.move_on_after(remaining):
                message = await self.receive()
        if message is None:
            self.complete = True
            raise ApiError(
                408,
                f"the request body arrived too slowly: {self.received} bytes in "
                f"{time.monotonic() - self.start:.0f} s (a body gets {self.grace:g} s plus one "
                f"second per {self.rate} bytes)",
                headers={"Connection": "close"},
            )
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            self.complete = not message.get("more_body", False)
        else:
            self.complete = True
        return message


def guarded_h11_protocol(settings: ServerSettings) -> type[asyncio.Protocol]:
    """uvicorn's HTTP/1.1 protocol with a connection cap and a deadline on request headers.

    uvicorn bounds only the idle time between requests (``timeout_keep_alive``), and any byte
    received cancels that; nothing bounds how long a request's headers take to arrive.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    header_seconds = settings.header_timeout_seconds
    max_connections = settings.max_connections
    refused_log = [0.0]

    class GuardedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            if len(self.connections) > max_connections:
                now = time.monotonic()
                if now - refused_log[0] > 10:
                    refused_log[0] = now
                    logger.warning(
                        "refusing connections beyond max_connections=%d", max_connections
                    )
                self.transport.close()
                return
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._header_timer is None and self._awaiting_request():
                self._arm()
            super().data_received(data)
            if not self._awaiting_request():
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _awaiting_request(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(header_seconds, self._headers_late)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self) -> None:
            self._header_timer = None
            if self._awaiting_request() and not self.transport.is_closing():
                logger.info(
                    "closing a connection from %s: no complete request headers in %g s",
                    f"{self.client[0]}:{self.client[1]}" if self.client else "?",
                    header_seconds,
                )
                self.transport.close()

    return GuardedH11Protocol
