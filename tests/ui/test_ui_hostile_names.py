"""Run and metric names that look like HTML (``<!--<script``, ``</script>``) must not break the
charts and run pages: the JSON data blocks embedded in them escape ``<``, ``>``, ``&`` and ``'``,
so no name can close the block or put the HTML parser in another state. Checked through HTTP
(the block holds no ``<`` and decodes to the names) and in headless Chromium (the pages parse,
their scripts run under the CSP, the charts draw)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from ui_helpers import ServerProcess, mint, sign_in, watch_errors

pytestmark = pytest.mark.slow

PROJECT = "demo/hostile"
RUN = "evil<!--<script>-run"
OTHER_RUN = "quote'&\"<b>-run<script>"
COMMENT_METRIC = "loss/<!--<script>"
CLOSING_METRIC = "acc</script><script>alert(1)</script>"
HISTOGRAM = "h/<!--<script>"
STEPS = 30
RUNS = [RUN, OTHER_RUN]


def _log(home: Path) -> None:
    import despina
    from despina.types import Histogram

    for run_id in RUNS:
        with despina.Run(
            project=PROJECT,
            run_id=run_id,
            home=home,
            enable_console_log_capture=False,
            source_tracking_config=None,
        ) as run:
            run.log_configs({"parameters/<!--<script>": "x</script><!--<script>"})
            for step in range(STEPS):
                run.log_metrics(
                    {COMMENT_METRIC: 1.0 / (step + 1), CLOSING_METRIC: step / 10}, step=step
                )
            for step in (0, 10):
                run.log_histograms(
                    {HISTOGRAM: Histogram(bin_edges=[0, 1, 2], counts=[step, 3])}, step=step
                )


@pytest.fixture(scope="module")
def hostile(
    module_store: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, str]]:
    home = tmp_path_factory.mktemp("hostile") / "home"
    _log(home)
    proc = ServerProcess(home)
    proc.start()
    yield proc, mint(home, proc.url, workspace="demo")
    proc.stop()


@pytest.fixture(scope="module")
def client(hostile: tuple[ServerProcess, str]) -> Iterator[httpx.Client]:
    server, token = hostile
    with httpx.Client(base_url=server.url, follow_redirects=False, timeout=30) as browser:
        assert sign_in(browser, token).status_code == 303
        yield browser


def _charts_url() -> str:
    query = [("run", r) for r in RUNS] + [("metric", COMMENT_METRIC), ("metric", CLOSING_METRIC)]
    return f"/p/{PROJECT}/charts?{urlencode(query)}"


def _run_url(run_id: str = RUN) -> str:
    return f"/p/{PROJECT}/run?{urlencode({'id': run_id})}"


def _data_block(html: str, element_id: str) -> str:
    """What an HTML parser takes as the content of a JSON data block: everything up to the first
    ``</script`` (the block must hold no ``<`` at all, so no ``<!--`` state either)."""
    opening = re.search(rf'<script type="application/json" id="{element_id}">', html)
    assert opening is not None, html[:2000]
    rest = html[opening.end() :]
    return rest[: rest.lower().index("</script")]


def test_charts_page_data_block_survives_html_like_names(client: httpx.Client) -> None:
    answer = client.get(_charts_url())
    assert answer.status_code == 200, answer.text
    block = _data_block(answer.text, "chart-config")
    assert "<" not in block and ">" not in block and "&" not in block
    config = json.loads(block)
    assert config["runs"] == RUNS
    assert sorted(config["metrics"]) == sorted([COMMENT_METRIC, CLOSING_METRIC])
    # the rest of the page is still there: the script that draws the charts
    assert '<script src="/ui/static/charts.js" defer></script>' in answer.text


def test_run_page_data_block_survives_html_like_names(client: httpx.Client) -> None:
    answer = client.get(_run_url())
    assert answer.status_code == 200, answer.text
    block = _data_block(answer.text, "run-data")
    assert "<" not in block and ">" not in block
    payload = json.loads(block)
    assert sorted(payload["sparklines"]) == sorted([COMMENT_METRIC, CLOSING_METRIC])
    assert list(payload["histograms"]) == [HISTOGRAM]
    assert '<script src="/ui/static/run.js" defer></script>' in answer.text
    assert "<script>alert(1)" not in answer.text  # every name is escaped in the HTML too


@pytest.fixture(scope="module")
def tab(browser: Any, hostile: tuple[ServerProcess, str]) -> Iterator[Any]:
    server, token = hostile
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    watch_errors(page)
    page.on(
        "dialog", lambda dialog: (page.errors.append(f"dialog {dialog.message}"), dialog.dismiss())
    )
    page.goto(server.url + "/sign-in")
    page.fill("textarea[name=token]", token)
    page.click("form[action='/sign-in'] button[type=submit]")
    page.wait_for_url(server.url + "/projects")
    yield page
    context.close()


def test_charts_draw_in_the_browser(tab: Any, hostile: tuple[ServerProcess, str]) -> None:
    server, _ = hostile
    tab.errors.clear()
    tab.goto(server.url + _charts_url())
    config = tab.evaluate("() => JSON.parse(document.getElementById('chart-config').textContent)")
    assert config["runs"] == RUNS
    metrics = tab.locator("section.chart").evaluate_all("s => s.map(e => e.dataset.metric)")
    assert sorted(metrics) == sorted([COMMENT_METRIC, CLOSING_METRIC])
    tab.wait_for_function(
        "() => Array.from(document.querySelectorAll('section.chart')).every(s => s.dataset.buckets)"
    )
    assert tab.locator("section.chart canvas").count() == 2
    assert tab.locator("#run-legend a").all_text_contents() == RUNS
    assert not tab.errors


def test_run_page_draws_in_the_browser(tab: Any, hostile: tuple[ServerProcess, str]) -> None:
    server, _ = hostile
    tab.errors.clear()
    tab.goto(server.url + _run_url())
    assert tab.text_content("h1").strip().startswith(RUN)
    tab.wait_for_function("() => document.querySelectorAll('td.spark canvas').length === 2")
    assert tab.locator("section.histogram canvas").count() == 1
    assert "x</script><!--<script>" in tab.text_content("#configs")
    assert not tab.errors


def test_every_page_loads_under_the_csp(tab: Any, hostile: tuple[ServerProcess, str]) -> None:
    """No page needs anything the Content-Security-Policy forbids (a violation is a console
    error), the sign-in page included."""
    server, _ = hostile
    tab.errors.clear()
    for path in [
        "/projects",
        f"/p/{PROJECT}?view=runs",
        f"/p/{PROJECT}?view=runs&q=%28",
        f"/p/{PROJECT}/models",
        _run_url(RUNS[1]),
        "/p/demo/nope",
        "/sign-in",
    ]:
        response = tab.goto(server.url + path)
        assert response is not None
        assert "script-src 'self'" in response.headers.get("content-security-policy", ""), path
        tab.wait_for_load_state("load")
        assert not tab.errors, path
