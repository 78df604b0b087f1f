"""Remaining differences between ``despina serve`` and Neptune found with the official clients
(issue #14, deliverable 4): each test drives the unmodified neptune-scale / neptune-query client,
or sends what it sends, against a real server on 127.0.0.1."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from server_helpers import ServerProcess, Tokens, mint, run_logging_script

from despina.store import Store

pytestmark = pytest.mark.slow

pytest.importorskip("neptune_scale")

FILE_SERIES_BACKWARDS = """
from neptune_scale import Run
from neptune_scale.types import File

errors = []
with Run(run_id="files-backwards", enable_console_log_capture=False, source_tracking_config=None,
         on_error_callback=lambda exc, ts: errors.append(f"{type(exc).__name__}: {exc}")) as run:
    for step in (3, 2, 1):
        run.log_files({"files/series": File(f"file at {step}".encode(), mime_type="text/plain")},
                      step=step)
    print("LINK", run.get_run_url())
print("ERRORS", repr(errors))
"""


@pytest.fixture(scope="module")
def backwards(tokens: Tokens, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The lines the logging script printed, by their first word (LINK, ERRORS)."""
    result = run_logging_script(
        FILE_SERIES_BACKWARDS, tmp_path_factory.mktemp("backwards"), tokens.project
    )
    lines = (line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    return {word: rest for word, rest in lines if word in ("LINK", "ERRORS")}


def series_points(home: Path, run_id: str, path: str) -> list[tuple[int, str]]:
    conn = Store.open(home).connection()
    return conn.execute(
        "SELECT p.step, p.value FROM points p JOIN attributes a ON a.id = p.attr_id "
        "JOIN runs r ON r.id = a.run_id WHERE r.run_id = ? AND a.path = ? ORDER BY p.step",
        (run_id, path),
    ).fetchall()


def test_file_series_keeps_every_file_of_decreasing_steps(
    server: ServerProcess, backwards: dict[str, str]
) -> None:
    points = series_points(server.home, "files-backwards", "files/series")
    assert [step for step, _ in points] == [1_000_000, 2_000_000, 3_000_000]
    assert backwards["ERRORS"] == "[]"


def test_the_printed_run_link_opens_the_run_page(
    server: ServerProcess, tokens: Tokens, backwards: dict[str, str]
) -> None:
    link = backwards["LINK"]
    assert link == f"{server.url}/ws/proj/-/run/?customId=files-backwards"
    with httpx.Client(follow_redirects=False, timeout=30) as browser:
        # not signed in: the sign-in page, coming back to the link afterwards
        first = browser.get(link)
        assert first.status_code == 303, first.text
        assert first.headers["location"] == "/sign-in?" + urlencode(
            {"next": "/ws/proj/-/run/?customId=files-backwards"}
        )
        form = browser.get(server.url + "/sign-in")
        found = re.search(r'name="csrf" value="([^"]*)"', form.text)
        data = {"token": tokens.project, "next": "/projects"}
        if found:
            data["csrf"] = found.group(1)
        assert browser.post(server.url + "/sign-in", data=data).status_code == 303
        # signed in: the run's page
        answer = browser.get(link)
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == "/p/ws/proj/run?id=files-backwards"
        page = browser.get(server.url + answer.headers["location"])
        assert page.status_code == 200 and "files-backwards" in page.text
        # another project's link: refused as every page of it is
        other = browser.get(f"{server.url}/ws/other/-/run/?customId=files-backwards")
        assert other.status_code == 403
        missing = browser.get(f"{server.url}/ws/proj/-/run/")
        assert missing.status_code == 400 and "customId" in missing.text


LONG_RUNS = ("long-0", "long-1", "long-2")
LONG_METRICS = 4_000


def long_path(i: int) -> str:
    """A 1,024-character attribute path (the longest the clients allow)."""
    head = f"metrics/{i:05d}/"
    return head + "x" * (1024 - len(head))


def test_float_series_of_long_paths_as_the_client_batches_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nq = pytest.importorskip("neptune_query")
    nq_runs = pytest.importorskip("neptune_query.runs")
    home = tmp_path / "home"
    monkeypatch.setenv("DESPINA_HOME", str(home))
    # the client sends up to 10,000 series per request; by default it also caps a request's
    # path bytes at 220,000, which a user may raise: then 10,000 series of 1,024-character
    # paths go in one request (about 12 MB of JSON)
    monkeypatch.setenv("NEPTUNE_QUERY_MAX_REQUEST_SIZE", str(10**9))
    import despina

    for run_id in LONG_RUNS:
        with despina.Run(
            project="ws/proj",
            run_id=run_id,
            enable_console_log_capture=False,
            source_tracking_config=None,
        ) as run:
            run.log_metrics({long_path(i): float(i) for i in range(LONG_METRICS)}, step=1)
            run.log_metrics({long_path(i): float(i) + 0.5 for i in range(LONG_METRICS)}, step=2)
    server = ServerProcess(home)
    server.start()
    try:
        token = mint(server.home, server.url, project="proj", workspace="ws")
        nq.set_api_token(token)
        frame = nq_runs.fetch_metrics(
            project="ws/proj",
            runs=list(LONG_RUNS),
            attributes=r"^metrics/",
        )
        # still bounded: a body past the series limit is refused before it is parsed
        access = httpx.get(
            server.url + "/api/backend/v1/authorization/oauth-token",
            headers={"X-Neptune-Api-Token": token},
        ).json()["accessToken"]
        huge = httpx.post(
            server.url + "/api/leaderboard/v1/proto/attributes/series/float",
            content=b" " * (33 * 1024 * 1024),
            headers={"Authorization": f"Bearer {access}", "Content-Type": "application/json"},
            timeout=60,
        )
        assert huge.status_code == 413, huge.text
    finally:
        server.stop()
    assert frame.shape == (len(LONG_RUNS) * 2, LONG_METRICS)
    assert frame[long_path(7)].tolist() == [7.0, 7.5] * len(LONG_RUNS)
