"""A server whose address drops packets (a firewall, a laptop off the VPN) does not hold
``despina.Run()`` for the connection's five connect timeouts: requests with a deadline connect
for no longer than it and start no attempt after it. No server is needed: the transport
refuses every connection with a connect timeout, as such an address does."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from despina.client.remote import FIRST_SEND_SECONDS, Sender
from despina.store.http import connection as connection_module
from despina.store.http.connection import ServerConnection, ServerUnreachable
from despina.store.http.queue import LogQueue

URL = "http://127.0.0.1:9"  # never contacted: the transport below answers every request


def _dropping_connection() -> tuple[ServerConnection, list[float]]:
    """A connection whose every attempt times out connecting; the connect timeouts it was
    given are recorded."""
    token = base64.b64encode(json.dumps({"api_url": URL, "api_key": "k" * 16}).encode()).decode()
    connection = ServerConnection(token)
    connects: list[float] = []

    def drop(request: httpx.Request) -> httpx.Response:
        connects.append(float(request.extensions["timeout"]["connect"]))
        raise httpx.ConnectTimeout("timed out", request=request)

    connection._client = httpx.Client(base_url=URL, transport=httpx.MockTransport(drop))
    return connection, connects


def test_a_request_with_a_deadline_connects_and_retries_only_until_it() -> None:
    connection, connects = _dropping_connection()
    deadline = time.monotonic() + 1.0
    with pytest.raises(ServerUnreachable, match=URL):
        connection.post_json("/runs/ping", {}, deadline=deadline)
    assert connects and all(c <= 1.0 for c in connects)
    assert len(connects) < 5  # the back-off's next attempt would start after the deadline


def test_run_creation_gives_up_within_its_first_send_deadline(tmp_path: Path) -> None:
    connection, connects = _dropping_connection()
    queue = LogQueue.create(tmp_path, "r", {"server": URL, "project": "ws/p", "run_id": "r"})
    queue.append("create", json.dumps({"run_id": "r"}).encode())
    sender = Sender(connection, queue)
    with pytest.raises(ServerUnreachable):
        sender.send_first()
    assert connects and all(c <= FIRST_SEND_SECONDS for c in connects)
    assert queue.remaining() == 1  # kept for the sender thread
    queue.close()


def test_a_request_without_a_deadline_gives_up_after_its_patience(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a clock that each dropped connection advances by its whole connect timeout (as an
    address that drops packets does), a query gives up after about 15 s, not five timeouts."""
    connection, connects = _dropping_connection()
    clock = [1000.0]
    fake_time = SimpleNamespace(
        monotonic=lambda: clock[0], sleep=lambda s: clock.__setitem__(0, clock[0] + s)
    )
    monkeypatch.setattr(connection_module, "time", fake_time)  # this module's clock only

    def drop(request: httpx.Request) -> httpx.Response:
        wait = float(request.extensions["timeout"]["connect"])
        connects.append(wait)
        clock[0] += wait
        raise httpx.ConnectTimeout("timed out", request=request)

    connection._client = httpx.Client(base_url=URL, transport=httpx.MockTransport(drop))
    with pytest.raises(ServerUnreachable, match=URL):
        connection.post_json("/query/projects", {})
    assert clock[0] - 1000.0 <= 16.0  # five 10 s connect timeouts took 50 s
    assert len(connects) >= 2
