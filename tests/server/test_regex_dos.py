"""Regular expressions cannot stall the server (issue #12, finding 1).

User patterns ran on Python's ``re``, which backtracks and holds the GIL: ``(.*)*!`` over a
27-character name kept every thread of the server waiting for half a minute. They run on RE2 now:
against a real ``despina serve``, catastrophic patterns in the definitions endpoint and in NQL
``MATCHES`` are answered quickly while unrelated requests keep being answered; unsupported
constructs and over-long patterns are a 400 naming the pattern.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from neptune_api.proto.neptune_pb.ingest.v1 import common_pb2 as c
from neptune_api.proto.neptune_pb.ingest.v1.pub.ingest_pb2 import RunOperation
from server_helpers import PROJECT, ServerProcess, Tokens

from despina.userregex import MAX_PATTERN_LENGTH

LONG_ID = "r" * 27
LONG_NAME = "params/" + "a" * 20
"""27 characters each: under Python's ``re`` one ``(.*)*!`` search over them took 16-40 s."""

DEFINITIONS = "/api/leaderboard/v1/leaderboard/attributes/definitions/query"
SEARCH = "/api/leaderboard/v1/proto/leaderboard/entries/search/"
UNRELATED = "/api/backend/v1/clients/config"


@pytest.fixture(scope="module")
def headers(server: ServerProcess, tokens: Tokens) -> dict[str, str]:
    """A bearer for ws/proj, after logging one run with a long id and a long attribute name."""
    answer = httpx.get(
        server.url + "/api/backend/v1/authorization/oauth-token",
        headers={"X-Neptune-Api-Token": tokens.project},
    )
    bearer = {"Authorization": f"Bearer {answer.json()['accessToken']}"}
    ops = [
        RunOperation(project=PROJECT, run_id=LONG_ID, create=c.Run(run_id=LONG_ID)),
        RunOperation(
            project=PROJECT,
            run_id=LONG_ID,
            update_batch=c.UpdateRunSnapshots(
                snapshots=[
                    c.UpdateRunSnapshot(
                        step=c.Step(whole=1),
                        timestamp=Timestamp(seconds=1_700_000_000),
                        assign={LONG_NAME: c.Value(string="x")},
                    )
                ]
            ),
        ),
    ]
    for op in ops:
        response = httpx.post(
            server.url + "/api/client/v1/ingest",
            content=op.SerializeToString(),
            headers=bearer,
            timeout=30,
        )
        assert response.status_code == 200, response.text
    deadline = time.monotonic() + 30
    while LONG_NAME not in _names(server, bearer, "^params/"):
        assert time.monotonic() < deadline, "the logged attribute never became visible"
        time.sleep(0.1)
    return bearer


def _definitions(server: ServerProcess, headers: dict[str, str], regex: str) -> httpx.Response:
    body = {
        "projectIdentifiers": [PROJECT],
        "attributeNameFilter": {"mustMatchAny": [{"mustMatchRegexes": [regex]}]},
    }
    return httpx.post(server.url + DEFINITIONS, json=body, headers=headers, timeout=120)


def _names(server: ServerProcess, headers: dict[str, str], regex: str) -> list[str]:
    response = _definitions(server, headers, regex)
    assert response.status_code == 200, response.text
    return [entry["name"] for entry in response.json()["entries"]]


def _search(server: ServerProcess, headers: dict[str, str], nql: str) -> httpx.Response:
    return httpx.post(
        server.url + SEARCH,
        params={"projectIdentifier": PROJECT},
        json={"query": {"query": nql}},
        headers=headers,
        timeout=120,
    )


def test_catastrophic_patterns_do_not_stall_other_requests(
    server: ServerProcess, headers: dict[str, str]
) -> None:
    """While catastrophic patterns are being matched, an unrelated request is answered fast.

    The issue asks for <= 100 ms; the assertion allows 1 s so that a loaded test machine does not
    flake, which still separates fixed (milliseconds) from broken (the server stalled for tens of
    seconds per pattern).
    """
    heavy: list[tuple[str, int, float]] = []

    def hammer() -> None:
        for _ in range(5):
            for name, call in (
                ("definitions", lambda: _definitions(server, headers, "(.*)*!")),
                ("definitions sys/", lambda: _definitions(server, headers, "^sys/(.*)*!")),
                ("nql", lambda: _search(server, headers, '`sys/custom_run_id` MATCHES "(.*)*!"')),
                ("nql untyped", lambda: _search(server, headers, '`sys/name` MATCHES "(.+)+x"')),
            ):
                start = time.monotonic()
                status = call().status_code
                heavy.append((name, status, time.monotonic() - start))

    worker = threading.Thread(target=hammer, daemon=True)
    worker.start()
    latencies: list[float] = []
    deadline = time.monotonic() + 20
    with httpx.Client(timeout=5) as client:
        while worker.is_alive() and time.monotonic() < deadline:
            start = time.monotonic()
            try:
                ok = client.get(server.url + UNRELATED).status_code == 200
            except httpx.TimeoutException:
                ok = False
            latencies.append(time.monotonic() - start if ok else float("inf"))
            time.sleep(0.01)
    worker.join(timeout=1)
    assert latencies and max(latencies) < 1.0, sorted(latencies)[-5:]
    assert not worker.is_alive(), f"catastrophic requests still running after 20 s: {heavy}"
    assert [status for _, status, _ in heavy] == [200] * 20, heavy
    assert max(seconds for _, _, seconds in heavy) < 5.0, heavy


def test_definitions_refuse_what_re2_does_not_support(
    server: ServerProcess, headers: dict[str, str]
) -> None:
    for regex, reason in (
        ("(?=x)", "lookahead"),
        ("(a)\\1", "backreferences"),
        ("a(b", "missing )"),
    ):
        response = _definitions(server, headers, regex)
        assert response.status_code == 400, response.text
        message: Any = response.json()["message"]
        assert repr(regex) in message and reason in message, message


def test_nql_refuses_what_re2_does_not_support(
    server: ServerProcess, headers: dict[str, str]
) -> None:
    for regex, reason in (("(?=x)", "lookahead"), ("(a)\\\\1", "backreferences")):
        nql = f'`sys/name` MATCHES "{regex}"'
        response = _search(server, headers, nql)
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["position"] == nql.index('"'), body
        assert "invalid regular expression" in body["message"] and reason in body["message"]


def test_patterns_over_the_bound_are_refused(
    server: ServerProcess, headers: dict[str, str]
) -> None:
    at_bound = "a" * MAX_PATTERN_LENGTH
    assert _names(server, headers, at_bound) == []
    response = _definitions(server, headers, at_bound + "b")
    assert response.status_code == 400, response.text
    assert f"limited to {MAX_PATTERN_LENGTH:,} characters" in response.json()["message"]
    response = _search(server, headers, f'`sys/name` MATCHES "{at_bound}b"')
    assert response.status_code == 400, response.text
    assert f"limited to {MAX_PATTERN_LENGTH:,} characters" in response.json()["message"]
