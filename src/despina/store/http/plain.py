"""An HTTP/1.1 transport for ``httpx`` over the standard library's ``http.client``, for servers
reached over plain http.

httpx's own transport imports httpcore, which imports h2 and the trio backend whenever they are
installed (neptune-scale brings h2): 25-30 ms of a fresh process's first remote call, for
features a plain-http connection to ``despina serve`` never uses. This transport keeps what the
client needs: kept-alive connections shared by threads, the request's connect and read timeouts,
streamed answers, and failures raised as ``httpx.TransportError`` subclasses (which
:class:`~despina.store.http.connection.ServerConnection` retries). https keeps httpx's own
transport (certificate verification, HTTP/2).
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
from collections.abc import Iterator

import httpx

__all__ = ["PlainHttpTransport"]

_BLOCK = 1 << 16
_MAX_IDLE = 16
"""Idle connections kept at most (one per thread that sent a request, usually)."""


class PlainHttpTransport(httpx.BaseTransport):
    """Requests to one plain-http origin over kept-alive ``http.client`` connections."""

    def __init__(self) -> None:
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme != "http":
            raise httpx.UnsupportedProtocol(f"{request.url.scheme!r} needs httpx's own transport")
        timeouts = request.extensions.get("timeout", {})
        body = request.read()
        target = request.url.raw_path.decode("ascii")
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        conn, reused = self._connection(request.url, timeouts.get("connect"))
        try:
            conn.sock.settimeout(timeouts.get("read"))  # the connect timeout until now
            conn.putrequest(request.method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value)
            conn.endheaders(body or None)  # headers and a small body in one send
            answer = conn.getresponse()
        except BaseException as exc:
            conn.close()
            if reused and isinstance(exc, http.client.RemoteDisconnected | ConnectionError):
                # the server closed the kept-alive connection meanwhile: once on a new one
                return self.handle_request(request)
            raise _transport_error(exc, request) from exc
        return httpx.Response(
            answer.status,
            headers=answer.getheaders(),
            stream=_Answer(self, conn, answer, request),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": answer.reason.encode()},
        )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _connection(
        self, url: httpx.URL, connect_timeout: float | None
    ) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection still open (``True``), else a new one (``False``)."""
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                break
            if _usable(conn):
                return conn, True
            conn.close()
        conn = http.client.HTTPConnection(url.host, url.port or 80, timeout=connect_timeout)
        try:
            conn.connect()
        except BaseException as exc:
            conn.close()
            if isinstance(exc, TimeoutError | socket.timeout):
                raise httpx.ConnectTimeout(str(exc)) from exc
            if isinstance(exc, OSError):
                raise httpx.ConnectError(str(exc)) from exc
            raise
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, False

    def _release(self, conn: http.client.HTTPConnection, reusable: bool) -> None:
        with self._lock:
            if reusable and not self._closed and len(self._idle) < _MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()


def _usable(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle connection is still open: one with something to read while idle was
    closed by the server (or sent something unasked); either way it cannot carry a request."""
    sock = conn.sock
    if sock is None:
        return False
    timeout = sock.gettimeout()
    try:
        sock.setblocking(False)
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True  # nothing to read: open and quiet
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(timeout)
    return False


def _transport_error(exc: BaseException, request: httpx.Request) -> BaseException:
    if isinstance(exc, TimeoutError | socket.timeout):
        return httpx.ReadTimeout(str(exc), request=request)
    if isinstance(exc, http.client.HTTPException):
        return httpx.RemoteProtocolError(str(exc) or type(exc).__name__, request=request)
    if isinstance(exc, OSError):
        return httpx.ReadError(str(exc), request=request)
    return exc


class _Answer(httpx.SyncByteStream):
    """The body of one answer; the connection goes back to the idle ones once it is read."""

    def __init__(
        self,
        transport: PlainHttpTransport,
        conn: http.client.HTTPConnection,
        answer: http.client.HTTPResponse,
        request: httpx.Request,
    ) -> None:
        self._transport = transport
        self._conn = conn
        self._answer = answer
        self._request = request
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            while True:
                chunk = self._answer.read1(_BLOCK)
                if not chunk:
                    break
                yield chunk
        except BaseException as exc:
            self._finish(reusable=False)
            raise _transport_error(exc, self._request) from exc
        self._finish(reusable=not self._answer.will_close)

    def close(self) -> None:
        # an answer closed before it was read to the end leaves its connection mid-body
        self._finish(reusable=False)

    def _finish(self, *, reusable: bool) -> None:
        if self._done:
            return
        self._done = True
        self._answer.close()
        self._transport._release(self._conn, reusable)
