"""The runs table's selection in headless Chromium against a real ``despina serve``: it holds
across pages, sorts and filters, drives charts and compare, can take the first N runs or every
run matching the query, and a selection bigger than a chart can draw gets a message, not an
error page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from ui_helpers import ServerProcess, Tokens, sign_in_tab, watch_errors

pytestmark = pytest.mark.slow

TABLE = "/p/demo/despina?view=runs&limit=5&sort=sys/custom_run_id&dir=asc"


@pytest.fixture
def page(browser: Any, server: ServerProcess, tokens: Tokens) -> Iterator[Any]:
    """A fresh tab (and browser storage) per test."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(15_000)
    tab = context.new_page()
    watch_errors(tab)
    sign_in_tab(tab, server, tokens.workspace)
    yield tab
    context.close()


def _rows(page: Any) -> list[str]:
    return page.locator("#runs-table tbody tr").evaluate_all("rs => rs.map(r => r.dataset.run)")


def _checked(page: Any) -> list[str]:
    return page.locator("#runs-table input[name=run]:checked").evaluate_all(
        "bs => bs.map(b => b.value)"
    )


def test_the_selection_holds_across_pages_sorts_and_filters(
    page: Any, server: ServerProcess
) -> None:
    page.goto(server.url + TABLE)
    first_page = _rows(page)
    page.check(f"#runs-table input[value='{first_page[0]}']")
    page.check(f"#runs-table input[value='{first_page[3]}']")
    page.goto(server.url + TABLE + "&page=2")
    second = _rows(page)[1]
    page.check(f"#runs-table input[value='{second}']")
    assert page.text_content("#selection-count") == "3 runs selected"
    page.goto(server.url + TABLE)  # back to page 1: its boxes are still checked
    assert _checked(page) == [first_page[0], first_page[3]]
    page.goto(server.url + "/p/demo/despina?view=runs&limit=50&sort=sys/custom_run_id&dir=desc")
    assert sorted(_checked(page)) == sorted([first_page[0], first_page[3], second])
    page.goto(server.url + "/p/demo/despina?view=runs&q=" + "`sys/trashed`:bool = False")
    assert page.text_content("#selection-count") == "3 runs selected"
    # charts and compare get the whole selection, in the order it was made
    page.click("#chart-selected")
    page.wait_for_url("**/charts?*")
    assert parse_qs(urlparse(page.url).query)["run"] == [first_page[0], first_page[3], second]
    assert page.locator("#run-legend a").count() == 3
    page.go_back()
    page.click("#compare-selected")
    page.wait_for_url("**/compare?*")
    assert parse_qs(urlparse(page.url).query)["id"] == [first_page[0], first_page[3], second]
    page.go_back()
    page.click("#selection-clear")
    assert page.text_content("#selection-count") == "0 runs selected" and not _checked(page)
    assert not page.errors


def test_select_the_first_n_and_all_matching(page: Any, server: ServerProcess) -> None:
    page.goto(server.url + TABLE)
    page.fill("#select-first-n", "7")
    page.click("#select-first")
    page.wait_for_function("() => document.getElementById('selection').dataset.selected === '7'")
    everything = _rows(page)
    page.goto(server.url + TABLE + "&page=2")
    assert _checked(page) == _rows(page)[:2]  # runs 6 and 7 of the sort order
    page.goto(server.url + '/p/demo/despina?view=runs&q=`sys/custom_run_id`:string MATCHES "fork"')
    matching = int(page.get_attribute("#selection", "data-total") or 0)
    assert 0 < matching < 11, (page.url, page.text_content("#row-count"))
    page.click("#select-matching")
    page.wait_for_function(
        f"() => document.getElementById('selection').dataset.selected === '{matching}'"
    )
    assert sorted(_checked(page)) == sorted(_rows(page))
    assert everything[0] not in _checked(page) or "fork" in everything[0]
    assert not page.errors


def test_a_selection_bigger_than_a_chart_draws_gets_a_message(
    page: Any, server: ServerProcess
) -> None:
    page.goto(server.url + TABLE)
    real = _rows(page)[:2]
    runs = real + [f"not-a-run-{i}" for i in range(118)]
    query = "&".join(f"run={r}" for r in runs)
    response = page.goto(server.url + f"/p/demo/despina/charts?metric=train/loss&{query}")
    assert response.status == 200
    message = page.text_content("#too-many-runs")
    assert "120 runs selected" in message and "first 100" in message
    assert page.locator("section.chart").count() == 1
    # the browser sends at most 100 runs of a bigger selection, and how many there were
    response = page.goto(
        server.url + f"/p/demo/despina/charts?metric=train/loss&run={real[0]}&selected=250"
    )
    assert response.status == 200
    assert "250 runs selected" in page.text_content("#too-many-runs")
    assert not page.errors
