"""Limits and fairness (issue #12, findings 10 and 11): slow connections are cut off, requests
beyond a cap are throttled, heavy reads do not starve ingest, and a busy store answers fast.

Every test talks to a real server on 127.0.0.1: a ``despina serve`` subprocess, or (to inject
a synthetic slow read) uvicorn in a thread serving the same application and protocol.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import uvicorn
from neptune_api.proto.neptune_pb.ingest.v1 import common_pb2 as c
from neptune_api.proto.neptune_pb.ingest.v1.pub.ingest_pb2 import RunOperation
from server_helpers import PROJECT, ServerProcess, free_port, mint

from despina.errors import ConfigError
from despina.server.app import create_app
from despina.server.limits import RateLimiter, guarded_h11_protocol
from despina.server.settings import ServerSettings
from despina.store import Store
from serving import hold_store_writes

CONFIG = "/api/backend/v1/clients/config"
INGEST = "/api/client/v1/ingest"
REFRESH = "/auth/realms/neptune/protocol/openid-connect/token"
EXCHANGE = "/api/backend/v1/authorization/oauth-token"
FLOAT_SERIES = "/api/leaderboard/v1/proto/attributes/series/float"

# small limits so that each test takes seconds
TIGHT = (
    "--header-timeout",
    "1",
    "--body-timeout",
    "1",
    "--body-min-rate",
    "1000",
    "--max-read-requests",
    "2",
    "--max-connections",
    "12",
)


def _home(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    home = tmp_path_factory.mktemp(name) / "home"
    store = Store.open(home)
    store.create_project(PROJECT, exist_ok=True)  # over PostgreSQL both servers share one database
    store.close()
    return home


@pytest.fixture(scope="module")
def tight(
    module_store: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server with the small limits of :data:`TIGHT`."""
    proc = ServerProcess(_home(tmp_path_factory, "tight"), extra_args=TIGHT)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def default(
    module_store: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server with the default limits."""
    proc = ServerProcess(_home(tmp_path_factory, "default"))
    proc.start()
    yield proc
    proc.stop()


def _bearer(server: ServerProcess) -> dict[str, str]:
    token = mint(server.home, server.url, workspace="ws", project="proj")
    answer = httpx.get(server.url + EXCHANGE, headers={"X-Neptune-Api-Token": token})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['accessToken']}"}


def _connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.settimeout(0.05)
    return sock


def _closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> tuple[bool, bytes]:
    """Trickle one byte of ``trickle`` every 0.1 s until the server closes the connection or
    ``seconds`` pass; returns (closed, what the server sent)."""
    received = b""
    deadline = time.monotonic() + seconds
    index = 0
    while time.monotonic() < deadline:
        try:
            if trickle:
                sock.send(trickle[index % len(trickle) : index % len(trickle) + 1])
                index += 1
            chunk = sock.recv(65536)
        except TimeoutError:
            time.sleep(0.05)
            continue
        except (BrokenPipeError, ConnectionResetError):
            return True, received
        if not chunk:
            return True, received
        received += chunk
    return False, received


def _run_op(run_id: str) -> bytes:
    op = RunOperation(project=PROJECT, run_id=run_id, create=c.Run(run_id=run_id))
    return op.SerializeToString()


def test_settings_refuse_unusable_limits() -> None:
    with pytest.raises(ConfigError, match="read_threads must be positive, got 0"):
        ServerSettings.from_env(read_threads=0)
    assert ServerSettings().store_busy_seconds < 30  # under the clients' 30 s timeout


def test_slow_headers_are_cut_off_while_others_are_served(tight: ServerProcess) -> None:
    """Slowloris: headers trickled one byte at a time, or never sent, do not hold a
    connection past the header deadline (1 s here); other clients are served meanwhile."""
    trickling = _connect(tight)
    trickling.sendall(b"GET " + CONFIG.encode() + b" HTTP/1.1\r\nHost: x\r\n")
    silent = _connect(tight)
    served: list[int] = []

    def other_client() -> None:
        served.append(httpx.get(tight.url + CONFIG, timeout=5).status_code)

    thread = threading.Thread(target=other_client)
    thread.start()
    closed, _ = _closed_within(trickling, 5, trickle=b"X-Slow: 1\r\n")
    thread.join()
    assert closed, "a connection trickling its headers stayed open for 5 s"
    assert served == [200]
    assert _closed_within(silent, 2)[0], "a connection that sent nothing stayed open"
    trickling.close()
    silent.close()


def test_slow_body_is_answered_408(tight: ServerProcess) -> None:
    """A body trickled far below the minimum rate is answered 408 and its connection closed."""
    sock = _connect(tight)
    sock.sendall(
        b"POST " + REFRESH.encode() + b" HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 10000\r\n\r\n"
    )
    closed, answer = _closed_within(sock, 6, trickle=b"grant_type=refresh_token&")
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"too slowly" in answer and closed


def test_connections_beyond_the_cap_are_closed(tight: ServerProcess) -> None:
    """Beyond --max-connections (12 here) a new connection is closed at once."""
    held = [_connect(tight) for _ in range(12)]
    try:
        extra = _connect(tight)
        assert _closed_within(extra, 0.8)[0], "a 13th connection was kept open"
        extra.close()
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    assert httpx.get(tight.url + CONFIG, timeout=5).status_code == 200


def test_reads_beyond_the_cap_get_429_and_writes_still_pass(tight: ServerProcess) -> None:
    """Two reads in progress (the cap here) make a third one 429 + Retry-After; requests of
    the write class (tokens, ingest) are counted apart and still served."""
    headers = _bearer(tight)
    auth = headers["Authorization"].encode()
    slow = []
    for _ in range(2):  # two reads in progress: their bodies arrive slowly (1 s of grace)
        sock = _connect(tight)
        sock.sendall(
            b"POST "
            + FLOAT_SERIES.encode()
            + b" HTTP/1.1\r\nHost: x\r\nAuthorization: "
            + auth
            + b"\r\nContent-Type: application/x-protobuf\r\nContent-Length: 100\r\n\r\n"
        )
        slow.append(sock)
    time.sleep(0.3)
    try:
        third = httpx.post(tight.url + FLOAT_SERIES, content=b"", headers=headers, timeout=5)
        assert third.status_code == 429, third.text
        assert third.headers["Retry-After"] == "1"
        assert "read requests in progress" in third.json()["message"]
        ingest = httpx.post(tight.url + INGEST, content=_run_op("r1"), headers=headers)
        assert ingest.status_code == 200, ingest.text
    finally:
        for sock in slow:
            sock.close()
    time.sleep(1.5)
    after = httpx.post(tight.url + FLOAT_SERIES, content=b"", headers=headers, timeout=5)
    assert after.status_code != 429, after.text


def test_a_busy_store_answers_ingest_429_fast(default: ServerProcess) -> None:
    """With the store's write lock held elsewhere, ingest is answered 429 + Retry-After after
    the server's short lock wait (5 s by default), well within the clients' 30 s timeout."""
    headers = _bearer(default)
    with hold_store_writes(default.home):
        start = time.monotonic()
        busy = httpx.post(
            default.url + INGEST, content=_run_op("busy"), headers=headers, timeout=30
        )
        elapsed = time.monotonic() - start
    assert busy.status_code == 429, busy.text
    assert busy.headers["Retry-After"] == "1"
    assert elapsed < 15, f"answered after {elapsed:.1f} s"
    done = httpx.post(default.url + INGEST, content=_run_op("busy"), headers=headers, timeout=30)
    assert done.status_code == 200, done.text


def test_invalid_refresh_tokens_do_not_take_the_write_lock(default: ServerProcess) -> None:
    """The refresh endpoint needs no access token: an unknown refresh token is refused with
    reads only, so it is answered 401 at once even while the write lock is held elsewhere."""
    token = mint(default.home, default.url, workspace="ws", project="proj")
    pair = httpx.get(default.url + EXCHANGE, headers={"X-Neptune-Api-Token": token}).json()
    with hold_store_writes(default.home):
        for forged in ("not-a-token", "x" * 43, "y" * 10_000):
            start = time.monotonic()
            answer = httpx.post(
                default.url + REFRESH,
                data={"grant_type": "refresh_token", "refresh_token": forged},
                timeout=3,
            )
            assert answer.status_code == 401, answer.text
            assert time.monotonic() - start < 2
        payload = json.loads(base64.b64decode(token))  # a known key id, a wrong secret
        payload["api_key"] = payload["api_key"].split(".")[0] + ".wrong-secret"
        forged_api_token = base64.b64encode(json.dumps(payload).encode()).decode()
        start = time.monotonic()
        answer = httpx.get(
            default.url + EXCHANGE, headers={"X-Neptune-Api-Token": forged_api_token}, timeout=3
        )
        assert answer.status_code == 401, answer.text
        assert time.monotonic() - start < 2
    # a valid token still rotates, once
    form = {"grant_type": "refresh_token", "refresh_token": pair["refreshToken"]}
    rotated = httpx.post(default.url + REFRESH, data=form)
    assert rotated.status_code == 200, rotated.text
    assert httpx.post(default.url + REFRESH, data=form).status_code == 401


def test_token_requests_are_rate_limited_per_client(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    proc = ServerProcess(_home(tmp_path_factory, "rate"), extra_args=("--auth-rate", "1"))
    proc.start()
    try:
        form = {"grant_type": "refresh_token", "refresh_token": "forged"}
        with httpx.Client(base_url=proc.url, timeout=5) as client:
            statuses = [client.post(REFRESH, data=form) for _ in range(60)]
        codes = [r.status_code for r in statuses]
        assert set(codes) == {401, 429}, codes
        assert codes[:50] == [401] * 50  # the burst
        limited = statuses[-1]
        assert int(limited.headers["Retry-After"]) >= 1
        assert "too many token requests" in limited.json()["message"]
    finally:
        proc.stop()


def test_rate_limiter_refills() -> None:
    limiter = RateLimiter(rate=1000.0, burst=2)
    assert [limiter.wait("a") for _ in range(2)] == [0.0, 0.0]
    assert limiter.wait("a") > 0 and limiter.wait("b") == 0.0
    time.sleep(0.01)
    assert limiter.wait("a") == 0.0


# -- heavy reads and ingest --------------------------------------------------------------------


class ThreadServer:
    """The despina application under uvicorn (with despina's protocol) in a thread."""

    def __init__(self, store: Store, settings: ServerSettings) -> None:
        self.app = create_app(store, settings)
        self.port = free_port()
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            http=guarded_h11_protocol(settings),
            ws="none",
            log_config=None,
            access_log=False,
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(20)


def test_heavy_reads_do_not_starve_ingest(tmp_path: Path) -> None:
    """More slow reads than there are threads in all (the old shared pool had 40) keep every
    read thread busy; an ingest request is still answered at once, on the write threads."""
    home = tmp_path / "home"
    store = Store.open(home)
    store.create_project(PROJECT)
    settings = ServerSettings(read_threads=4, max_read_requests=64)
    with ThreadServer(store, settings) as server:
        release = threading.Event()

        def slow_read(*args: object) -> None:  # a heavy chart read holding its thread
            release.wait(20)
            raise RuntimeError("released")

        server.app.state.despina.retrieval.float_series = slow_read
        token = mint(home, server.url, workspace="ws", project="proj")
        bearer = httpx.get(server.url + EXCHANGE, headers={"X-Neptune-Api-Token": token})
        headers = {"Authorization": f"Bearer {bearer.json()['accessToken']}"}
        with ThreadPoolExecutor(44) as pool:
            reads = [
                pool.submit(httpx.post, server.url + FLOAT_SERIES, headers=headers, timeout=30)
                for _ in range(44)
            ]
            time.sleep(1.0)  # every read is in progress
            try:
                start = time.monotonic()
                ingest = httpx.post(
                    server.url + INGEST, content=_run_op("fair"), headers=headers, timeout=10
                )
                elapsed = time.monotonic() - start
            finally:
                release.set()
            assert ingest.status_code == 200, ingest.text
            assert elapsed < 3, f"ingest answered after {elapsed:.1f} s behind slow reads"
            assert all(r.result().status_code == 500 for r in reads)
    store.close()
