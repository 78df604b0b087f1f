"""Saved views against a real ``despina serve``: a runs table or charts page saved under a name
(its URL's settings), listed for everyone on the project, opened as a link, deleted; CSRF and
reach checked as for every change."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from ui_helpers import ServerProcess, Tokens, csrf_field, sign_in, sign_in_tab, watch_errors

pytestmark = pytest.mark.slow

PROJECT = "/p/demo/despina"
TABLE_QUERY = "view=runs&q=%60sys%2Ftags%60%3AstringSet+CONTAINS+%22baseline%22&col=parameters%2Flr"


@pytest.fixture(scope="module")
def client(server: ServerProcess, tokens: Tokens) -> httpx.Client:
    browser = httpx.Client(base_url=server.url, follow_redirects=False, timeout=30)
    assert sign_in(browser, tokens.workspace).status_code == 303
    return browser


def _views(client: httpx.Client) -> list[dict[str, Any]]:
    answer = client.get(f"{PROJECT}/views.json")
    assert answer.status_code == 200, answer.text
    return list(answer.json()["views"])


def test_save_list_open_and_delete(client: httpx.Client, tokens: Tokens) -> None:
    csrf = csrf_field(client.get(f"{PROJECT}?{TABLE_QUERY}").text)
    saved = client.post(
        f"{PROJECT}/views",
        data={
            "csrf": csrf,
            "action": "save",
            "kind": "runs",
            "name": " baselines ",
            "query": TABLE_QUERY + "&done=trash&changed=2",
        },
    )
    assert saved.status_code == 303
    assert saved.headers["location"] == f"{PROJECT}?{TABLE_QUERY}&saved=baselines"
    (view,) = _views(client)
    assert view["name"] == "baselines" and view["kind"] == "runs"
    assert view["query"] == TABLE_QUERY  # one-off messages are not part of a view
    page = client.get(f"{PROJECT}?view=runs").text
    assert f'href="{PROJECT}?{TABLE_QUERY.replace("&", "&amp;")}" data-view="baselines"' in page
    # saving under the same name replaces it; charts views are listed on charts pages
    client.post(
        f"{PROJECT}/views",
        data={
            "csrf": csrf,
            "action": "save",
            "kind": "runs",
            "name": "baselines",
            "query": "view=runs",
        },
    )
    client.post(
        f"{PROJECT}/views",
        data={
            "csrf": csrf,
            "action": "save",
            "kind": "charts",
            "name": "losses",
            "query": "metric=train/loss&smooth=0.6",
        },
    )
    assert [(v["name"], v["query"]) for v in _views(client)] == [
        ("baselines", "view=runs"),
        ("losses", "metric=train/loss&smooth=0.6"),
    ]
    charts = client.get(f"{PROJECT}/charts?metric=train/loss").text
    assert 'data-view="losses"' in charts and 'data-view="baselines"' not in charts
    # another token of the workspace sees the same views (they live in the store)
    other = httpx.Client(base_url=client.base_url, follow_redirects=False, timeout=30)
    assert sign_in(other, tokens.workspace).status_code == 303
    assert len(_views(other)) == 2
    gone = client.post(
        f"{PROJECT}/views",
        data={"csrf": csrf, "action": "delete", "kind": "charts", "name": "losses"},
    )
    assert gone.status_code == 303 and gone.headers["location"] == f"{PROJECT}/charts"
    assert [v["name"] for v in _views(client)] == ["baselines"]


def test_refusals(client: httpx.Client, server: ServerProcess, tokens: Tokens) -> None:
    before = _views(client)
    form = {"action": "save", "kind": "runs", "name": "x", "query": "view=runs"}
    assert client.post(f"{PROJECT}/views", data=form).status_code == 403  # no CSRF token
    csrf = csrf_field(client.get("/projects").text)
    for bad, expected in (
        ({"name": "  "}, "name"),
        ({"kind": "tables"}, "kind"),
        ({"name": "n" * 101}, "name"),
        ({"action": "rename"}, "action"),
    ):
        answer = client.post(f"{PROJECT}/views", data={"csrf": csrf, **form, **bad})
        assert answer.status_code == 400 and expected in answer.text.lower(), bad
    stranger = httpx.Client(base_url=server.url, follow_redirects=False, timeout=30)
    assert sign_in(stranger, tokens.other_project).status_code == 303
    token = csrf_field(stranger.get("/projects").text)
    assert stranger.post(f"{PROJECT}/views", data={"csrf": token, **form}).status_code == 403
    assert stranger.get(f"{PROJECT}/views.json").status_code == 403
    assert _views(client) == before


def test_in_the_browser(browser: Any, server: ServerProcess, tokens: Tokens) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    watch_errors(page)
    try:
        sign_in_tab(page, server, tokens.workspace)
        page.goto(
            server.url + f"{PROJECT}/charts?metric=train/loss&run=kittiwake-lr0.0003-s0"
            "&smooth=0.7&logx=1"
        )
        page.click("#views summary")
        page.fill("#view-name", "smooth loss")
        page.click("form.save-view button[type=submit]")
        page.wait_for_url("**saved=smooth+loss**")
        page.goto(server.url + f"{PROJECT}/charts")
        page.click("#views summary")
        page.click("a[data-view='smooth loss']")
        page.wait_for_url("**smooth=0.7**")
        query = parse_qs(urlparse(page.url).query)
        assert query["logx"] == ["1"] and query["metric"] == ["train/loss"]
        assert page.input_value("#smoothing") == "0.7"
        assert not page.errors
    finally:
        context.close()
