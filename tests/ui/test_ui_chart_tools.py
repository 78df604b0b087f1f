"""Chart tools in headless Chromium against a real ``despina serve``: smoothing done in the
browser (the raw line stays, faint), hover and zoom synced across charts, log x and a fixed y
range from the URL, and exports of a chart as PNG and of its points as CSV."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from ui_helpers import ServerProcess, Tokens, sign_in_tab, watch_errors

pytestmark = pytest.mark.slow

FORK = "kittiwake-fork0-at200"
PARENT = "kittiwake-lr0.0003-s0"
CHARTS = f"/p/demo/despina/charts?run={FORK}&run={PARENT}&metric=train/loss+%5Eval/loss%24"


@pytest.fixture(scope="module")
def page(browser: Any, server: ServerProcess, tokens: Tokens) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    context.set_default_timeout(15_000)
    tab = context.new_page()
    watch_errors(tab)
    sign_in_tab(tab, server, tokens.workspace)
    yield tab
    context.close()


def _drawn(page: Any, metric: str) -> None:
    page.wait_for_function(
        f"() => document.querySelector(\"section.chart[data-metric='{metric}']\").dataset.buckets"
    )


def _series(page: Any, index: int) -> list[str]:
    return page.evaluate(f"() => window.despinaCharts[{index}].plot.series.map(s => s.label)")


def test_smoothing_draws_a_smoothed_line_over_the_faint_raw_one(
    page: Any, server: ServerProcess
) -> None:
    page.goto(server.url + CHARTS)
    _drawn(page, "train/loss")
    assert len(_series(page, 0)) == 1 + 3 * 2  # x, then line + band low/high per run
    page.fill("#smoothing", "0.9")
    page.dispatch_event("#smoothing", "input")
    page.wait_for_function("() => window.despinaCharts[0].plot.series.length === 9")
    labels = _series(page, 0)
    assert f"{FORK} smoothed" in labels and f"{PARENT} smoothed" in labels
    assert "smooth=0.9" in page.url  # the URL keeps the view
    raw, smoothed = page.evaluate(
        "() => { const d = window.despinaCharts[0].plot.data;"
        " const f = (a) => a.filter(v => v != null); return [f(d[1]), f(d[4])]; }"
    )
    assert len(raw) == len(smoothed) > 10
    assert smoothed[0] == pytest.approx(raw[0])  # debiased: the first point is not pulled to 0
    # smoother than the raw line: smaller steps between neighbours
    rough = sum(abs(a - b) for a, b in itertools.pairwise(raw))
    calm = sum(abs(a - b) for a, b in itertools.pairwise(smoothed))
    assert calm < rough
    page.reload()
    _drawn(page, "train/loss")
    assert len(_series(page, 0)) == 9 and page.input_value("#smoothing") == "0.9"
    assert not page.errors


def test_hover_and_zoom_are_synced_across_charts(page: Any, server: ServerProcess) -> None:
    page.goto(server.url + CHARTS)
    _drawn(page, "train/loss")
    _drawn(page, "val/loss")
    area = page.locator("section.chart[data-metric='train/loss'] .u-over").bounding_box()
    page.mouse.move(area["x"] + area["width"] * 0.4, area["y"] + area["height"] / 2)
    other = page.locator("section.chart[data-metric='val/loss'] .readout").text_content()
    assert "@ step" in other  # the other chart shows its values at the same x
    with page.expect_response(lambda r: "val%2Floss" in r.url and "from=" in r.url):
        page.mouse.move(area["x"] + area["width"] * 0.30, area["y"] + 40)
        page.mouse.down()
        page.mouse.move(area["x"] + area["width"] * 0.45, area["y"] + 40, steps=5)
        page.mouse.up()
    page.wait_for_function(
        "() => [...document.querySelectorAll('section.chart')].every(s => s.dataset.window)"
    )
    windows = page.locator("section.chart").evaluate_all("s => s.map(e => e.dataset.window)")
    assert windows[0] == windows[1]
    page.locator("section.chart[data-metric='val/loss'] .reset").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('section.chart')].every(s => s.dataset.window === '')"
    )
    assert not page.errors


def test_log_x_and_y_range_come_from_the_url(page: Any, server: ServerProcess) -> None:
    page.goto(server.url + CHARTS + "&logx=1&ymin=0&ymax=5")
    _drawn(page, "train/loss")
    scales = page.evaluate(
        "() => { const p = window.despinaCharts[0].plot;"
        " return [p.scales.x.distr, p.scales.y.min, p.scales.y.max]; }"
    )
    assert scales == [3, 0, 5]
    assert page.is_checked("#log-x") and page.input_value("#y-max") == "5"
    assert not page.errors


def test_exports(page: Any, server: ServerProcess) -> None:
    page.goto(server.url + CHARTS + "&smooth=0.5")
    _drawn(page, "train/loss")
    chart = page.locator("section.chart[data-metric='train/loss']")
    with page.expect_download() as got:
        chart.locator(".export-csv").click()
    assert got.value.suggested_filename == "train_loss.csv"
    with open(got.value.path(), encoding="utf-8") as exported:
        rows = list(csv.DictReader(io.StringIO(exported.read())))
    assert set(rows[0]) == {"run", "step", "value", "min", "max", "smoothed"}
    assert {r["run"] for r in rows} == {FORK, PARENT}
    drawn = page.evaluate("() => window.despinaCharts[0].lines.map(l => l.x.length)")
    assert len(rows) == sum(drawn)
    with page.expect_download() as got:
        chart.locator(".export-png").click()
    assert got.value.suggested_filename == "train_loss.png"
    with open(got.value.path(), "rb") as image:
        assert image.read(8) == b"\x89PNG\r\n\x1a\n"
    assert not page.errors


def test_grouping_draws_one_mean_line_per_group(page: Any, server: ServerProcess) -> None:
    table = page.request.get(
        server.url + "/p/demo/despina/runs.json?view=runs&limit=50&col=parameters/lr"
    ).json()
    lrs = {row["run_id"]: row["cells"]["parameters/lr"]["text"] for row in table["rows"]}
    runs = sorted(lrs)
    groups = {lrs[r] for r in runs}
    assert 1 < len(groups) < len(runs)  # some runs share a learning rate
    query = "&".join(f"run={r}" for r in runs)
    page.goto(server.url + f"/p/demo/despina/charts?metric=train/loss&{query}&group=parameters/lr")
    _drawn(page, "train/loss")
    legend = page.locator("#group-legend > span").all_text_contents()
    assert len(legend) == len(groups)
    for value in groups:
        members = sum(1 for r in runs if lrs[r] == value)
        noun = "run" if members == 1 else "runs"
        assert f"parameters/lr = {value} ({members} {noun})" in legend
    labels = _series(page, 0)
    assert len(labels) == 1 + 3 * len(groups)
    assert all(label.startswith("parameters/lr = ") for label in labels[1:])
    assert f"in {len(groups)} groups" in page.text_content(
        "section.chart[data-metric='train/loss'] .state"
    )
    # the group line is the mean of its runs; with ± std the band is symmetric around it
    page.goto(page.url + "&band=std")
    _drawn(page, "train/loss")
    mean, low, high = page.evaluate(
        "() => { const d = window.despinaCharts[0].plot.data;"
        " const i = d[1].findIndex(v => v != null); return [d[1][i], d[2][i], d[3][i]]; }"
    )
    assert high - mean == pytest.approx(mean - low)
    assert not page.errors


def test_several_metrics_in_one_chart_and_namespaces(page: Any, server: ServerProcess) -> None:
    page.goto(server.url + CHARTS)  # train/loss and val/loss: two namespaces
    _drawn(page, "train/loss")
    headings = page.locator("#charts h2.namespace").all_text_contents()
    assert headings == ["train", "val"]
    page.check("#together")
    page.click("#chart-controls button[type=submit]")
    page.wait_for_url("**together=1**")
    assert page.locator("section.chart").count() == 1
    _drawn(page, "train/loss")
    labels = _series(page, 0)
    for run in (FORK, PARENT):
        assert f"{run} · train/loss" in labels and f"{run} · val/loss" in labels
    colours = page.evaluate(
        "() => window.despinaCharts[0].plot.series.filter((s, i) => i % 3 === 1)"
        ".map(s => s.stroke())"
    )
    assert len(set(colours)) == 4  # each (run, metric) its own colour
    with page.expect_download() as got:
        page.locator("section.chart .export-csv").click()
    with open(got.value.path(), encoding="utf-8") as exported:
        rows = list(csv.DictReader(io.StringIO(exported.read())))
    assert {r["metric"] for r in rows} == {"train/loss", "val/loss"}
    assert not page.errors


def test_nan_and_infinities_are_marked(page: Any, server: ServerProcess) -> None:
    import despina

    run = despina.Run(
        project="demo/despina",
        run_id="non-finite",
        home=server.home,
        enable_console_log_capture=False,
        source_tracking_config=None,
    )
    values = {10: float("nan"), 20: float("inf"), 30: float("-inf")}
    for step in range(50):
        run.log_metrics({"train/odd": values.get(step, step / 10)}, step=step)
    run.close()
    answer = page.request.get(
        server.url + "/p/demo/despina/chart.json?run=non-finite&metric=train/odd"
    ).json()
    (line,) = answer["lines"]
    assert line["marks"] == [[10, "nan"], [20, "+inf"], [30, "-inf"]]
    drawn = dict(zip(line["x"], line["y"], strict=True))
    assert all(drawn.get(step) is None for step in values)  # not drawable: marked instead
    zoomed = page.request.get(
        server.url + "/p/demo/despina/chart.json?run=non-finite&metric=train/odd&from=15&to=40"
    ).json()
    assert zoomed["lines"][0]["marks"] == [[20, "+inf"], [30, "-inf"]]
    page.goto(server.url + "/p/demo/despina/charts?run=non-finite&metric=train/odd")
    _drawn(page, "train/odd")
    chart = page.locator("section.chart[data-metric='train/odd']")
    assert chart.get_attribute("data-marks") == "3"
    assert "NaN/inf marked" in chart.locator(".state").text_content()
    assert not page.errors


def test_relative_time_and_another_metric_as_x(page: Any, server: ServerProcess) -> None:
    from datetime import UTC, datetime, timedelta

    import despina

    start = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    run = despina.Run(
        project="demo/despina",
        run_id="x-axes",
        creation_time=start,
        home=server.home,
        enable_console_log_capture=False,
        source_tracking_config=None,
    )
    for step in range(1, 21):
        run.log_metrics(
            {"train/xloss": 1.0 / step, "train/tokens": step * 512.0},
            step=step,
            timestamp=start + timedelta(seconds=30 + step),
        )
    run.close()
    base = server.url + "/p/demo/despina/chart.json?run=x-axes&metric=train/xloss"
    relative = page.request.get(base + "&x=relative").json()["lines"][0]
    assert relative["x"][:3] == [31_000, 32_000, 33_000]  # ms since the run was created
    tokens = page.request.get(base + "&x=metric&xmetric=train/tokens").json()
    assert tokens["lines"][0]["x"][:3] == [512.0, 1024.0, 1536.0]
    assert tokens["lines"][0]["y"][:3] == [1.0, 0.5, pytest.approx(1 / 3)]
    zoomed = page.request.get(base + "&x=metric&xmetric=train/tokens&from=2000&to=4000").json()
    assert zoomed["lines"][0]["x"] == [2048.0, 2560.0, 3072.0, 3584.0]
    missing = page.request.get(base + "&x=metric")
    assert missing.status == 400 and "xmetric" in missing.text()
    tail = page.request.get(
        server.url + "/p/demo/despina/chart-tail.json?run=x-axes&metric=train/xloss&after=3"
        "&x=metric&xmetric=train/tokens"
    )
    assert tail.status == 400
    page.goto(server.url + "/p/demo/despina/charts?run=x-axes&metric=train/xloss&x=relative")
    _drawn(page, "train/xloss")
    area = page.locator("section.chart .u-over").bounding_box()
    page.mouse.move(area["x"] + area["width"] * 0.5, area["y"] + area["height"] / 2)
    assert "s in" in page.text_content("section.chart .readout")  # e.g. "41s in"
    page.goto(
        server.url
        + "/p/demo/despina/charts?run=x-axes&metric=train/xloss&x=metric&xmetric=train/tokens"
    )
    _drawn(page, "train/xloss")
    area = page.locator("section.chart .u-over").bounding_box()
    page.mouse.move(area["x"] + area["width"] * 0.5, area["y"] + area["height"] / 2)
    assert "train/tokens" in page.text_content("section.chart .readout")
    assert not page.errors


def test_many_runs_share_one_short_x_array(page: Any, server: ServerProcess) -> None:
    """30 runs whose buckets all fall on different steps: the chart's x array stays at most the
    grid's length (not the union of every run's x), and the readout shows each run's own x."""
    import despina

    runs = [f"offset-{i:02d}" for i in range(30)]
    for i, run_id in enumerate(runs):
        run = despina.Run(
            project="demo/despina",
            run_id=run_id,
            home=server.home,
            enable_console_log_capture=False,
            source_tracking_config=None,
        )
        for k in range(3000):
            run.log_metrics({"train/shifted": float(i + k % 7)}, step=k * 31 + i)
        run.close()
    query = "&".join(f"run={r}" for r in runs)
    page.goto(server.url + f"/p/demo/despina/charts?metric=train/shifted&{query}")
    _drawn(page, "train/shifted")
    length, lines = page.evaluate(
        "() => { const c = window.despinaCharts[0];"
        " return [c.plot.data[0].length, c.lines.reduce((n, l) => n + l.x.length, 0)]; }"
    )
    # one bucket per pixel of the plot: 30 lines of ~600 buckets, far more x than the grid
    assert lines > 15_000 and length <= 2001
    area = page.locator("section.chart .u-over").bounding_box()
    page.mouse.move(area["x"] + area["width"] * 0.5, area["y"] + area["height"] / 2)
    readout = page.text_content("section.chart .readout")
    steps = [
        int(float(part.split("@ step ")[1].split()[0])) for part in readout.split("offset-")[1:]
    ]
    assert steps and all(
        step % 31 == int(name[:2])
        for step, name in zip(steps, readout.split("offset-")[1:], strict=True)
    )
    assert not page.errors
