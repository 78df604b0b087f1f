"""The web UI in headless Chromium (Debian's ``chromium`` driven by Playwright), against a real
``despina serve`` over a small demo project: sign in, filter with NQL, see a syntax error
underlined, chart runs, zoom, open a run page.

Without Chromium (or the ``playwright`` package) these tests skip, saying why; with
``DESPINA_REQUIRE_BROWSER=1`` (set by CI) they fail instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from ui_helpers import HISTOGRAM_RUN, ServerProcess, Tokens, watch_errors

pytestmark = pytest.mark.slow

FORK = "kittiwake-fork0-at200"
PARENT = "kittiwake-lr0.0003-s0"
QUERY = '`sys/tags`:stringSet CONTAINS "baseline" AND `parameters/lr`:float > 0.0005'


@pytest.fixture(scope="module")
def page(browser: Any, server: ServerProcess, tokens: Tokens) -> Iterator[Any]:
    """One signed-in tab (the sign-in itself is the first test)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(15_000)
    tab = context.new_page()
    errors = watch_errors(tab)
    # nothing but the server under test: no fonts, CDNs or anything else from outside
    tab.route(
        lambda url: not url.startswith(server.url),
        lambda route: (errors.append(f"external request {route.request.url}"), route.abort()),
    )
    yield tab
    context.close()


def test_sign_in(page: Any, server: ServerProcess, tokens: Tokens) -> None:
    page.goto(server.url + "/p/demo/despina")
    assert "/sign-in" in page.url
    page.fill("textarea[name=token]", "not a token")
    page.click("form[action='/sign-in'] button[type=submit]")
    assert "not valid" in page.text_content(".error")
    page.fill("textarea[name=token]", tokens.workspace)
    page.click("form[action='/sign-in'] button[type=submit]")
    page.wait_for_url(server.url + "/p/demo/despina")
    assert page.is_visible("#runs-table")
    page.goto(server.url + "/projects")
    assert page.locator("table.projects a").all_text_contents() == ["demo/despina", "demo/other"]


def test_nql_filter_shows_the_right_rows(page: Any, server: ServerProcess) -> None:
    page.goto(server.url + "/p/demo/despina?view=runs")
    assert page.locator("#runs-table tbody tr").count() == 11
    page.fill("#nql", QUERY)
    with page.expect_navigation():  # after the query was checked against runs.json
        page.press("#nql", "Enter")
    runs = page.locator("#runs-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.run)")
    assert sorted(runs) == ["kittiwake-lr0.001-s1", "seagull-lr0.001-s1"]
    query = parse_qs(urlparse(page.url).query)
    assert query["q"] == [QUERY]
    assert query["view"] == ["runs"]
    assert "1–2 of 2" in page.text_content("#row-count")
    # the URL alone reproduces the view
    page.goto(page.url)
    assert page.locator("#runs-table tbody tr").count() == 2


def test_nql_error_is_underlined(page: Any, server: ServerProcess) -> None:
    page.goto(server.url + "/p/demo/despina?view=runs")
    page.fill("#nql", "`parameters/lr`:float >= AND `x` = 1")
    page.press("#nql", "Enter")
    page.wait_for_selector(".nql-error")
    assert page.text_content(".nql-error .nql-bad") == "AND"
    assert page.text_content(".nql-mirror .nql-bad") == "AND"
    assert "expected a value after '>='" in page.text_content(".nql-message")
    assert page.get_attribute("#nql", "aria-invalid") == "true"
    box = page.locator(".nql-mirror .nql-bad").bounding_box()
    field = page.locator("#nql").bounding_box()
    assert box is not None and field is not None
    assert field["x"] < box["x"] < field["x"] + field["width"]  # under the token in the box
    # shown in place: the table keeps its rows, the URL and the typed query stay
    assert page.locator("#runs-table tbody tr").count() == 11
    assert page.url == server.url + "/p/demo/despina?view=runs"
    assert page.input_value("#nql") == "`parameters/lr`:float >= AND `x` = 1"
    assert page.text_content(".nql-error .nql-caret") == " " * 25 + "^^^"


def test_sort_page_and_trashed(page: Any, server: ServerProcess) -> None:
    page.goto(server.url + "/p/demo/despina?view=runs&limit=5&col=parameters/lr")
    page.click("th[data-column='parameters/lr'] a")
    page.wait_for_load_state()
    assert parse_qs(urlparse(page.url).query)["sort"] == ["parameters/lr"]
    values = [float(v) for v in page.locator("td.t-float").all_text_contents()]
    assert values == sorted(values, reverse=True) and len(values) == 5
    page.click("a[rel=next]")
    page.wait_for_load_state()
    assert "6–10 of 11" in page.text_content("#row-count")
    page.click("text=Show trashed")
    page.wait_for_load_state()
    assert "of 12" in page.text_content("#row-count")


def test_chart_and_zoom(page: Any, server: ServerProcess) -> None:
    page.goto(server.url + "/p/demo/despina?view=runs&limit=50")
    page.check(f"#runs-table input[value='{FORK}']")
    page.check(f"#runs-table input[value='{PARENT}']")
    page.fill("#chart-form input[name=metric]", "train/loss ^val/loss$")
    page.click("#chart-selected")
    page.wait_for_url("**/charts?*")
    charts = page.locator("section.chart")
    assert charts.evaluate_all("s => s.map(e => e.dataset.metric)") == ["train/loss", "val/loss"]
    chart = page.locator("section.chart[data-metric='train/loss']")
    page.wait_for_function(
        "() => document.querySelector(\"section.chart[data-metric='train/loss']\").dataset.buckets"
    )
    assert chart.locator("canvas").count() == 1
    assert "2 runs" in chart.locator(".state").text_content()
    # hovering shows exact values of every run
    over = chart.locator(".u-over")
    area = over.bounding_box()
    assert area is not None
    page.mouse.move(area["x"] + area["width"] * 0.25, area["y"] + area["height"] / 2)
    readout = chart.locator(".readout").text_content()
    assert FORK in readout and PARENT in readout and "@ step" in readout
    # dragging zooms: the server re-buckets the window
    with page.expect_response(lambda r: "chart.json" in r.url and "from=" in r.url) as answer:
        page.mouse.move(area["x"] + area["width"] * 0.30, area["y"] + 40)
        page.mouse.down()
        page.mouse.move(area["x"] + area["width"] * 0.45, area["y"] + 40, steps=5)
        page.mouse.up()
    window = answer.value.json()["window"]
    assert 100 < window[0] < window[1] < 200
    page.wait_for_function(
        "() => document.querySelector(\"section.chart[data-metric='train/loss']\").dataset.window"
    )
    assert "zoomed" in chart.locator(".state").text_content()
    assert chart.locator(".reset").is_visible()
    chart.locator(".reset").click()
    page.wait_for_function(
        "() => document.querySelector(\"section.chart[data-metric='train/loss']\")"
        ".dataset.window === ''"
    )
    # log scale and the absolute-time axis are URL parameters too
    page.check("#log-scale")
    page.select_option("#x-axis", "time")
    page.click("#chart-controls button[type=submit]")
    page.wait_for_url("**log=1**")
    page.wait_for_function(
        "() => document.querySelector(\"section.chart[data-metric='train/loss']\").dataset.buckets"
    )
    assert parse_qs(urlparse(page.url).query)["x"] == ["time"]
    assert not page.errors


def test_run_page(page: Any, server: ServerProcess) -> None:
    page.goto(server.url + "/p/demo/despina?view=runs")
    page.click(f"#runs-table a:text-is('{HISTOGRAM_RUN}')")
    page.wait_for_url("**/run?id=*")
    assert page.text_content("h1").strip().startswith(HISTOGRAM_RUN)
    assert "sys/creation_time" in page.text_content("#sys-fields")
    assert "parameters/lr" in page.text_content("#configs")
    assert page.locator("p.tags .tag").all_text_contents() == ["baseline", "demo", "kittiwake"]
    assert page.locator("#metrics tbody tr").count() == 30
    page.wait_for_function("() => document.querySelectorAll('td.spark canvas').length === 30")
    assert "step   300" in page.text_content("pre.tail")
    histogram = page.locator("section.histogram[data-path='weights/hist']")
    assert histogram.locator("canvas").count() == 1
    histogram.locator(".hslider").fill("0")
    assert histogram.locator(".hstep").text_content() == "0"
    with page.expect_download() as download:
        page.click("#files a")
    path = download.value.path()
    assert path is not None
    with open(path, "rb") as handle:
        assert handle.read() == b"learning rate 1e-3 looks best\n"
    assert not page.errors


def test_sign_out(page: Any, server: ServerProcess) -> None:
    """The header's sign-out button posts its CSRF token; the session ends."""
    page.goto(server.url + "/projects")
    page.click("form.signout button[type=submit]")
    page.wait_for_url(server.url + "/sign-in")
    page.goto(server.url + "/projects")
    assert "/sign-in" in page.url
    assert not page.errors
