"""What a newcomer hit in the web UI (issue 15, items 9-11), in headless Chromium against a real
``despina serve``: the printed sign-in link shows team projects, the column filter filters, a bad
query or metric pattern is shown in place (the table and charts stay), zoom answers arriving out
of order never overwrite a newer window, and one run is "1 run".
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from ui_helpers import ServerProcess, watch_errors

from despina.store import Store

pytestmark = pytest.mark.slow

PROJECT = "/p/demo/despina"
FORK = "kittiwake-fork0-at200"
PARENT = "kittiwake-lr0.0003-s0"
CHART = "section.chart[data-metric='train/loss']"


@pytest.fixture(scope="module")
def page(browser: Any, server: ServerProcess) -> Iterator[Any]:
    """A tab signed in through the link ``despina serve`` printed (the first test)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(15_000)
    tab = context.new_page()
    watch_errors(tab)
    yield tab
    context.close()


def test_printed_link_shows_projects_of_every_workspace(page: Any, server: ServerProcess) -> None:
    link = server.sign_in_link()
    assert link is not None, server.log()
    page.goto(link)
    page.wait_for_url(server.url + "/projects")
    names = page.locator("table.projects a").all_text_contents()
    assert names == ["demo/despina", "demo/other", "elsewhere/proj"]
    store = Store.open(server.home)
    try:
        store.create_project("my-team/birds")  # a team project made after signing in
    finally:
        store.close()
    page.reload()
    assert "my-team/birds" in page.locator("table.projects a").all_text_contents()
    page.click("table.projects a:text-is('my-team/birds')")
    page.wait_for_url("**/p/my-team/birds")
    assert page.is_visible("#nql")


def test_column_filter_hides_the_other_attributes(page: Any, server: ServerProcess) -> None:
    page.goto(server.url + PROJECT + "?view=runs")
    page.click("#columns summary")
    # the chosen columns are there at once; the others arrive with their type once fetched
    page.wait_for_selector("#column-list label .type")
    labels = page.locator("#column-list label")
    total = labels.count()
    assert total > 5
    page.fill("#column-filter", "train/")
    shown = [t.strip() for t in page.locator("#column-list label:visible").all_text_contents()]
    assert shown and all("train/" in t for t in shown)
    assert len(shown) < total
    page.fill("#column-filter", "")
    assert page.locator("#column-list label:visible").count() == total


def test_bad_query_is_shown_in_place_and_the_table_stays(page: Any, server: ServerProcess) -> None:
    page.goto(server.url + PROJECT + "?view=runs")
    rows = page.locator("#runs-table tbody tr").count()
    page.fill("#nql", "`parameters/lr`:flot > 0.001")
    page.press("#nql", "Enter")
    page.wait_for_selector("#nql-error")
    assert page.text_content("#nql-error .nql-bad") == "flot"
    assert page.text_content("#nql-error .nql-caret") == " " * 16 + "^^^^"
    assert "did you mean 'float'" in page.text_content("#nql-error .nql-message")
    assert page.locator("#runs-table tbody tr").count() == rows
    assert page.input_value("#nql") == "`parameters/lr`:flot > 0.001"
    assert page.url == server.url + PROJECT + "?view=runs"
    # single quotes are strings: the fixed query filters as with double quotes
    page.fill("#nql", "`parameters/lr`:float > 0.0005 AND `sys/tags`:stringSet CONTAINS 'baseline'")
    with page.expect_navigation():
        page.press("#nql", "Enter")
    assert page.locator("#nql-error").count() == 0
    assert page.locator("#runs-table tbody tr").count() == 2
    assert page.text_content("#row-count").strip().endswith("of 2 runs")


def test_bad_metric_pattern_is_shown_in_place_and_the_charts_stay(
    page: Any, server: ServerProcess
) -> None:
    page.goto(f"{server.url}{PROJECT}/charts?run={PARENT}&metric=train/loss")
    page.wait_for_function(f'() => document.querySelector("{CHART}").dataset.buckets')
    page.fill("#metric-input", "train/loss val/(")
    page.click("#chart-controls button[type=submit]")
    page.wait_for_selector("#metric-error")
    assert page.text_content("#metric-error .nql-bad") == "val/("
    assert page.text_content("#metric-error .nql-caret") == " " * 11 + "^^^^^"
    assert "regular expression" in page.text_content("#metric-error .nql-message")
    assert page.locator(f"{CHART} canvas").count() == 1  # the chart drawn stays
    assert page.input_value("#metric-input") == "train/loss val/("
    assert "metric=train%2Floss" in page.url or "metric=train/loss" in page.url
    # the same URL opened directly: the error in place, the valid pattern's chart drawn
    page.goto(f"{server.url}{PROJECT}/charts?run={PARENT}&metric=train/loss+val/(")
    assert page.text_content("#metric-error .nql-bad") == "val/("
    assert page.input_value("#metric-input") == "train/loss val/("
    page.wait_for_function(f'() => document.querySelector("{CHART}").dataset.buckets')
    assert page.locator("section.chart").count() == 1
    assert page.locator(".error-page").count() == 0


def test_one_run_is_singular(page: Any, server: ServerProcess) -> None:
    page.goto(f"{server.url}{PROJECT}/charts?run={PARENT}&metric=train/loss")
    page.wait_for_function(f'() => document.querySelector("{CHART}").dataset.buckets')
    state = page.text_content(f"{CHART} .state")
    assert "1 run ·" in state and "1 runs" not in state
    page.goto(server.url + PROJECT + f"?view=runs&q=`sys/custom_run_id` == '{PARENT}'")
    assert page.text_content("#row-count").strip() == "1–1 of 1 run"


def test_zoom_answers_out_of_order_never_overwrite_a_newer_window(
    page: Any, server: ServerProcess
) -> None:
    page.goto(f"{server.url}{PROJECT}/charts?run={FORK}&run={PARENT}&metric=train/loss")
    page.wait_for_function(f'() => document.querySelector("{CHART}").dataset.buckets')
    held: list[Any] = []

    def hold(route: Any) -> None:
        held.append(route)  # answered later, in the reverse order

    page.route("**/chart.json?*from=*", hold)
    page.evaluate("() => window.despinaCharts[0].load([10, 100])")  # older window
    page.evaluate("() => window.despinaCharts[0].load([250, 300])")  # newer window
    page.wait_for_timeout(200)
    assert len(held) == 2
    held[1].continue_()
    page.wait_for_function(f'() => document.querySelector("{CHART}").dataset.window === "250,300"')
    with contextlib.suppress(Exception):  # aborted by the page: nothing to answer
        held[0].continue_()  # the older answer arrives last (if its request was not aborted)
    page.wait_for_timeout(1000)  # generous: the stale answer would have been drawn by now
    page.unroute("**/chart.json?*from=*")
    assert page.locator(CHART).get_attribute("data-window") == "250,300"
    assert "zoomed" in page.text_content(f"{CHART} .state")
