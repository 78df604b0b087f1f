"""The compare page (issue #15, item 4): runs side by side with their tags, configs and the
last / min / max of their metrics, "only differences", links back to each run. The ``.json``
twin over HTTP, and the page in headless Chromium from the runs table's selection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from ui_helpers import ServerProcess, Tokens, serve_demo, sign_in, watch_errors

pytestmark = pytest.mark.slow

PROJECT = "/p/demo/despina"
MANY = "/p/demo/many"
FORK = "kittiwake-fork0-at200"
PARENT = "kittiwake-lr0.0003-s0"
MANY_RUNS = 25
LOSSES = [3.0, 1.0, 2.0]
ODD = "/p/demo/odd"
HOSTILE = "evil<!--<script>'&\"-run"


def _log_many(home: Path) -> None:
    """``demo/many``: 25 small runs with a known loss; only the first has ``extra/only_here``."""
    import despina

    for i in range(MANY_RUNS):
        with despina.Run(
            project="demo/many",
            run_id=f"petrel-{i:02d}",
            experiment_name="petrel",
            home=home,
            enable_console_log_capture=False,
            source_tracking_config=None,
        ) as run:
            run.log_configs({"parameters/lr": 0.1 if i == 1 else 0.01, "parameters/model": "mlp"})
            if i == 0:
                run.log_configs({"extra/only_here": "yes"})
            for step, loss in enumerate(LOSSES):
                run.log_metrics({"train/loss": loss + i}, step=step)


def _log_odd(home: Path) -> None:
    """``demo/odd``: a run whose ID and config look like HTML, beside a plain one."""
    import despina

    for run_id, note in [(HOSTILE, "x</script><!--<script>"), ("plain", "fine")]:
        with despina.Run(
            project="demo/odd",
            run_id=run_id,
            home=home,
            enable_console_log_capture=False,
            source_tracking_config=None,
        ) as run:
            run.log_configs({"notes/text": note, "parameters/model": "mlp"})


@pytest.fixture(scope="module")
def server(
    module_store: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The small demo, plus ``demo/many`` (more runs than the page compares) and projects the
    narrow tokens reach."""
    home = tmp_path_factory.mktemp("ui-compare") / "home"
    _log_many(home)
    _log_odd(home)
    proc = serve_demo(home)
    yield proc
    proc.stop()


def _session(server: ServerProcess, token: str) -> httpx.Client:
    client = httpx.Client(base_url=server.url, follow_redirects=False, timeout=30)
    assert sign_in(client, token, "/projects").status_code == 303
    return client


@pytest.fixture(scope="module")
def client(server: ServerProcess, tokens: Tokens) -> httpx.Client:
    return _session(server, tokens.workspace)


def _rows(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["label"]: r for r in data["rows"]}


def test_compare_json_puts_runs_side_by_side(client: httpx.Client) -> None:
    answer = client.get(f"{PROJECT}/compare.json", params=[("id", FORK), ("id", PARENT)])
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert [r["run_id"] for r in data["runs"]] == [FORK, PARENT]
    assert [r["url"] for r in data["runs"]] == [
        f"{PROJECT}/run?id={FORK}",
        f"{PROJECT}/run?id={PARENT}",
    ]
    assert data["message"] is None and not data["truncated"] and data["unknown_runs"] == []
    rows = _rows(data)
    lr = rows["parameters/lr"]
    assert [c["value"] for c in lr["cells"]] == [0.0001, 0.0003] and lr["differs"]
    assert [c["text"] for c in rows["data/dataset"]["cells"]] == ["birds-200", "birds-200"]
    assert not rows["data/dataset"]["differs"]
    assert lr["highlight"] == [True, True] and rows["data/dataset"]["highlight"] == [False] * 2
    tags = rows["sys/tags"]
    assert tags["cells"][1]["value"] == ["baseline", "demo", "kittiwake"] and tags["differs"]
    # metrics: last, min and max rows for each float series, agreeing with the run page
    run = client.get(f"{PROJECT}/run.json", params={"id": PARENT}).json()
    last = {m["path"]: m["text"] for m in run["metrics"]}
    assert rows["train/loss (last)"]["cells"][1]["text"] == last["train/loss"]
    for path in last:
        cells = [rows[f"{path} ({a})"]["cells"][1]["value"] for a in ("min", "last", "max")]
        assert cells[0] <= cells[1] <= cells[2], path
    assert data["differing"] == sum(r["differs"] for r in data["rows"])


def test_compare_known_aggregates_missing_values_and_order(client: httpx.Client) -> None:
    ids = ["petrel-01", "petrel-00", "nobody", "petrel-01"]
    data = client.get(f"{MANY}/compare.json", params=[("id", i) for i in ids]).json()
    assert [r["run_id"] for r in data["runs"]] == ["petrel-01", "petrel-00"]
    assert data["unknown_runs"] == ["nobody"]
    rows = _rows(data)
    assert [c["value"] for c in rows["train/loss (last)"]["cells"]] == [3.0, 2.0]
    assert [c["value"] for c in rows["train/loss (min)"]["cells"]] == [2.0, 1.0]
    assert [c["value"] for c in rows["train/loss (max)"]["cells"]] == [4.0, 3.0]
    only = rows["extra/only_here"]
    assert only["cells"][0] is None and only["cells"][1]["text"] == "yes" and only["differs"]
    assert not rows["parameters/model"]["differs"]
    assert [r["label"] for r in data["rows"] if r["path"] == "train/loss"] == [
        "train/loss (last)",
        "train/loss (min)",
        "train/loss (max)",
    ]


def test_more_than_twenty_runs_show_the_first_twenty(client: httpx.Client) -> None:
    ids = [("id", f"petrel-{i:02d}") for i in range(MANY_RUNS)]
    data = client.get(f"{MANY}/compare.json", params=ids).json()
    assert data["truncated"] and data["selected"] == MANY_RUNS and data["limit"] == 20
    assert [r["run_id"] for r in data["runs"]] == [f"petrel-{i:02d}" for i in range(20)]
    assert "25 runs selected: comparing the first 20" in data["message"]
    # only the odd one out is highlighted: the run whose lr differs from the other 19
    lr = _rows(data)["parameters/lr"]
    assert lr["differs"] and [i for i, odd in enumerate(lr["highlight"]) if odd] == [1]
    assert not any(_rows(data)["parameters/model"]["highlight"])
    page = client.get(f"{MANY}/compare", params=ids)
    assert page.status_code == 200
    assert "25 runs selected: comparing the first 20" in page.text
    assert page.text.count('<th class="run"') == 20


def test_compare_without_runs_and_from_the_table_form(client: httpx.Client) -> None:
    missing = client.get(f"{PROJECT}/compare.json")
    assert missing.status_code == 400 and "?id=" in missing.json()["message"]
    page = client.get(f"{PROJECT}/compare")
    assert page.status_code == 200 and "No runs chosen" in page.text
    # the runs table's form sends run= boxes and its metric field: redirected to ?id=
    moved = client.get(
        f"{PROJECT}/compare", params=[("metric", ""), ("run", FORK), ("run", PARENT)]
    )
    assert moved.status_code == 303
    assert moved.headers["location"] == f"{PROJECT}/compare?id={FORK}&id={PARENT}"
    too_many = client.get(f"{PROJECT}/compare.json", params=[("id", str(i)) for i in range(1001)])
    assert too_many.status_code == 400 and "at most 1000 id" in too_many.json()["message"]


def test_compare_checks_access(server: ServerProcess, tokens: Tokens) -> None:
    params = [("id", FORK), ("id", PARENT)]
    for token in (tokens.other_project, tokens.foreign):
        narrow = _session(server, token)
        denied = narrow.get(f"{PROJECT}/compare.json", params=params)
        assert denied.status_code == 403 and denied.json()["errorType"] == "ACCESS_DENIED"
        assert narrow.get(f"{PROJECT}/compare", params=params).status_code == 403
        assert narrow.get(f"{PROJECT}/compare", params=[("run", FORK)]).status_code == 403
    anonymous = httpx.get(f"{server.url}{PROJECT}/compare.json", params=params)
    assert anonymous.status_code == 401


def test_compare_in_the_browser(browser: Any, server: ServerProcess, tokens: Tokens) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors = watch_errors(page)
    page.route(
        lambda url: not url.startswith(server.url),
        lambda route: (errors.append(f"external request {route.request.url}"), route.abort()),
    )
    try:
        page.goto(server.url + "/sign-in?next=/p/demo/despina")
        page.fill("textarea[name=token]", tokens.workspace)
        page.click("form[action='/sign-in'] button[type=submit]")
        page.goto(server.url + "/p/demo/despina?view=runs&limit=50")
        page.check(f"#runs-table input[value='{FORK}']")
        page.check(f"#runs-table input[value='{PARENT}']")
        page.click("#compare-selected")
        page.wait_for_url(f"**/compare?id={FORK}&id={PARENT}")
        heads = page.locator("#compare-table thead th.run").evaluate_all(
            "hs => hs.map(h => h.dataset.run)"
        )
        assert heads == [FORK, PARENT]
        rows = page.locator("#compare-table tbody tr")
        total = rows.count()
        same = page.locator("#compare-table tbody tr[data-differs='false']").count()
        assert total > same > 0
        dataset = page.locator("#compare-table tr[data-path='data/dataset']")
        lr = page.locator("#compare-table tr[data-path='parameters/lr']")
        assert dataset.is_visible() and lr.is_visible()
        # differing cells are highlighted, equal ones are not
        background = "e => getComputedStyle(e).backgroundColor"
        assert lr.locator("td").first.evaluate(background) != dataset.locator("td").first.evaluate(
            background
        )
        page.check("#only-differences")
        assert not dataset.is_visible() and lr.is_visible()
        assert page.locator("#compare-table tbody tr:visible").count() == total - same
        assert page.url.endswith("#differences")
        page.reload()  # the choice is kept in the URL
        assert page.is_checked("#only-differences") and not dataset.is_visible()
        page.uncheck("#only-differences")
        assert dataset.is_visible()
        page.click(f"#compare-table th.run[data-run='{PARENT}'] a")
        page.wait_for_url(f"**/run?id={PARENT}")
        assert PARENT in page.text_content("h1.run-title")
        assert errors == []
    finally:
        context.close()


def test_charts_page_links_to_compare(client: httpx.Client) -> None:
    page = client.get(f"{PROJECT}/charts", params=[("run", FORK), ("run", PARENT)])
    assert page.status_code == 200
    assert f'href="{PROJECT}/compare?id={FORK}&amp;id={PARENT}"' in page.text


def test_html_like_names_stay_text(
    browser: Any, client: httpx.Client, server: ServerProcess, tokens: Tokens
) -> None:
    params = [("id", HOSTILE), ("id", "plain")]
    data = client.get(f"{ODD}/compare.json", params=params).json()
    assert data["runs"][0]["url"] == f"{ODD}/run?id={quote(HOSTILE, safe='')}"
    page = client.get(f"{ODD}/compare", params=params)
    assert page.status_code == 200 and "<!--<script>" not in page.text
    context = browser.new_context()
    context.set_default_timeout(15_000)
    tab = context.new_page()
    errors = watch_errors(tab)
    try:
        tab.goto(server.url + "/sign-in")
        tab.fill("textarea[name=token]", tokens.workspace)
        tab.click("form[action='/sign-in'] button[type=submit]")
        tab.wait_for_url("**/projects")
        tab.goto(f"{server.url}{ODD}/compare?{urlencode(params)}")
        notes = tab.locator("#compare-table tr[data-path='notes/text'] td").all_text_contents()
        assert notes == ["x</script><!--<script>", "fine"]
        tab.check("#only-differences")
        assert not tab.locator("#compare-table tr[data-path='parameters/model']").is_visible()
        tab.locator("#compare-table th.run a").first.click()
        tab.wait_for_url("**/run?id=*")
        assert HOSTILE in tab.text_content("h1.run-title")
        assert errors == []
    finally:
        context.close()
