"""The plain-http transport of the remote clients (``despina.store.http.plain``) against a real
``despina serve``: connections are kept alive and shared, one the server closed meanwhile (its
keep-alive ran out, it restarted) is replaced without a retry, answers stream, failures are
httpx transport errors, and https keeps httpx's own transport."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from despina.store.http import connection as connection_module
from despina.store.http.connection import ServerConnection, ServerUnreachable
from despina.store.http.plain import PlainHttpTransport
from serving import ServerProcess, free_port, mint, serving_new_store


@pytest.fixture(scope="module")
def server(
    module_store: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("plain") / "home"
    args = ("--no-access-log", "--keep-alive-timeout", "1")
    with serving_new_store(home, ("team/birds",), extra_args=args) as proc:
        yield proc


def _transport(connection: ServerConnection) -> PlainHttpTransport:
    transport = connection._client._transport
    assert isinstance(transport, PlainHttpTransport)
    return transport


def _no_retry_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the retry loop's sleeps instead of sleeping."""
    slept: list[float] = []
    fake = SimpleNamespace(sleep=slept.append, monotonic=time.monotonic)  # deadlines still count
    monkeypatch.setattr(connection_module, "time", fake)
    return slept


def test_requests_share_a_kept_alive_connection(server: ServerProcess) -> None:
    connection = ServerConnection(mint(server.home, server.url, workspace="team"))
    try:
        transport = _transport(connection)
        assert connection.post_json("/query/projects", {}) == ["team/birds"]
        (first,) = transport._idle
        assert connection.post_json("/query/projects", {}) == ["team/birds"]
        assert transport._idle == [first]  # the same connection again
    finally:
        connection.close()
    assert transport._idle == []


def test_threads_each_get_a_connection(server: ServerProcess) -> None:
    connection = ServerConnection(mint(server.home, server.url, workspace="team"))
    results: list[object] = []
    try:
        threads = [
            threading.Thread(
                target=lambda: results.append(connection.post_json("/query/projects", {}))
            )
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == [["team/birds"]] * 4
        assert 1 <= len(_transport(connection)._idle) <= 4
    finally:
        connection.close()


def test_a_connection_the_server_closed_is_replaced_without_a_retry(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept = _no_retry_sleep(monkeypatch)
    connection = ServerConnection(mint(server.home, server.url, workspace="team"))
    try:
        transport = _transport(connection)
        connection.post_json("/query/projects", {})
        (old,) = transport._idle
        time.sleep(2.5)  # past the server's keep-alive (1 s: whole seconds): it closed it
        assert connection.post_json("/query/projects", {}) == ["team/birds"]
        (new,) = transport._idle
        assert new is not old
        server.stop()
        server.start()  # on the same port: every kept connection is gone
        assert connection.post_json("/query/projects", {}) == ["team/birds"]
        assert slept == []
    finally:
        connection.close()


def test_answers_stream_and_failures_are_transport_errors(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    connection = ServerConnection(mint(server.home, server.url, workspace="team"))
    try:
        target = tmp_path / "missing"
        body = {"project": "team/birds", "key": "nothing-here"}
        assert connection.download("/query/file", body, target) is False
        assert not target.exists()
        assert connection.post_json("/query/projects", {}) == ["team/birds"]  # still usable
    finally:
        connection.close()
    slept = _no_retry_sleep(monkeypatch)
    nobody = f"http://127.0.0.1:{free_port()}"
    unreachable = ServerConnection(mint(server.home, nobody, workspace="team"))
    try:
        with pytest.raises(ServerUnreachable, match="did not answer: ConnectError"):
            unreachable.post_json("/query/projects", {})
        assert len(slept) == 4
    finally:
        unreachable.close()
    with (
        httpx.Client(transport=PlainHttpTransport()) as client,
        pytest.raises(httpx.UnsupportedProtocol),
    ):
        client.get("https://127.0.0.1:1/")


def test_https_keeps_httpx_transport(server: ServerProcess) -> None:
    connection = ServerConnection(mint(server.home, "https://127.0.0.1:1", workspace="team"))
    try:
        assert not isinstance(connection._client._transport, PlainHttpTransport)
    finally:
        connection.close()
