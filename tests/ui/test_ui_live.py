"""Live runs in the web UI against a real ``despina serve``: the runs table shows each run's
state, and a running run's charts and table rows update without a reload, fetching only the
points logged since the browser's last step (``chart-tail.json``, ``runs-live.json``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from ui_helpers import ServerProcess, Tokens, sign_in, watch_errors

import despina
from despina.demo import DEMO_PROJECT

pytestmark = pytest.mark.slow

PROJECT = "/p/demo/despina"


def _client(server: ServerProcess, token: str) -> httpx.Client:
    client = httpx.Client(base_url=server.url, follow_redirects=False, timeout=30)
    assert sign_in(client, token).status_code == 303
    return client


def _run(server: ServerProcess, run_id: str) -> despina.Run:
    return despina.Run(
        project=DEMO_PROJECT,
        run_id=run_id,
        home=server.home,
        enable_console_log_capture=False,
        source_tracking_config=None,
    )


def _log(run: despina.Run, steps: range) -> None:
    for step in steps:
        run.log_metrics({"train/loss": 1.0 / (step + 1), "train/acc": step / 1000}, step=step)
    assert run.wait_for_processing(timeout=30)


def test_a_poll_returns_only_the_new_points(server: ServerProcess, tokens: Tokens) -> None:
    client = _client(server, tokens.workspace)
    run = _run(server, "live-http")
    try:
        _log(run, range(100))
        charts = client.get(f"{PROJECT}/charts.json", params={"run": "live-http"}).json()
        assert charts["states"] == {"live-http": "running"}
        full = client.get(
            f"{PROJECT}/chart.json", params={"run": "live-http", "metric": "train/loss"}
        ).json()
        assert full["lines"][0]["last_step"] == 99
        assert full["states"] == {"live-http": "running"}
        _log(run, range(100, 150))
        tail = client.get(
            f"{PROJECT}/chart-tail.json",
            params={"run": "live-http", "after": "99", "metric": "train/loss"},
        )
        assert tail.status_code == 200, tail.text
        line = tail.json()["lines"][0]
        assert line["x"] == list(range(100, 150))
        assert line["y"] == [1.0 / (s + 1) for s in range(100, 150)]
        assert line["last_step"] == 149 and line["points"] == 50
        # bucketed like the chart: a width of 10 steps gives 5 buckets
        wide = client.get(
            f"{PROJECT}/chart-tail.json",
            params={"run": "live-http", "after": "99", "metric": "train/loss", "width": "10"},
        ).json()["lines"][0]
        assert wide["x"] == [109, 119, 129, 139, 149]
        assert wide["high"][0] == 1.0 / 101 and wide["low"][0] == 1.0 / 110
        # nothing new: nothing sent
        empty = client.get(
            f"{PROJECT}/chart-tail.json",
            params={"run": "live-http", "after": "149", "metric": "train/loss"},
        ).json()
        assert empty["lines"][0]["x"] == [] and empty["lines"][0]["last_step"] == 149
        live = client.get(
            f"{PROJECT}/runs-live.json", params={"run": "live-http", "col": "train/loss"}
        ).json()
        (row,) = live["rows"]
        assert row["state"] == "running"
        assert row["cells"]["train/loss"]["value"] == 1.0 / 150
    finally:
        run.close()
    done = client.get(
        f"{PROJECT}/chart-tail.json",
        params={"run": "live-http", "after": "149", "metric": "train/loss"},
    ).json()
    assert done["states"] == {"live-http": "finished"}


def test_the_table_shows_each_runs_state(server: ServerProcess, tokens: Tokens) -> None:
    client = _client(server, tokens.workspace)
    rows = client.get(
        f"{PROJECT}/runs.json", params={"view": "runs", "limit": 100, "trashed": 1}
    ).json()["rows"]
    states = {row["run_id"]: row["state"] for row in rows}
    assert states["seagull-diverged"] == "failed"
    assert states["kittiwake-lr0.001-s1"] == "finished"
    page = client.get(PROJECT, params={"view": "runs", "trashed": 1}).text
    assert 'class="run-state s-failed"' in page


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"run": "live-http", "metric": "train/loss"}, "one after= per run="),
        ({"run": "live-http", "metric": "train/loss", "after": "x"}, "after must be a step"),
        ({"run": "live-http", "metric": "train/loss", "after": "1", "width": "0"}, "width"),
        ({"run": "live-http", "after": "1"}, "give the metric"),
    ],
)
def test_bad_poll_parameters_get_400(
    server: ServerProcess, tokens: Tokens, params: dict[str, Any], message: str
) -> None:
    answer = _client(server, tokens.workspace).get(f"{PROJECT}/chart-tail.json", params=params)
    assert answer.status_code == 400
    assert message in answer.json()["message"]


def test_polls_need_a_session(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url) as anonymous:
        for path in ("chart-tail.json", "runs-live.json"):
            assert anonymous.get(f"{PROJECT}/{path}", params={"run": "x"}).status_code == 401
