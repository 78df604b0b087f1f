"""Series columns beyond the last value in the runs table, against a real ``despina serve``:
``min(path)``, ``max(path)``, ``mean(path)`` from the store's per-series aggregates, sortable,
offered by the column chooser."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from ui_helpers import ServerProcess, Tokens, sign_in, sign_in_tab, watch_errors

import despina

pytestmark = pytest.mark.slow

PROJECT = "/p/demo/despina"
SERIES = {"agg-a": [3.0, 1.0, 2.0], "agg-b": [0.5, 9.0, float("nan"), 4.0], "agg-c": [5.0]}


@pytest.fixture(scope="module")
def client(server: ServerProcess, tokens: Tokens) -> httpx.Client:
    for run_id, values in SERIES.items():
        with despina.Run(
            project="demo/despina",
            run_id=run_id,
            home=server.home,
            enable_console_log_capture=False,
            source_tracking_config=None,
        ) as run:
            for step, value in enumerate(values):
                run.log_metrics({"eval/score": value}, step=step)
    browser = httpx.Client(base_url=server.url, follow_redirects=False, timeout=30)
    assert sign_in(browser, tokens.workspace).status_code == 303
    return browser


def _table(client: httpx.Client, **params: Any) -> dict[str, Any]:
    answer = client.get(
        f"{PROJECT}/runs.json",
        params={"view": "runs", "q": '`sys/custom_run_id`:string MATCHES "^agg-"', **params},
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_min_max_mean_cells_and_sort(client: httpx.Client) -> None:
    cols = ["eval/score", "min(eval/score)", "max(eval/score)", "mean(eval/score)"]
    table = _table(client, col=cols)
    cells = {row["run_id"]: {c: row["cells"][c]["value"] for c in cols} for row in table["rows"]}
    assert cells["agg-a"] == {cols[0]: 2.0, cols[1]: 1.0, cols[2]: 3.0, cols[3]: 2.0}
    # NaN is left out of min, max and mean, as the store's aggregates do
    assert cells["agg-b"] == {cols[0]: 4.0, cols[1]: 0.5, cols[2]: 9.0, cols[3]: 4.5}
    assert cells["agg-c"][cols[3]] == 5.0
    ordered = _table(client, col=cols[1], sort="min(eval/score)", dir="asc")
    assert [r["run_id"] for r in ordered["rows"]] == ["agg-b", "agg-a", "agg-c"]
    assert ordered["sort"]["type"] == "float"
    ordered = _table(client, col=cols[2], sort="max(eval/score)", dir="desc")
    assert [r["run_id"] for r in ordered["rows"]] == ["agg-b", "agg-c", "agg-a"]


def test_the_column_chooser_offers_them(
    client: httpx.Client, browser: Any, server: ServerProcess, tokens: Tokens
) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    watch_errors(page)
    try:
        sign_in_tab(page, server, tokens.workspace)
        page.goto(server.url + f"{PROJECT}?view=runs")
        page.click("#columns summary")
        page.wait_for_selector("#column-list input[value='mean(eval/score)']")
        page.check("#column-list input[value='mean(eval/score)']")
        page.click("#columns button[type=submit]")
        page.wait_for_url("**mean%28eval%2Fscore%29**")
        assert page.locator("th[data-column='mean(eval/score)']").count() == 1
        assert not page.errors
    finally:
        context.close()


def test_columns_move_pin_and_go(
    client: httpx.Client, browser: Any, server: ServerProcess, tokens: Tokens
) -> None:
    context = browser.new_context(viewport={"width": 900, "height": 700})
    page = context.new_page()
    watch_errors(page)
    cols = "&".join(f"col={c}" for c in ("eval/score", "min(eval/score)", "sys/tags"))
    try:
        sign_in_tab(page, server, tokens.workspace)
        page.goto(server.url + f"{PROJECT}?view=runs&{cols}")

        def headers() -> list[str]:
            return list(
                page.locator("#runs-table thead th[data-column]").evaluate_all(
                    "hs => hs.map(h => h.dataset.column)"
                )
            )

        assert headers() == ["eval/score", "min(eval/score)", "sys/tags"]
        page.click("th[data-column='sys/tags'] .col-left")
        assert headers() == ["eval/score", "sys/tags", "min(eval/score)"]
        page.click("th[data-column='min(eval/score)'] .col-pin")
        assert headers() == ["min(eval/score)", "eval/score", "sys/tags"]
        assert "pin=min" in page.url
        position = page.locator("th[data-column='min(eval/score)']").evaluate(
            "h => getComputedStyle(h).position"
        )
        assert position == "sticky"
        page.click("th[data-column='eval/score'] .col-remove")
        assert headers() == ["min(eval/score)", "sys/tags"]
        assert not page.errors
    finally:
        context.close()
