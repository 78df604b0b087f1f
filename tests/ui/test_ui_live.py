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


SECTION = "document.querySelector(\"section.chart[data-metric='train/loss']\")"
FINISHED_RUN = "kittiwake-lr0.001-s1"


@pytest.fixture(scope="module")
def context(browser: Any, server: ServerProcess, tokens: Tokens) -> Iterator[Any]:
    """A signed-in browser context, its tabs kept to the server under test."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(20_000)
    tab = context.new_page()
    tab.goto(server.url + "/sign-in")
    tab.fill("textarea[name=token]", tokens.workspace)
    tab.click("form[action='/sign-in'] button[type=submit]")
    tab.wait_for_url(server.url + "/projects")
    tab.close()
    yield context
    context.close()


def _tab(context: Any, server: ServerProcess) -> tuple[Any, list[str], list[str]]:
    tab = context.new_page()
    errors = watch_errors(tab)
    tab.route(
        lambda url: not url.startswith(server.url),
        lambda route: (errors.append(f"external request {route.request.url}"), route.abort()),
    )
    requests: list[str] = []
    tab.on("request", lambda request: requests.append(request.url))
    return tab, errors, requests


def test_charts_and_table_follow_a_running_run(context: Any, server: ServerProcess) -> None:
    run = _run(server, "live-browser")
    try:
        _log(run, range(50))
        charts, chart_errors, chart_requests = _tab(context, server)
        charts.goto(
            f"{server.url}{PROJECT}/charts?run=live-browser&run={FINISHED_RUN}&metric=train/loss"
        )
        charts.wait_for_function(f"() => {SECTION}.dataset.points")
        assert charts.get_attribute(
            "section.chart[data-metric='train/loss']", "data-points"
        ) == str(50 + 400)
        legend = charts.locator("#run-legend a")
        assert legend.evaluate_all("links => links.map(a => a.dataset.state)") == [
            "running",
            "finished",
        ]
        assert (
            charts.locator("#run-legend a[data-state=running] .live-label").text_content() == "live"
        )
        assert "1 live" in charts.locator("section.chart .state").first.text_content()
        charts.evaluate("() => { window.notReloaded = true; }")

        table, table_errors, table_requests = _tab(context, server)
        table.goto(f"{server.url}{PROJECT}?view=runs&col=train/loss")
        row = table.locator("tr[data-run='live-browser']")
        assert row.locator("td.run-state").text_content() == "running"
        assert table.locator(f"tr[data-run='{FINISHED_RUN}'] td.run-state").text_content() == (
            "finished"
        )
        assert row.locator("td").nth(3).get_attribute("title") == str(1.0 / 50)
        table.evaluate("() => { window.notReloaded = true; }")

        _log(run, range(50, 120))
        # the chart appends the 70 new points; the table row shows the new last value
        charts.wait_for_function(f"() => {SECTION}.dataset.points === '{120 + 400}'")
        table.wait_for_function(
            "() => document.querySelector(\"tr[data-run='live-browser'] td:nth-child(4)\")"
            f".title === '{1.0 / 120}'"
        )
        line = charts.evaluate(
            "() => window.despinaCharts[0].lines.find(l => l.run === 'live-browser')"
        )
        assert line["x"] == list(range(120)) and line["last_step"] == 119
        assert charts.evaluate("() => window.notReloaded") is True
        # the y axis keeps its tick labels through live updates
        ticks = charts.evaluate("() => window.despinaCharts[0].plot.axes[1]._values")
        assert ticks and all(float(t) >= 0 for t in ticks)
        assert table.evaluate("() => window.notReloaded") is True
        # only new points were fetched: no full chart reload, and each poll is small
        assert not [u for u in chart_requests if "/chart.json" in u and "charts?" not in u][1:]
        polls = charts.evaluate(
            "() => performance.getEntriesByType('resource')"
            ".filter(e => e.name.includes('/chart-tail.json'))"
            ".map(e => ({url: e.name, bytes: e.encodedBodySize}))"
        )
        assert polls and all("run=live-browser" in p["url"] for p in polls)
        assert all(FINISHED_RUN not in p["url"] for p in polls)  # finished runs are not asked
        assert max(p["bytes"] for p in polls) < 10_000
        assert any("/runs-live.json" in u for u in table_requests)
    finally:
        run.close()
    # closing: the table says finished, the legend drops its live mark, polling stops
    table.wait_for_function(
        "() => document.querySelector(\"tr[data-run='live-browser'] td.run-state\")"
        ".textContent === 'finished'"
    )
    charts.wait_for_selector("#run-legend a[data-state=finished] >> text=live-browser")
    assert charts.locator(".live-label").count() == 0
    settled = len(chart_requests), len(table_requests)
    charts.wait_for_timeout(4_000)
    assert (len(chart_requests), len(table_requests)) == settled
    assert chart_errors == [] and table_errors == []


HIDE = """() => {
  Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'});
  document.dispatchEvent(new Event('visibilitychange'));
}"""
SHOW = """() => {
  Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'visible'});
  document.dispatchEvent(new Event('visibilitychange'));
}"""


def test_a_hidden_tab_does_not_poll(context: Any, server: ServerProcess) -> None:
    run = _run(server, "live-hidden")
    try:
        _log(run, range(10))
        charts, errors, requests = _tab(context, server)
        charts.goto(f"{server.url}{PROJECT}/charts?run=live-hidden&metric=train/loss")
        charts.wait_for_function(f"() => {SECTION}.dataset.points === '10'")
        charts.evaluate(HIDE)
        hidden_at = len(requests)
        _log(run, range(10, 20))
        charts.wait_for_timeout(4_000)  # more than one poll interval
        assert requests[hidden_at:] == []
        assert charts.get_attribute("section.chart", "data-points") == "10"
        charts.evaluate(SHOW)  # visible again: polls at once
        charts.wait_for_function(f"() => {SECTION}.dataset.points === '20'")
        assert errors == []
    finally:
        run.close()
